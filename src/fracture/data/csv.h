#pragma once
#include <string>
#include <vector>

namespace fracture::data {

// Minimal RFC-4180 CSV: quoted fields, doubled quotes, CRLF or LF line ends.
std::vector<std::vector<std::string>> parse_csv(const std::string& text);
std::string csv_escape(const std::string& field);

}  // namespace fracture::data
