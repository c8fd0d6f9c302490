#include "fracture/data/csv.h"

#include <cctype>
#include <stdexcept>

namespace fracture::data {

std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& origin) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  size_t line = 1, quote_line = 0;
  const size_t start = text.compare(0, 3, "\xef\xbb\xbf") == 0 ? 3 : 0;  // UTF-8 byte-order mark
  for (size_t i = start; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') ++line;
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') { field += '"'; ++i; }
      else if (c == '"') quoted = false;
      else field += c;
      continue;
    }
    if (c == '"') { quoted = true; any = true; quote_line = line; }
    else if (c == ',') { row.push_back(field); field.clear(); any = true; }
    else if (c == '\r') continue;
    else if (c == '\n') {
      if (any || !field.empty()) { row.push_back(field); rows.push_back(row); }
      row.clear(); field.clear(); any = false;
    } else { field += c; any = true; }
  }
  if (quoted)
    throw std::runtime_error(origin + ":" + std::to_string(quote_line) +
                             ": a quoted field is never closed (a missing '\"')");
  if (any || !field.empty()) { row.push_back(field); rows.push_back(row); }
  return rows;
}

int csv_column(const std::vector<std::string>& header, const std::string& name) {
  for (size_t i = 0; i < header.size(); ++i) {
    std::string h = header[i];
    const auto b = h.find_first_not_of(" \t"), e = h.find_last_not_of(" \t");
    h = b == std::string::npos ? "" : h.substr(b, e - b + 1);
    for (char& ch : h) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (h == name) return static_cast<int>(i);
  }
  return -1;
}

std::string csv_escape(const std::string& f) {
  if (f.find_first_of(",\"\n\r") == std::string::npos) return f;
  std::string out = "\"";
  for (char c : f) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace fracture::data
