// The wire protocol's value types (wire.h): dtype and codec names, the
// limits and encode options from the config, Fields, WireTensor and Message.
// The frame layout, EncodeFrame and the decoders are in wire.cc.
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/config.h"
#include "transport/wire.h"

namespace dnnd::wire {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
    case DType::kU8:
      return 1;
    case DType::kI32:
      return 4;
    case DType::kI64:
      return 8;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    case DType::kU8:
      return "u8";
    case DType::kI32:
      return "i32";
    case DType::kI64:
      return "i64";
  }
  return "?";
}

const char* CodecName(Codec codec) {
  switch (codec) {
    case Codec::kNone:
      return "none";
    case Codec::kShuffleZstd:
      return "zstd";
    case Codec::kBF16:
      return "bf16";
    case Codec::kF16:
      return "f16";
  }
  return "?";
}

Result<Codec> ParseCodec(std::string_view name) {
  for (Codec c : {Codec::kNone, Codec::kShuffleZstd, Codec::kBF16, Codec::kF16})
    if (name == CodecName(c)) return c;
  return InvalidArgument("unknown codec '" + std::string(name) +
                         "' (expected none, zstd, bf16 or f16)");
}

Limits Limits::FromConfig(const Config& config) {
  Limits l;
  l.max_frame_bytes = static_cast<uint64_t>(config.GetInt("transport.max_frame_bytes"));
  l.max_metadata_bytes = static_cast<uint32_t>(config.GetInt("transport.max_metadata_bytes"));
  l.max_tensor_bytes = static_cast<uint64_t>(config.GetInt("transport.max_tensor_bytes"));
  l.max_tensors = static_cast<uint32_t>(config.GetInt("transport.max_tensors"));
  l.max_fields = static_cast<uint32_t>(config.GetInt("transport.max_fields"));
  l.max_decoded_bytes = static_cast<uint64_t>(config.GetInt("transport.max_decoded_bytes"));
  l.max_hello_bytes = static_cast<uint32_t>(config.GetInt("transport.max_hello_bytes"));
  return l;
}

Limits Limits::BeforeHandshake() const {
  Limits l = *this;
  l.max_frame_bytes = max_hello_bytes;
  l.max_metadata_bytes = max_hello_bytes;
  l.max_tensor_bytes = 0;
  l.max_tensors = 0;
  l.max_fields = std::min(max_fields, kHandshakeMaxFields);
  l.max_decoded_bytes = 0;
  l.before_handshake = true;
  return l;
}

EncodeOptions EncodeOptions::FromConfig(const Config& config) {
  EncodeOptions o;
  o.limits = Limits::FromConfig(config);
  o.zstd_level = static_cast<int>(config.GetInt("transport.zstd_level"));
  return o;
}
// ---------------------------------------------------------------------------
// Fields
// ---------------------------------------------------------------------------

namespace {
const char* KindName(const Fields::Value& v) {
  switch (v.index()) {
    case 0:
      return "int";
    case 1:
      return "float";
    case 2:
      return "string";
    default:
      return "bytes";
  }
}
}  // namespace

void Fields::Set(std::string_view key, Value v) {
  for (auto& [k, existing] : entries_)
    if (k == key) {
      existing = std::move(v);
      return;
    }
  entries_.emplace_back(std::string(key), std::move(v));
}

const Fields::Value* Fields::Find(std::string_view key) const {
  for (const auto& [k, v] : entries_)
    if (k == key) return &v;
  return nullptr;
}

template <typename T>
static Result<T> GetAs(const Fields::Value* v, std::string_view key, const char* want) {
  if (!v) return InvalidArgument("missing field '" + std::string(key) + "'");
  if (const T* t = std::get_if<T>(v)) return *t;
  return InvalidArgument("field '" + std::string(key) + "' is " + KindName(*v) + ", expected " +
                         want);
}

