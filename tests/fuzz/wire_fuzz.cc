// libFuzzer target: wire frame decoding and the HELLO handshake checks. Any
// input must come back as a message or an error; never a crash, a sanitizer
// report, or an allocation beyond the limits. Decoded messages must survive a
// re-encode/decode round trip unchanged. Run with tests/fuzz/run.sh wire.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "roles/layers/messages.h"
#include "roles/ps/messages.h"
#include "transport/hello.h"
#include "transport/wire.h"

namespace {

// Small limits keep the fuzzer fast and prove every size is checked against
// them before allocation (ASan would flag a 2^63-byte attempt; the RSS limit a
// merely huge one). Metadata and fields are allowed up to what a 1 MiB input
// can hold, so the cost of parsing many fields is exercised (-timeout flags a
// quadratic parse).
dnnd::wire::Limits FuzzLimits() {
  dnnd::wire::Limits l;
  l.max_frame_bytes = 1 << 20;
  l.max_metadata_bytes = 1 << 20;
  l.max_tensor_bytes = 1 << 20;
  l.max_tensors = 64;
  l.max_fields = 65535;
  l.max_decoded_bytes = 4 << 20;
  return l;
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

// A typed message's decoder on any frame: a value or an error, and a value
// re-encodes to a message the same decoder takes.
template <typename T>
void Typed(const dnnd::wire::Message& m) {
  auto decoded = T::Decode(m);
  if (decoded.ok())
    Check(T::Decode(decoded.value().Encode()).ok(), "typed re-encode does not decode");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dnnd::wire;
  const Limits limits = FuzzLimits();
  if (size >= kHeaderBytes) (void)ParseHeader(data, limits);
  // What an unauthenticated peer's frame meets: anything decoded under these
  // limits is small and has no tensors.
  const Limits before = limits.BeforeHandshake();
  if (auto hello = DecodeFrame(data, size, before); hello.ok())
    Check(size <= before.max_frame_bytes && hello.value().tensors.empty() &&
              hello.value().fields.entries().size() <= kHandshakeMaxFields,
          "a frame over the handshake limits decoded before the handshake");
  auto message = DecodeFrame(data, size, limits);
  if (!message.ok()) return 0;
  const Message& m = message.value();

  // Round trip: what we accepted, we can send, and it reads back the same.
  EncodeOptions options;
  options.limits = limits;
  // Lossy codecs (bf16/f16) were already applied on the way in; re-encoding
  // through them again could change NaN payloads, so compare losslessly.
  Message copy = m;
  for (WireTensor& t : copy.tensors)
    if (t.codec == Codec::kBF16 || t.codec == Codec::kF16) t.codec = Codec::kNone;
  auto frame = EncodeFrame(copy, options);
  if (frame.ok()) {
    const std::string bytes = FlattenFrame(frame.value());
    auto again = DecodeFrame(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), limits);
    Check(again.ok(), "re-encoded frame does not decode");
    // Byte-identical on a second trip (NaN-safe, unlike comparing values).
    auto frame2 = EncodeFrame(again.value(), options);
    Check(frame2.ok() && FlattenFrame(frame2.value()) == bytes,
          "a second round trip changed the frame");
    Check(again.value().fields.entries().size() == m.fields.entries().size(),
          "field count changed");
    Check(again.value().tensors.size() == m.tensors.size(), "tensor count changed");
    for (size_t i = 0; i < m.tensors.size(); ++i) {
      const WireTensor& a = m.tensors[i];
      const WireTensor& b = again.value().tensors[i];
      Check(a.name == b.name && a.shape == b.shape && a.dtype == b.dtype, "descriptor changed");
      Check(std::memcmp(a.data(), b.data(), a.raw_bytes()) == 0, "tensor bytes changed");
    }
  }

  // What the parameter and layer servers (and their workers) read from an
  // authenticated peer.
  namespace ps = dnnd::ps;
  namespace layers = dnnd::layers;
  Typed<ps::InitRequest>(m);
  Typed<ps::InitReply>(m);
  Typed<ps::PushRequest>(m);
  Typed<ps::PullRequest>(m);
  Typed<ps::WeightsReply>(m);
  Typed<ps::MemberRequest>(m);
  Typed<ps::VersionReply>(m);
  Typed<ps::StatsReply>(m);
  Typed<layers::OpenRequest>(m);
  Typed<layers::PassRequest>(m);
  Typed<layers::StepRequest>(m);
  Typed<layers::SessionRequest>(m);
  for (bool input_grad : {false, true}) (void)layers::PassReply::Decode(m, m.type, input_grad);

  // The handshake checks on whatever decoded.
  const PeerIdentity self{"parameter-server", "ps-0"};
  const std::string nonce(kNonceBytes, 'n');
  Message response;
  (void)VerifyHelloAuth(m, self, "token", nonce, &response);
  (void)VerifyHelloResponse(m, "token", nonce, nonce);
  (void)MakeHelloAuth(m, self, "token", nonce);
  (void)m.ErrorStatus();
  return 0;
}
