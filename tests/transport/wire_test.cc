// Frame encoding/decoding against docs/wire.md: a golden frame written from
// the spec by tests/transport/golden/make_golden.py, round trips through every
// codec, and malformed frames that must be refused before anything is
// allocated.
#include "transport/wire.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/files.h"
#include "transport/codec.h"
#include "transport/hello.h"
#include "wire_peer.h"

namespace dnnd::wire {
namespace {

std::string Golden() {
  auto r = ReadFileToString(std::string(DNND_SOURCE_DIR) + "/tests/transport/golden/ping.frame");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r.value() : std::string();
}

Message GoldenMessage() {
  Message m;
  m.type = type::kPing;
  m.request_id = 0x0102030405060708ull;
  m.fields.SetInt("step", 42);
  m.fields.SetFloat("lr", 0.5);
  m.fields.SetString("note", "hi");
  m.fields.SetBytes("blob", std::string("\x00\x01", 2));
  m.tensors.push_back(WireTensor::FromTensor("w", Tensor::FromVector({2, 3}, {1, 2, 3, 4, 5, 6})));
  m.tensors.push_back(WireTensor::FromTensor("b", Tensor::FromVector({3}, {0.5f, -1, 2})));
  m.tensors.push_back(WireTensor::FromTensor("q", Tensor::FromVector({2}, {1, -2}), Codec::kBF16));
  return m;
}

Result<Message> Decode(const std::string& bytes, const Limits& limits = {}) {
  return DecodeFrame(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), limits);
}

std::string Encode(const Message& m, EncodeOptions options = {}) {
  auto f = EncodeFrame(m, options);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? FlattenFrame(f.value()) : std::string();
}

std::vector<float> Values(const WireTensor& t) { return t.ToTensor().value().ToVector(); }

TEST(WireGolden, DecodesTheSpecFrameByteForByte) {
  const std::string golden = Golden();
  ASSERT_EQ(golden.size(), 349u);
  auto m = Decode(golden);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m.value().type, type::kPing);
  EXPECT_EQ(m.value().request_id, 0x0102030405060708ull);
  EXPECT_EQ(m.value().fields.GetInt("step").value(), 42);
  EXPECT_EQ(m.value().fields.GetFloat("lr").value(), 0.5);
  EXPECT_EQ(m.value().fields.GetString("note").value(), "hi");
  EXPECT_EQ(m.value().fields.GetBytes("blob").value(), std::string("\x00\x01", 2));
  ASSERT_EQ(m.value().tensors.size(), 3u);
  EXPECT_EQ(m.value().tensors[0].shape, (Shape{2, 3}));
  EXPECT_EQ(Values(m.value().tensors[0]), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(Values(m.value().tensors[1]), (std::vector<float>{0.5f, -1, 2}));
  EXPECT_EQ(m.value().tensors[2].codec, Codec::kBF16);
  EXPECT_EQ(Values(m.value().tensors[2]), (std::vector<float>{1, -2}));
}

TEST(WireGolden, EncoderProducesTheSpecFrame) {
  const std::string golden = Golden();
  const std::string ours = Encode(GoldenMessage());
  ASSERT_EQ(ours.size(), golden.size());
  for (size_t i = 0; i < golden.size(); ++i)
    ASSERT_EQ(static_cast<uint8_t>(ours[i]), static_cast<uint8_t>(golden[i])) << "byte " << i;
}

TEST(WireCodec, UncompressedTensorsAreViewsOfOneAlignedPayload) {
  auto m = Decode(Encode(GoldenMessage()));
  ASSERT_TRUE(m.ok());
  const auto& t = m.value().tensors;
  EXPECT_EQ(t[0].storage, t[1].storage) << "no per-tensor copy";
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t[0].data()) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t[1].data()) % 64, 0u);
  Tensor w = t[0].ToTensor().value();
  EXPECT_EQ(w.data(), reinterpret_cast<const float*>(t[0].data()));
}

TEST(WireCodec, EncoderDoesNotCopyUncompressedTensors) {
  Tensor big = Tensor::Full({1000}, 3.0f);
  Message m;
  m.type = type::kPing;
  m.tensors.push_back(WireTensor::FromTensor("x", big));
  auto f = EncodeFrame(m);
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f.value().parts().size(), 2u);
  EXPECT_EQ(f.value().parts()[1].data, big.data());
  EXPECT_EQ(f.value().parts()[1].size, 4000u);
}

