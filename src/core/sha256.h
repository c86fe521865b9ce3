// SHA-256 digests as lowercase hex (what `sha256sum` and Python's hashlib
// print), via OpenSSL's libcrypto, which dnnd already links for the wire
// handshake's HMAC.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace dnnd {

std::string Sha256Hex(std::string_view bytes);
// Any bytes as lowercase hex, two digits a byte (digests, MACs, nonces).
std::string LowerHex(std::string_view bytes);
// The digest of a whole file; errors name the file.
Result<std::string> Sha256FileHex(const std::string& path);

}  // namespace dnnd
