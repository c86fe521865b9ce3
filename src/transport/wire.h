// The dnnd wire protocol, version 1: frame layout, messages and their
// encoding. docs/wire.md is the specification; this file follows it.
//
// Sending: EncodeFrame() turns a Message into an EncodedFrame, a scatter/gather
// list of (header + metadata) followed by each tensor's own storage. Tensors
// sent with codec kNone are never copied by dnnd; the kernel's socket write is
// the only copy.
//
// Receiving: ParseHeader() validates the fixed header before anything is
// allocated; ParseMetadata() validates fields and tensor descriptors against
// the limits; the caller then reads the payload into one 64-byte-aligned
// pooled buffer and AssembleMessage() hands out tensors that are views of it.
//
//   Message m{.type = kPing};
//   m.fields.SetString("note", "hi");
//   m.tensors.push_back(WireTensor::FromTensor("0.weight", w));
//   EncodedFrame f = EncodeFrame(m).value();   // f.parts() -> writev
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/status.h"
#include "tensor/storage.h"
#include "tensor/tensor.h"

namespace dnnd {
class Config;
}

namespace dnnd::wire {

inline constexpr uint32_t kMagic = 0x574E4E44;  // the bytes "DNNW"
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kHeaderBytes = 40;
inline constexpr size_t kPayloadAlignment = 64;
inline constexpr size_t kMinDescriptorBytes = 24;
inline constexpr size_t kMaxNameBytes = 1024;
inline constexpr size_t kMaxKeyBytes = 64;
inline constexpr int kMaxDims = 8;

// Message types below 0x100 belong to the transport itself; roles own ranges
// above it (docs/wire.md, "Messages").
namespace type {
inline constexpr uint16_t kHello = 1;
inline constexpr uint16_t kHelloAuth = 2;
inline constexpr uint16_t kPing = 3;
}  // namespace type

inline constexpr uint32_t kFlagResponse = 1u << 0;
inline constexpr uint32_t kFlagError = 1u << 1;
inline constexpr uint32_t kKnownFlags = kFlagResponse | kFlagError;

enum class DType : uint8_t { kF32 = 1, kF16 = 2, kBF16 = 3, kU8 = 4, kI32 = 5, kI64 = 6 };
enum class Codec : uint8_t { kNone = 0, kShuffleZstd = 1, kBF16 = 2, kF16 = 3 };

size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);
const char* CodecName(Codec codec);
// "none", "zstd", "bf16", "f16" (config spelling) -> Codec.
Result<Codec> ParseCodec(std::string_view name);

// Most fields a frame may carry before the handshake (HELLO_AUTH has 5, an
// error frame 2).
inline constexpr uint32_t kHandshakeMaxFields = 16;

// Sizes a receiver accepts; everything is checked before it is allocated.
// Each one is a [transport] setting, and a refusal names it.
struct Limits {
  uint64_t max_frame_bytes = uint64_t{2} << 30;
  uint32_t max_metadata_bytes = 1u << 20;
  uint64_t max_tensor_bytes = uint64_t{1} << 30;
  uint32_t max_tensors = 65536;
  uint32_t max_fields = 1024;
  // Sum of the tensors' decoded (raw) lengths in one frame: bounds what
  // decompression may allocate, whatever the payload's size.
  uint64_t max_decoded_bytes = uint64_t{2} << 30;
  // Largest frame accepted from a peer that has not proven the token yet
  // (see BeforeHandshake()).
  uint32_t max_hello_bytes = 8192;
  // Set by BeforeHandshake(): refusals then say that only a small HELLO is
  // accepted before the handshake.
  bool before_handshake = false;

  // From the [transport] section of a validated config.
  static Limits FromConfig(const Config& config);
  // What an unauthenticated peer may send: one frame of at most
  // max_hello_bytes, at most kHandshakeMaxFields fields, no tensors (so
  // nothing to decompress and nothing allocated beyond max_hello_bytes).
  Limits BeforeHandshake() const;
};

struct FrameHeader {
  uint16_t version = kVersion;
  uint16_t type = 0;
  uint32_t flags = 0;
  uint32_t tensor_count = 0;
  uint64_t request_id = 0;
  uint32_t metadata_len = 0;
  uint64_t body_len = 0;