TEST(WireCodec, EveryCodecRoundTrips) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0, 0.01f);
  std::vector<float> values(10000);
  for (float& v : values) v = normal(rng);
  values[0] = 0;
  values[1] = -0.0f;
  values[2] = 1e-30f;   // subnormal in f16
  values[3] = 70000.f;  // overflows f16
  for (Codec codec : {Codec::kNone, Codec::kShuffleZstd, Codec::kBF16, Codec::kF16}) {
    Message m;
    m.type = type::kPing;
    m.tensors.push_back(WireTensor::FromTensor("g", Tensor::FromVector({100, 100}, values), codec));
    auto d = Decode(Encode(m));
    ASSERT_TRUE(d.ok()) << CodecName(codec) << ": " << d.status().ToString();
    const std::vector<float> got = Values(d.value().tensors[0]);
    for (size_t i = 0; i < values.size(); ++i) {
      const float want = values[i];
      switch (codec) {
        case Codec::kNone:
        case Codec::kShuffleZstd:
          ASSERT_EQ(got[i], want) << CodecName(codec) << " at " << i;
          break;
        case Codec::kBF16:
          ASSERT_NEAR(got[i], want, std::abs(want) / 128) << i;
          break;
        case Codec::kF16:
          if (i == 3)
            ASSERT_TRUE(std::isinf(got[i]));
          else
            ASSERT_NEAR(got[i], want, std::abs(want) / 1024 + 6e-8) << i;
          break;
      }
    }
  }
}

TEST(WireCodec, ZstdShrinksCompressibleDataAndFallsBackOnNoise) {
  Message m;
  m.type = type::kPing;
  m.tensors.push_back(WireTensor::FromTensor("zeros", Tensor::Zeros({4096}), Codec::kShuffleZstd));
  std::mt19937 rng(1);
  std::vector<float> noise(4096);
  for (float& v : noise) {
    uint32_t bits = rng();
    std::memcpy(&v, &bits, 4);
    if (!std::isfinite(v)) v = 1;
  }
  m.tensors.push_back(
      WireTensor::FromTensor("noise", Tensor::FromVector({4096}, noise), Codec::kShuffleZstd));
  auto f = EncodeFrame(m);
  ASSERT_TRUE(f.ok());
  EXPECT_LT(f.value().total_bytes(), 16384u + 1024u);
  auto d = Decode(FlattenFrame(f.value()));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d.value().tensors[0].codec, Codec::kShuffleZstd);
  EXPECT_EQ(d.value().tensors[1].codec, Codec::kNone) << "incompressible data is sent raw";
  EXPECT_EQ(Values(d.value().tensors[1]), noise);
}

TEST(WireCodec, OtherDtypesAndEmptyTensorsRoundTrip) {
  Message m;
  m.type = type::kPing;
  std::vector<uint8_t> bytes = {1, 2, 3, 250};
  std::vector<int64_t> ids = {-1, 1ll << 40};
  m.tensors.push_back(WireTensor::FromBytes("u8", DType::kU8, {2, 2}, bytes.data()));
  m.tensors.push_back(WireTensor::FromBytes("i64", DType::kI64, {2}, ids.data()));
  m.tensors.push_back(WireTensor::FromBytes("empty", DType::kF32, {0, 5}, nullptr));
  m.tensors.push_back(WireTensor::FromBytes("zu8", DType::kU8, {4}, bytes.data()));
  m.tensors.back().codec = Codec::kShuffleZstd;
  auto d = Decode(Encode(m));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const auto& t = d.value().tensors;
  EXPECT_EQ(std::memcmp(t[0].data(), bytes.data(), 4), 0);
  EXPECT_EQ(std::memcmp(t[1].data(), ids.data(), 16), 0);
  EXPECT_EQ(t[2].shape, (Shape{0, 5}));
  EXPECT_EQ(t[2].numel(), 0);
  EXPECT_EQ(std::memcmp(t[3].data(), bytes.data(), 4), 0);
  EXPECT_FALSE(t[0].ToTensor().ok()) << "u8 is not a float tensor";
}

