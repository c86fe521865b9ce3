#include "core/sha256.h"

#include <openssl/evp.h>

#include <stdexcept>

#include "core/files.h"

namespace dnnd {

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr))
    throw std::runtime_error("EVP_Digest(SHA-256) failed");
  return LowerHex(std::string_view(reinterpret_cast<const char*>(digest), len));
}

std::string LowerHex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    hex += kHex[c >> 4];
    hex += kHex[c & 15];
  }
  return hex;
}

Result<std::string> Sha256FileHex(const std::string& path) {
  DNND_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  return Sha256Hex(bytes);
}

}  // namespace dnnd