Result<int64_t> Fields::GetInt(std::string_view key) const {
  return GetAs<int64_t>(Find(key), key, "int");
}
Result<double> Fields::GetFloat(std::string_view key) const {
  const Value* v = Find(key);
  if (v && std::holds_alternative<int64_t>(*v)) return static_cast<double>(std::get<int64_t>(*v));
  return GetAs<double>(v, key, "float");
}
Result<std::string> Fields::GetString(std::string_view key) const {
  return GetAs<std::string>(Find(key), key, "string");
}
Result<std::string> Fields::GetBytes(std::string_view key) const {
  auto r = GetAs<Bytes>(Find(key), key, "bytes");
  if (!r) return r.status();
  return std::move(r.value().data);
}
template <typename T>
static Result<std::optional<T>> FindAs(const Fields& f, std::string_view key,
                                       Result<T> (Fields::*get)(std::string_view) const) {
  if (!f.Has(key)) return std::optional<T>();
  auto v = (f.*get)(key);
  if (!v.ok()) return v.status();
  return std::optional<T>(std::move(v).value());
}
Result<std::optional<int64_t>> Fields::FindInt(std::string_view key) const {
  return FindAs(*this, key, &Fields::GetInt);
}
Result<std::optional<double>> Fields::FindFloat(std::string_view key) const {
  return FindAs(*this, key, &Fields::GetFloat);
}
Result<std::optional<std::string>> Fields::FindString(std::string_view key) const {
  return FindAs(*this, key, &Fields::GetString);
}
Result<std::optional<std::string>> Fields::FindBytes(std::string_view key) const {
  return FindAs(*this, key, &Fields::GetBytes);
}
int64_t Fields::IntOr(std::string_view key, int64_t fallback) const {
  const Value* v = Find(key);
  return v && std::holds_alternative<int64_t>(*v) ? std::get<int64_t>(*v) : fallback;
}
std::string Fields::StringOr(std::string_view key, std::string fallback) const {
  const Value* v = Find(key);
  return v && std::holds_alternative<std::string>(*v) ? std::get<std::string>(*v) : fallback;
}

// ---------------------------------------------------------------------------
// Tensors and messages
// ---------------------------------------------------------------------------

WireTensor WireTensor::FromTensor(std::string name, const Tensor& t, Codec codec) {
  WireTensor w;
  w.name = std::move(name);
  w.dtype = DType::kF32;
  w.shape = t.shape();
  w.codec = codec;
  w.storage = t.storage();
  w.byte_offset = static_cast<size_t>(reinterpret_cast<const uint8_t*>(t.data()) -
                                      static_cast<const uint8_t*>(t.storage()->data()));
  return w;
}

WireTensor WireTensor::FromBytes(std::string name, DType dtype, Shape shape, const void* data) {
  WireTensor w;
  w.name = std::move(name);
  w.dtype = dtype;
  w.shape = std::move(shape);
  const size_t n = w.raw_bytes();
  w.storage = Storage::Allocate(std::max<size_t>(n, 1));
  if (n) std::memcpy(w.storage->data(), data, n);
  return w;
}

Result<Tensor> WireTensor::ToTensor() const {
  if (dtype != DType::kF32)
    return Unsupported("tensor '" + name + "' is " + DTypeName(dtype) + ", expected f32");
  if (byte_offset % sizeof(float) != 0)
    return Internal("tensor '" + name + "' is not 4-byte aligned");
  return Tensor::FromStorage(storage, static_cast<int64_t>(byte_offset / sizeof(float)), shape);
}

const WireTensor* Message::FindTensor(std::string_view name) const {
  for (const WireTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

int64_t StatusToWireCode(StatusCode code) { return static_cast<int64_t>(code); }
StatusCode WireCodeToStatus(int64_t code) {
  if (code <= 0 || code > static_cast<int64_t>(StatusCode::kInternal)) return StatusCode::kInternal;
  return static_cast<StatusCode>(code);
}

Status Message::ErrorStatus() const {
  if (!is_error()) return Status::Ok();
  const int64_t code = fields.IntOr("code", static_cast<int64_t>(StatusCode::kInternal));
  return Status(WireCodeToStatus(code),
                fields.StringOr("message", "error frame without a message"));
}

Message Message::ResponseTo(const Message& request) {
  Message m;
  m.type = request.type;
  m.request_id = request.request_id;
  m.flags = kFlagResponse;
  return m;
}

Message Message::ErrorTo(uint16_t type, uint64_t request_id, const Status& status) {
  Message m;
  m.type = type;
  m.request_id = request_id;
  m.flags = kFlagResponse | kFlagError;
  m.fields.SetInt("code", StatusToWireCode(status.ok() ? StatusCode::kInternal : status.code()));
  m.fields.SetString("message", status.message().substr(0, 4096));
  return m;
}

Message Message::ErrorTo(const Message& request, const Status& status) {
  return ErrorTo(request.type, request.request_id, status);
}
}  // namespace dnnd::wire