TEST(WireCodec, EmptyTensorsGoWithoutCodec) {
  Message m;
  m.tensors.push_back(WireTensor::FromTensor("e", Tensor::Zeros({0, 3}), Codec::kShuffleZstd));
  auto d = Decode(Encode(m));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d.value().tensors[0].codec, Codec::kNone);
  EXPECT_EQ(d.value().tensors[0].shape, (Shape{0, 3}));
}

TEST(WireCodec, EncoderRefusesWhatTheSpecForbids) {
  Message m;
  m.type = type::kPing;
  m.fields.SetInt("Bad Key", 1);
  EXPECT_EQ(EncodeFrame(m).status().code(), StatusCode::kInvalidArgument);
  Message n;
  n.tensors.push_back(WireTensor::FromBytes("x", DType::kU8, {4}, "abcd"));
  n.tensors.back().codec = Codec::kBF16;
  EXPECT_EQ(EncodeFrame(n).status().code(), StatusCode::kInvalidArgument);
  Message big;
  big.tensors.push_back(WireTensor::FromTensor("x", Tensor::Zeros({1024})));
  EncodeOptions tight;
  tight.limits.max_tensor_bytes = 1000;
  EXPECT_EQ(EncodeFrame(big, tight).status().code(), StatusCode::kResourceExhausted);
}

TEST(WireFields, TypeMismatchesAndMissingKeysAreNamed) {
  Fields f;
  f.SetString("role", "worker");
  f.SetInt("step", 3);
  EXPECT_EQ(f.GetInt("role").status().message(), "field 'role' is string, expected int");
  EXPECT_EQ(f.GetString("nope").status().message(), "missing field 'nope'");
  EXPECT_EQ(f.GetFloat("step").value(), 3.0);
  EXPECT_EQ(f.IntOr("nope", 9), 9);
}

TEST(WireErrors, ErrorFramesCarryCodeAndMessage) {
  Message req;
  req.type = 0x0101;
  req.request_id = 77;
  Message err = Message::ErrorTo(req, NotFound("no such tensor 'x'"));
  auto d = Decode(Encode(err));
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d.value().is_error());
  EXPECT_EQ(d.value().request_id, 77u);
  EXPECT_EQ(d.value().ErrorStatus().code(), StatusCode::kNotFound);
  EXPECT_EQ(d.value().ErrorStatus().message(), "no such tensor 'x'");
}

// --- malformed frames --------------------------------------------------------

// Patches `size` bytes at `at` of the golden frame.
std::string Patched(size_t at, const void* value, size_t size) {
  std::string s = Golden();
  std::memcpy(s.data() + at, value, size);
  return s;
}

void ExpectRefusedWith(const std::string& frame, const Limits& limits, StatusCode code,
                       const std::string& needle) {
  auto d = Decode(frame, limits);
  ASSERT_FALSE(d.ok()) << "accepted a malformed frame (expected: " << needle << ")";
  EXPECT_EQ(d.status().code(), code) << d.status().ToString();
  EXPECT_NE(d.status().message().find(needle), std::string::npos) << d.status().ToString();
}
void ExpectRefused(const std::string& frame, StatusCode code, const std::string& needle) {
  ExpectRefusedWith(frame, {}, code, needle);
}

TEST(WireMalformed, HeaderChecks) {
  ExpectRefused("DNNW", StatusCode::kCorruption, "shorter than its header");
  ExpectRefused(Patched(0, "HTTP", 4), StatusCode::kCorruption, "not a dnnd frame");
  uint16_t v2 = 2;
  ExpectRefused(Patched(4, &v2, 2), StatusCode::kUnsupported, "protocol version 2");
  uint32_t flags = 0x80;
  ExpectRefused(Patched(8, &flags, 4), StatusCode::kCorruption, "unknown flag");
  uint32_t one = 1;
  ExpectRefused(Patched(28, &one, 4), StatusCode::kCorruption, "reserved");
  uint64_t huge = ~0ull;
  ExpectRefused(Patched(32, &huge, 8), StatusCode::kResourceExhausted, "max_frame_bytes");
  uint32_t many = 1u << 30;
  ExpectRefused(Patched(12, &many, 4), StatusCode::kResourceExhausted, "max_tensors");
  uint32_t ten = 10;
  ExpectRefused(Patched(12, &ten, 4), StatusCode::kCorruption, "cannot fit");
  uint32_t md = 0xFFFFFF;
  ExpectRefused(Patched(24, &md, 4), StatusCode::kCorruption, "exceeds body length");
  std::string trunc = Golden();
  trunc.pop_back();
  ExpectRefused(trunc, StatusCode::kCorruption, "header says");
}

