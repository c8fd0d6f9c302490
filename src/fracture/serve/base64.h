#pragma once
// Base64 (RFC 4648, with padding): heat maps travel inside JSON answers.
#include <optional>
#include <string>

namespace fracture::serve {

std::string base64_encode(const std::string& bytes);
// nullopt for text that is not base64.
std::optional<std::string> base64_decode(const std::string& text);

}  // namespace fracture::serve