  uint64_t payload_len() const { return body_len - metadata_len; }
};

void WriteHeader(const FrameHeader& header, uint8_t out[kHeaderBytes]);
// Validates magic, flags, reserved bits and every length against `limits`.
// A version other than kVersion is reported as kUnsupported with the header
// otherwise unparsed, so the caller can answer with an error frame.
Result<FrameHeader> ParseHeader(const uint8_t* bytes, const Limits& limits);

struct ParsedMetadata;

// Named message fields: int64, float64, string or bytes values. A message has
// a handful of them, so a flat vector beats a map; lookups are linear, which
// is why a received frame's field count is capped (Limits::max_fields) and
// ParseMetadata checks uniqueness by sorting, not by a lookup per field.
class Fields {
 public:
  struct Bytes {
    std::string data;
    bool operator==(const Bytes&) const = default;
  };
  using Value = std::variant<int64_t, double, std::string, Bytes>;

  void SetInt(std::string_view key, int64_t v) { Set(key, Value(v)); }
  void SetFloat(std::string_view key, double v) { Set(key, Value(v)); }
  void SetString(std::string_view key, std::string v) { Set(key, Value(std::move(v))); }
  void SetBytes(std::string_view key, std::string v) { Set(key, Value(Bytes{std::move(v)})); }

  bool Has(std::string_view key) const { return Find(key) != nullptr; }
  // Errors name the key and, on a type mismatch, both types.
  Result<int64_t> GetInt(std::string_view key) const;
  Result<double> GetFloat(std::string_view key) const;  // ints convert
  Result<std::string> GetString(std::string_view key) const;
  Result<std::string> GetBytes(std::string_view key) const;
  // Optional fields: nullopt when absent, the Get* error when present with
  // another type (IntOr/StringOr would silently take the fallback).
  Result<std::optional<int64_t>> FindInt(std::string_view key) const;
  Result<std::optional<double>> FindFloat(std::string_view key) const;
  Result<std::optional<std::string>> FindString(std::string_view key) const;
  Result<std::optional<std::string>> FindBytes(std::string_view key) const;
  int64_t IntOr(std::string_view key, int64_t fallback) const;
  std::string StringOr(std::string_view key, std::string fallback) const;

  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }
  bool operator==(const Fields&) const = default;

 private:
  // Builds the fields straight from the wire, uniqueness checked once.
  friend Result<ParsedMetadata> ParseMetadata(const uint8_t* bytes, const FrameHeader& header,
                                              const Limits& limits);
  void Set(std::string_view key, Value v);
  const Value* Find(std::string_view key) const;
  std::vector<std::pair<std::string, Value>> entries_;
};

// One tensor on the wire: its decoded elements live in `storage` at
// `byte_offset`. `codec` is how the sender wants it encoded (sending) or how it
// was encoded (received).
struct WireTensor {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  Codec codec = Codec::kNone;
  std::shared_ptr<Storage> storage;
  size_t byte_offset = 0;

  int64_t numel() const { return ShapeNumel(shape); }
  size_t raw_bytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype); }
  const uint8_t* data() const { return static_cast<const uint8_t*>(storage->data()) + byte_offset; }

  // Shares `t`'s storage (no copy).
  static WireTensor FromTensor(std::string name, const Tensor& t, Codec codec = Codec::kNone);
  // Raw elements of any dtype; the bytes are copied into a pooled buffer.
  static WireTensor FromBytes(std::string name, DType dtype, Shape shape, const void* data);
  // A float32 Tensor sharing this tensor's memory (no copy); kUnsupported for
  // other dtypes.
  Result<Tensor> ToTensor() const;
};

struct Message {
  uint16_t type = 0;
  uint32_t flags = 0;
  uint64_t request_id = 0;
  Fields fields{};  // {}: designated initializers may leave them out
  std::vector<WireTensor> tensors{};

