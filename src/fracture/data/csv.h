#pragma once
#include <string>
#include <vector>

namespace fracture::data {

// Minimal RFC-4180 CSV: quoted fields, doubled quotes, CRLF or LF line ends;
// a UTF-8 byte-order mark at the start is dropped. A quote left open at the
// end of the text is an error (it would swallow the rest of the file as one
// field): throws std::runtime_error naming `origin` and the line it opened on.
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& origin = "CSV");

// The column whose header is `name`, compared without case and surrounding
// blanks; -1 if none.
int csv_column(const std::vector<std::string>& header, const std::string& name);
std::string csv_escape(const std::string& field);

}  // namespace fracture::data