// Byte offsets of the golden frame's descriptor of tensor "w" (see xxd).
constexpr size_t kWDescriptor = 0x5c;  // name_len
constexpr size_t kWDims = kWDescriptor + 2 + 1 + 4;
constexpr size_t kWRawLen = kWDims + 16;
constexpr size_t kWOffset = kWRawLen + 16;

TEST(WireMalformed, DescriptorChecks) {
  {
    int64_t neg = -3;
    ExpectRefused(Patched(kWDims, &neg, 8), StatusCode::kCorruption, "negative dimension");
  }
  {
    int64_t dims[2] = {int64_t{1} << 62, int64_t{1} << 62};
    ExpectRefused(Patched(kWDims, dims, 16), StatusCode::kCorruption, "overflows");
  }
  {
    // 2^62 elements fit int64, but 4 bytes each overflow uint64.
    int64_t dims[2] = {int64_t{1} << 31, int64_t{1} << 31};
    ExpectRefused(Patched(kWDims, dims, 16), StatusCode::kCorruption, "overflows");
  }
  {
    uint64_t raw = 28;
    ExpectRefused(Patched(kWRawLen, &raw, 8), StatusCode::kCorruption, "does not match shape");
  }
  {
    uint64_t off = 32;
    ExpectRefused(Patched(kWOffset, &off, 8), StatusCode::kCorruption, "not 64-byte aligned");
  }
  {
    uint64_t off = 1ull << 40;
    ExpectRefused(Patched(kWOffset, &off, 8), StatusCode::kCorruption, "outside");
  }
  {
    uint64_t off = 64;  // lands on "b"
    ExpectRefused(Patched(kWOffset, &off, 8), StatusCode::kCorruption, "overlaps");
  }
  {
    uint8_t dtype = 9;
    ExpectRefused(Patched(kWDescriptor + 3, &dtype, 1), StatusCode::kCorruption, "unknown dtype");
  }
  {
    uint8_t codec = 7;
    ExpectRefused(Patched(kWDescriptor + 4, &codec, 1), StatusCode::kCorruption, "unknown codec");
  }
  {
    uint8_t ndim = 9;
    ExpectRefused(Patched(kWDescriptor + 5, &ndim, 1), StatusCode::kCorruption, "dims");
  }
}

TEST(WireMalformed, FieldChecks) {
  {
    uint8_t kind = 9;
    ExpectRefused(Patched(0x2f, &kind, 1), StatusCode::kCorruption, "unknown kind");
  }
  {
    uint32_t len = 0xFFFFFFF0;  // "note" string length
    ExpectRefused(Patched(0x4a, &len, 4), StatusCode::kCorruption, "truncated");
  }
  ExpectRefused(Patched(0x2b, "S", 1), StatusCode::kCorruption, "invalid key");  // "step" -> "Step"
  ExpectRefused(Patched(0x51, "note", 4), StatusCode::kCorruption,
                "appears twice");  // "blob" -> "note"
}

TEST(WireMalformed, LimitsComeFromTheReceiver) {
  Limits tight;
  tight.max_tensor_bytes = 16;  // "w" has 24 bytes
  auto d = Decode(Golden(), tight);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(d.status().message().find("'w'"), std::string::npos);
  Limits small_md;
  small_md.max_metadata_bytes = 100;
  EXPECT_EQ(Decode(Golden(), small_md).status().code(), StatusCode::kResourceExhausted);
}

TEST(WireMalformed, ZstdNeverDecompressesPastTheDeclaredSize) {
  // A valid zstd tensor of 4096 zeros, then its descriptor claims 1024 bytes
  // (shape [256]): the zstd frame declares 16384, which must be refused
  // before decompression.
  Message m;
  m.tensors.push_back(WireTensor::FromTensor("z", Tensor::Zeros({4096}), Codec::kShuffleZstd));
  std::string frame = Encode(m);
  auto d = Decode(frame);
  ASSERT_TRUE(d.ok());
  // Descriptor: fields count (2) + name_len (2) + "z" + 4 bytes + dim + raw_len.
  const size_t dims_at = kHeaderBytes + 2 + 2 + 1 + 4;
  int64_t dim = 256;
  uint64_t raw = 1024;
  std::memcpy(frame.data() + dims_at, &dim, 8);
  std::memcpy(frame.data() + dims_at + 8, &raw, 8);
  ExpectRefused(frame, StatusCode::kCorruption, "declares 16384 bytes");
}