  bool is_response() const { return flags & kFlagResponse; }
  bool is_error() const { return flags & kFlagError; }
  // The tensor called `name`, or null.
  const WireTensor* FindTensor(std::string_view name) const;
  // The Status an error response carries (code + message fields); Ok otherwise.
  Status ErrorStatus() const;

  // An empty response to `request` (same type and id, RESPONSE set).
  static Message ResponseTo(const Message& request);
  // An error response to `request` carrying `status`.
  static Message ErrorTo(const Message& request, const Status& status);
  static Message ErrorTo(uint16_t type, uint64_t request_id, const Status& status);
};

// The body of a typed message's Decode (roles/*/messages.cc): runs `decode`
// and prefixes its error with the message's name, so a refusal reads
// "ps push: missing field 'version'".
template <typename T, typename F>
Result<T> DecodeMessage(std::string_view name, F decode) {
  Result<T> r = decode();
  if (!r.ok()) return r.status().WithContext(std::string(name));
  return r;
}

// Wire codes for StatusCode (docs/wire.md, "Errors").
int64_t StatusToWireCode(StatusCode code);
StatusCode WireCodeToStatus(int64_t code);

struct EncodeOptions {
  int zstd_level = 1;
  // Refuse to build frames the peer would reject (the sender's own limits are
  // the best guess of the receiver's).
  Limits limits;

  // transport.zstd_level and the [transport] limits.
  static EncodeOptions FromConfig(const Config& config);
};

// A frame ready to write: head (header + metadata) then the payload pieces,
// which point into tensor storages, codec outputs, or a static zero block for
// alignment padding. Holds references to all of them until destroyed.
class EncodedFrame {
 public:
  struct Part {
    const void* data;
    size_t size;
  };
  // Every piece in order, head first.
  const std::vector<Part>& parts() const { return parts_; }
  uint64_t total_bytes() const { return total_; }
  const FrameHeader& header() const { return header_; }

 private:
  friend Result<EncodedFrame> EncodeFrame(const Message&, const EncodeOptions&);
  FrameHeader header_;
  std::unique_ptr<uint8_t[]> head_;  // header + metadata
  size_t head_size_ = 0;
  std::vector<Part> parts_;
  std::vector<std::shared_ptr<const void>> keep_alive_;
  uint64_t total_ = 0;
};

// Errors: a field key or tensor name that breaks the spec, a codec that does
// not fit the dtype, a frame over the limits.
Result<EncodedFrame> EncodeFrame(const Message& message, const EncodeOptions& options = {});

struct TensorDescriptor {
  std::string name;
  DType dtype = DType::kF32;
  Codec codec = Codec::kNone;
  Shape shape;
  uint64_t raw_len = 0;
  uint64_t encoded_len = 0;
  uint64_t offset = 0;
};

struct ParsedMetadata {
  Fields fields;
  std::vector<TensorDescriptor> tensors;
};

// Parses exactly `header.metadata_len` bytes at `bytes`, checking every field
// and descriptor (docs/wire.md, "Metadata") before the payload is allocated:
// the field count against max_fields, key uniqueness in O(n log n), each
// tensor against max_tensor_bytes and their sum against max_decoded_bytes.
Result<ParsedMetadata> ParseMetadata(const uint8_t* bytes, const FrameHeader& header,
                                     const Limits& limits);

// Builds the message from a received payload (header.payload_len() bytes in
// `payload`, 64-byte aligned). kNone tensors are views of `payload`; encoded
// ones are decoded into pooled buffers. A zstd frame's declared content size
// is checked against the descriptor before its buffer is allocated, and an
// allocation failure is a ResourceExhausted error, never an exception.
Result<Message> AssembleMessage(const FrameHeader& header, ParsedMetadata metadata,
                                std::shared_ptr<Storage> payload);

// Whole-frame decoding from memory (tests, fuzzing, the in-memory benchmark):
// validates like a socket receiver, copying the payload into a pooled aligned
// buffer the way recv() would. Trailing bytes after the frame are an error.
Result<Message> DecodeFrame(const uint8_t* data, size_t size, const Limits& limits = {});

// Concatenates an encoded frame (what a socket would carry).
std::string FlattenFrame(const EncodedFrame& frame);

}  // namespace dnnd::wire
