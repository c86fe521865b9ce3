#include "transport/hello.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/config.h"
#include "transport/secrets.h"

namespace dnnd::wire {
namespace {

constexpr std::string_view kClientLabel = "dnnd-hello-v1 client";
constexpr std::string_view kServerLabel = "dnnd-hello-v1 server";

std::string ClientProof(std::string_view token, std::string_view nonce_s, std::string_view nonce_c,
                        const PeerIdentity& client) {
  std::string data;
  data.append(kClientLabel).append(nonce_s).append(nonce_c).append(client.role);
  data.push_back('\0');
  data.append(client.node);
  return HmacSha256(token, data);
}

std::string ServerProof(std::string_view token, std::string_view nonce_c,
                        std::string_view nonce_s) {
  std::string data;
  data.append(kServerLabel).append(nonce_c).append(nonce_s);
  return HmacSha256(token, data);
}

bool SameProof(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Describe(const PeerIdentity& p) {
  return "node '" + p.node.substr(0, 128) + "' (role " + p.role.substr(0, 64) + ")";
}

Status CheckVersion(const Message& m, const char* what) {
  auto v = m.fields.GetInt("version");
  if (!v) return InvalidArgument(std::string(what) + ": " + v.status().message());
  if (v.value() != kVersion)
    return Unsupported(std::string(what) + " speaks protocol version " + std::to_string(v.value()) +
                       ", this node speaks " + std::to_string(kVersion));
  return Status::Ok();
}

Result<PeerIdentity> Identity(const Message& m) {
  DNND_ASSIGN_OR_RETURN(std::string role, m.fields.GetString("role"));
  DNND_ASSIGN_OR_RETURN(std::string node, m.fields.GetString("node"));
  return PeerIdentity{std::move(role), std::move(node)};
}

}  // namespace

Result<std::string> LoadTransportToken(const Config& config) {
  return LoadSecretSetting(config, "transport");
}

std::string RandomNonce() {
  std::string nonce(kNonceBytes, '\0');
  size_t got = 0;
  while (got < nonce.size()) {
    const ssize_t n = getrandom(nonce.data() + got, nonce.size() - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
    got += static_cast<size_t>(n);
  }
  return nonce;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // An empty key is legal HMAC; OpenSSL wants a non-null pointer for it.
  static const unsigned char kEmpty = 0;
  const void* k = key.empty() ? static_cast<const void*>(&kEmpty) : key.data();
  if (!HMAC(EVP_sha256(), k, static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len))
    throw std::runtime_error("HMAC-SHA256 failed");
  return std::string(reinterpret_cast<const char*>(out), len);
}

Message MakeHello(const PeerIdentity& server, const std::string& server_nonce) {
  Message m;
  m.type = type::kHello;
  m.fields.SetInt("version", kVersion);
  m.fields.SetString("role", server.role);
  m.fields.SetString("node", server.node);
  m.fields.SetBytes("nonce", server_nonce);
  return m;
}

Result<Message> MakeHelloAuth(const Message& hello, const PeerIdentity& client,
                              std::string_view token, const std::string& client_nonce) {
  if (hello.is_error()) return hello.ErrorStatus();
  if (hello.type != type::kHello)
    return Corruption("expected HELLO, got message type " + std::to_string(hello.type));
  DNND_RETURN_IF_ERROR(CheckVersion(hello, "server"));
  DNND_ASSIGN_OR_RETURN(std::string nonce_s, hello.fields.GetBytes("nonce"));
  if (nonce_s.size() != kNonceBytes) return Corruption("server nonce is not 32 bytes");
  Message m;
  m.type = type::kHelloAuth;
  m.fields.SetInt("version", kVersion);
  m.fields.SetString("role", client.role);
  m.fields.SetString("node", client.node);
  m.fields.SetBytes("nonce", client_nonce);
  m.fields.SetBytes("proof", ClientProof(token, nonce_s, client_nonce, client));
  return m;
}

Result<PeerIdentity> VerifyHelloAuth(const Message& auth, const PeerIdentity& server,
                                     std::string_view token, const std::string& server_nonce,
                                     Message* response) {
  if (auth.type != type::kHelloAuth || auth.is_response())
    return PermissionDenied("expected HELLO_AUTH first, got message type " +
                            std::to_string(auth.type));
  DNND_RETURN_IF_ERROR(CheckVersion(auth, "client"));
  auto who = Identity(auth);
  if (!who) return InvalidArgument("HELLO_AUTH: " + who.status().message());
  DNND_ASSIGN_OR_RETURN(std::string nonce_c, auth.fields.GetBytes("nonce"));
  DNND_ASSIGN_OR_RETURN(std::string proof, auth.fields.GetBytes("proof"));
  if (nonce_c.size() != kNonceBytes)
    return InvalidArgument("HELLO_AUTH: client nonce is not 32 bytes");
  if (!SameProof(proof, ClientProof(token, server_nonce, nonce_c, who.value())))
    return PermissionDenied("bad token proof from " + Describe(who.value()));
  *response = Message::ResponseTo(auth);
  response->fields.SetString("role", server.role);
  response->fields.SetString("node", server.node);
  response->fields.SetBytes("proof", ServerProof(token, nonce_c, server_nonce));
  return who;
}

Result<PeerIdentity> VerifyHelloResponse(const Message& response, std::string_view token,
                                         const std::string& client_nonce,
                                         const std::string& server_nonce) {
  if (response.is_error()) return response.ErrorStatus();
  if (response.type != type::kHelloAuth || !response.is_response())
    return Corruption("expected the HELLO_AUTH response, got message type " +
                      std::to_string(response.type));
  DNND_ASSIGN_OR_RETURN(PeerIdentity who, Identity(response));
  DNND_ASSIGN_OR_RETURN(std::string proof, response.fields.GetBytes("proof"));
  if (!SameProof(proof, ServerProof(token, client_nonce, server_nonce)))
    return PermissionDenied("server " + Describe(who) + " could not prove it holds the token");
  return who;
}

}  // namespace dnnd::wire