// Issue 15, finding 2: 65,535 fields once cost 12-16 s to parse (each one
// looked up among the ones before it). Their count is capped, and even
// allowed in full they parse in n log n.
TEST(WireMalformed, ManyFieldsAreCappedAndNeverParsedQuadratically) {
  const std::string many = wire_test::ManyFieldsFrame(type::kPing);
  auto capped = Decode(many);
  ASSERT_FALSE(capped.ok());
  EXPECT_EQ(capped.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(capped.status().message(), "65535 fields exceed transport.max_fields 1024");

  Limits all;
  all.max_fields = 65535;
  auto start = std::chrono::steady_clock::now();
  auto parsed = Decode(many, all);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed.value().fields.entries().size(), 65535u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  // A duplicate (the last key repeats the first) is still found, as fast.
  std::string dup = many;
  std::memcpy(dup.data() + dup.size() - 9, "0000", 4);
  start = std::chrono::steady_clock::now();
  ExpectRefusedWith(dup, all, StatusCode::kCorruption, "field '0000' appears twice");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

// Issue 15, finding 3: 8 zstd tensors declaring 1 GiB each (a 263 KB frame)
// were inflated until std::bad_alloc aborted the process.
TEST(WireMalformed, DecodedBytesAreCappedPerFrameBeforeAllocating) {
  const auto before = GetBufferPoolStats();
  ExpectRefused(wire_test::ZstdBombFrame(type::kPing), StatusCode::kResourceExhausted,
                "tensor 2 ('bomb2'): the frame's tensors decode to more than "
                "transport.max_decoded_bytes 2147483648");
  Limits tight;
  tight.max_decoded_bytes = 3 << 20;
  ExpectRefusedWith(wire_test::ZstdBombFrame(type::kPing, 4, 1 << 20), tight,
                    StatusCode::kResourceExhausted, "tensor 3 ('bomb3')");
  EXPECT_LE(GetBufferPoolStats().allocations, before.allocations + 1)
      << "at most the small payload buffer";
  // The same frames within the limits are real zstd and decode to zeros.
  tight.max_decoded_bytes = 4 << 20;
  auto ok = Decode(wire_test::ZstdBombFrame(type::kPing, 4, 1 << 20), tight);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  const WireTensor& t = ok.value().tensors[3];
  EXPECT_EQ(t.raw_bytes(), 1u << 20);
  EXPECT_TRUE(std::all_of(t.data(), t.data() + t.raw_bytes(), [](uint8_t b) { return b == 0; }));
}

TEST(WireMalformed, ZstdContentSizeIsCheckedBeforeTheBufferIsAllocated) {
  // One tensor of 1 GiB whose zstd frame declares 1 KiB.
  std::string frame = wire_test::ZstdBombFrame(type::kPing, 1, uint64_t{1} << 30);
  const uint64_t lie = 1024;
  std::memcpy(frame.data() + frame.size() - wire_test::ZstdZerosFrame(uint64_t{1} << 30).size() + 5,
              &lie, 8);
  const auto before = GetBufferPoolStats();
  ExpectRefused(frame, StatusCode::kCorruption,
                "zstd frame declares 1024 bytes, descriptor says 1073741824");
  EXPECT_LE(GetBufferPoolStats().allocations, before.allocations + 1) << "only the 32 KB payload";
}

TEST(WireMalformed, BeforeTheHandshakeOnlyASmallFrameWithoutTensors) {
  const Limits before = Limits{}.BeforeHandshake();
  ExpectRefusedWith(wire_test::ManyFieldsFrame(type::kHelloAuth), before,
                    StatusCode::kResourceExhausted,
                    "before the handshake exceeds transport.max_hello_bytes 8192");
  ExpectRefusedWith(wire_test::ManyFieldsFrame(type::kHelloAuth, 17), before,
                    StatusCode::kResourceExhausted,
                    "17 fields exceed the 16 allowed before the handshake");
  ExpectRefusedWith(wire_test::ZstdBombFrame(type::kHelloAuth, 1, 64), before,
                    StatusCode::kPermissionDenied, "1 tensors before the handshake");
  // A real HELLO_AUTH fits easily.
  Message hello = MakeHello({"parameter-server", "ps-0"}, RandomNonce());
  auto auth = MakeHelloAuth(hello, {"worker", std::string(200, 'w')}, "token", RandomNonce());
  ASSERT_TRUE(auth.ok());
  EXPECT_TRUE(Decode(Encode(auth.value()), before).ok());
}

// --- handshake -----------------------------------------------------------------

TEST(WireHello, MutualProofWithTheSameToken) {
  PeerIdentity server{"parameter-server", "ps-0"}, client{"worker", "w-1"};
  const std::string ns = RandomNonce(), nc = RandomNonce();
  ASSERT_EQ(ns.size(), 32u);
  EXPECT_NE(ns, nc);
  Message hello = MakeHello(server, ns);
  auto auth = MakeHelloAuth(hello, client, "s3cret", nc);
  ASSERT_TRUE(auth.ok());
  EXPECT_EQ(FlattenFrame(EncodeFrame(auth.value()).value()).find("s3cret"), std::string::npos)
      << "the token itself never goes on the wire";
  Message response;
  auto who = VerifyHelloAuth(auth.value(), server, "s3cret", ns, &response);
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  EXPECT_EQ(who.value().node, "w-1");
  auto back = VerifyHelloResponse(response, "s3cret", nc, ns);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back.value().role, "parameter-server");
}

TEST(WireHello, WrongTokenReplayAndVersionAreRefused) {
  PeerIdentity server{"parameter-server", "ps-0"}, client{"worker", "w-1"};
  const std::string ns = RandomNonce(), nc = RandomNonce();
  auto auth = MakeHelloAuth(MakeHello(server, ns), client, "wrong", nc).value();
  Message response;
  auto bad = VerifyHelloAuth(auth, server, "s3cret", ns, &response);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(bad.status().message().find("bad token proof from node 'w-1' (role worker)"),
            std::string::npos);

  // The same proof against a fresh server nonce (a replay) fails too.
  auto good = MakeHelloAuth(MakeHello(server, ns), client, "s3cret", nc).value();
  EXPECT_FALSE(VerifyHelloAuth(good, server, "s3cret", RandomNonce(), &response).ok());

  Message v2 = good;
  v2.fields.SetInt("version", 2);
  auto vs = VerifyHelloAuth(v2, server, "s3cret", ns, &response);
  EXPECT_EQ(vs.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(vs.status().message().find("version 2"), std::string::npos);

  // A server that does not know the token cannot fake its proof either.
  ASSERT_TRUE(VerifyHelloAuth(good, server, "s3cret", ns, &response).ok());
  EXPECT_EQ(VerifyHelloResponse(response, "other", nc, ns).status().code(),
            StatusCode::kPermissionDenied);

  Message ping;
  ping.type = type::kPing;
  EXPECT_EQ(VerifyHelloAuth(ping, server, "s3cret", ns, &response).status().code(),
            StatusCode::kPermissionDenied);
}

TEST(WireHello, HmacMatchesRfc4231) {
  // RFC 4231 test case 2.
  const std::string mac = HmacSha256("Jefe", "what do ya want for nothing?");
  std::ostringstream hex;
  for (unsigned char c : mac) hex << std::hex << (c >> 4) << (c & 15);
  EXPECT_EQ(hex.str(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

}  // namespace
}  // namespace dnnd::wire

namespace dnnd::wire {
namespace {

// The fuzzer's seeds must be valid frames, or it starts from nothing;
// "regress-*" files are inputs the fuzzer once broke us with, kept as seeds.
TEST(WireCorpus, EverySeedDecodes) {
  const std::string dir = std::string(DNND_SOURCE_DIR) + "/tests/fuzz/corpus/wire";
  int seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    auto bytes = ReadFileToString(entry.path().string());
    ASSERT_TRUE(bytes.ok());
    auto m =
        DecodeFrame(reinterpret_cast<const uint8_t*>(bytes.value().data()), bytes.value().size());
    if (entry.path().filename().string().rfind("regress-", 0) == 0) continue;
    EXPECT_TRUE(m.ok()) << entry.path() << ": " << m.status().ToString();
    ++seeds;
  }
  EXPECT_GE(seeds, 6);
}

}  // namespace
}  // namespace dnnd::wire
