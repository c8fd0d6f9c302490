#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace fracture::util {

// 64-bit FNV-1a: used to find byte-identical files (duplicate images) and to
// derive per-sample seeds. Not cryptographic; collisions among a few thousand
// files are vanishingly unlikely (~1e-12).
uint64_t fnv1a64(std::string_view bytes, uint64_t seed = 0xcbf29ce484222325ULL);

// Mixes integers into one well-spread 64-bit value (splitmix64 finaliser), so
// that seed(run, epoch, index) gives independent random streams per sample.
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0);

std::string to_hex(uint64_t v);

// SHA-256 of bytes, as 64 lowercase hex digits: the identity of a model file
// that predictions and evaluations carry.
std::string sha256_hex(std::string_view bytes);

}  // namespace fracture::util
