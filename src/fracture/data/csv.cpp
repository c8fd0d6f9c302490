#include "fracture/data/csv.h"

namespace fracture::data {

std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') { field += '"'; ++i; }
      else if (c == '"') quoted = false;
      else field += c;
      continue;
    }
    if (c == '"') { quoted = true; any = true; }
    else if (c == ',') { row.push_back(field); field.clear(); any = true; }
    else if (c == '\r') continue;
    else if (c == '\n') {
      if (any || !field.empty()) { row.push_back(field); rows.push_back(row); }
      row.clear(); field.clear(); any = false;
    } else { field += c; any = true; }
  }
  if (any || !field.empty()) { row.push_back(field); rows.push_back(row); }
  return rows;
}

std::string csv_escape(const std::string& f) {
  if (f.find_first_of(",\"\n\r") == std::string::npos) return f;
  std::string out = "\"";
  for (char c : f) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace fracture::data
