// The frame (wire.h): the header layout, EncodeFrame and the decoders
// (ParseHeader, ParseMetadata, AssembleMessage, DecodeFrame). The value types
// (Fields, WireTensor, Message, limits) are in wire_message.cc.
#include "transport/wire.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "transport/codec.h"

namespace dnnd::wire {

static_assert(std::endian::native == std::endian::little,
              "the wire format is little-endian and dnnd writes host integers directly");

namespace {

constexpr uint8_t kKindInt = 1, kKindFloat = 2, kKindString = 3, kKindBytes = 4;

// Alignment padding source: payload gaps point here instead of allocating.
alignas(64) const uint8_t kZeros[kPayloadAlignment] = {};

uint64_t AlignUp(uint64_t n) {
  return (n + kPayloadAlignment - 1) & ~uint64_t{kPayloadAlignment - 1};
}

// Cursor over a buffer sized exactly beforehand (no per-field growth or
// zero-filling: this is on every message's path).
class Writer {
 public:
  explicit Writer(uint8_t* p) : p_(p) {}
  template <typename T>
  void Put(T v) {
    std::memcpy(p_, &v, sizeof(T));
    p_ += sizeof(T);
  }
  void PutBytes(std::string_view s) {
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  uint8_t* position() const { return p_; }

 private:
  uint8_t* p_;
};

size_t FieldBytes(const std::string& key, const Fields::Value& v) {
  const size_t value = v.index() < 2
                           ? 8
                           : 4 + (v.index() == 2 ? std::get<std::string>(v).size()
                                                 : std::get<Fields::Bytes>(v).data.size());
  return 1 + key.size() + 1 + value;
}

// Bounds-checked cursor over untrusted bytes.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), left_(n) {}
  template <typename T>
  bool Read(T* v) {
    if (left_ < sizeof(T)) return false;
    std::memcpy(v, p_, sizeof(T));
    p_ += sizeof(T);
    left_ -= sizeof(T);
    return true;
  }
  bool ReadString(size_t n, std::string* s) {
    if (left_ < n) return false;
    s->assign(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    left_ -= n;
    return true;
  }
  size_t left() const { return left_; }
  size_t consumed(const uint8_t* start) const { return static_cast<size_t>(p_ - start); }

 private:
  const uint8_t* p_;
  size_t left_;
};

bool ValidKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
  });
}

bool ValidDType(uint8_t d) { return d >= 1 && d <= 6; }
bool ValidCodec(uint8_t c) { return c <= 3; }

// Whether `codec` can carry `dtype`; the encoded length it implies for numel
// elements (0 = variable, i.e. zstd).
bool CodecFits(Codec codec, DType dtype) {
  return codec == Codec::kNone || codec == Codec::kShuffleZstd || dtype == DType::kF32;
}

std::string At(size_t tensor_index, const std::string& name) {
  return "tensor " + std::to_string(tensor_index) + " ('" + name.substr(0, 64) + "')";
}

}  // namespace

// ---------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------

void WriteHeader(const FrameHeader& h, uint8_t out[kHeaderBytes]) {
  const uint32_t magic = kMagic, reserved = 0;
  std::memcpy(out + 0, &magic, 4);
  std::memcpy(out + 4, &h.version, 2);
  std::memcpy(out + 6, &h.type, 2);
  std::memcpy(out + 8, &h.flags, 4);
  std::memcpy(out + 12, &h.tensor_count, 4);
  std::memcpy(out + 16, &h.request_id, 8);
  std::memcpy(out + 24, &h.metadata_len, 4);
  std::memcpy(out + 28, &reserved, 4);
  std::memcpy(out + 32, &h.body_len, 8);
}

Result<FrameHeader> ParseHeader(const uint8_t* p, const Limits& limits) {
  uint32_t magic, reserved;
  FrameHeader h;
  std::memcpy(&magic, p + 0, 4);
  if (magic != kMagic) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%02x%02x%02x%02x", p[0], p[1], p[2], p[3]);
    return Corruption(std::string("not a dnnd frame (magic bytes ") + hex +
                      ", expected 444e4e57 \"DNNW\")");
  }
  std::memcpy(&h.version, p + 4, 2);
  std::memcpy(&h.type, p + 6, 2);
  std::memcpy(&h.flags, p + 8, 4);
  std::memcpy(&h.tensor_count, p + 12, 4);
  std::memcpy(&h.request_id, p + 16, 8);
  std::memcpy(&h.metadata_len, p + 24, 4);
  std::memcpy(&reserved, p + 28, 4);
  std::memcpy(&h.body_len, p + 32, 8);
  if (h.version != kVersion)
    return Unsupported("protocol version " + std::to_string(h.version) +
                       " is not supported; this node speaks " + std::to_string(kVersion));
  if (h.flags & ~kKnownFlags)
    return Corruption("unknown flag bits " + std::to_string(h.flags & ~kKnownFlags));
  if (reserved != 0) return Corruption("reserved header bytes are not zero");
  if (h.metadata_len > h.body_len)
    return Corruption("metadata length " + std::to_string(h.metadata_len) +
                      " exceeds body length " + std::to_string(h.body_len));
  if (limits.before_handshake) {
    // Checked first, so an unauthenticated peer learns the one rule it broke.
    if (h.body_len >
        limits.max_frame_bytes - std::min<uint64_t>(limits.max_frame_bytes, kHeaderBytes))
      return ResourceExhausted(
          "frame of " + std::to_string(h.body_len) +
          " body bytes before the handshake exceeds "
          "transport.max_hello_bytes " +
          std::to_string(limits.max_frame_bytes) +
          " (only a small HELLO_AUTH is accepted from a peer not yet authenticated)");
    if (h.tensor_count > 0)
      return PermissionDenied(std::to_string(h.tensor_count) +
                              " tensors before the handshake: a peer not yet "
                              "authenticated may send only HELLO_AUTH, which has none");
  }
  if (h.body_len >
      limits.max_frame_bytes - std::min<uint64_t>(limits.max_frame_bytes, kHeaderBytes))
    return ResourceExhausted("frame of " + std::to_string(h.body_len) +
                             " body bytes exceeds transport.max_frame_bytes " +
                             std::to_string(limits.max_frame_bytes));
  if (h.metadata_len > limits.max_metadata_bytes)
    return ResourceExhausted(
        "metadata of " + std::to_string(h.metadata_len) + " bytes exceeds " +
        (limits.before_handshake ? "transport.max_hello_bytes " : "transport.max_metadata_bytes ") +
        std::to_string(limits.max_metadata_bytes));
  if (h.tensor_count > limits.max_tensors)
    return ResourceExhausted(std::to_string(h.tensor_count) +
                             " tensors exceed transport.max_tensors " +
                             std::to_string(limits.max_tensors));
  if (uint64_t{h.tensor_count} * kMinDescriptorBytes > h.metadata_len)
    return Corruption(std::to_string(h.tensor_count) + " tensors cannot fit in " +
                      std::to_string(h.metadata_len) + " metadata bytes");
  return h;
}
// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

Result<EncodedFrame> EncodeFrame(const Message& m, const EncodeOptions& options) {
  EncodedFrame f;
  const Limits& limits = options.limits;
  if (m.tensors.size() > limits.max_tensors)
    return ResourceExhausted(std::to_string(m.tensors.size()) +
                             " tensors exceed transport.max_tensors");
  if (m.fields.entries().size() >
      std::min<uint64_t>(limits.max_fields, std::numeric_limits<uint16_t>::max()))
    return ResourceExhausted(std::to_string(m.fields.entries().size()) +
                             " fields exceed transport.max_fields " +
                             std::to_string(limits.max_fields));

  // Exact metadata size first, so the head is one allocation written once.
  size_t metadata_len = 2;
  for (const auto& [key, value] : m.fields.entries()) {
    if (!ValidKey(key))
      return InvalidArgument("field key '" + key + "' must be 1-64 chars of [a-z0-9_.]");
    metadata_len += FieldBytes(key, value);
  }
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const WireTensor& t = m.tensors[i];
    if (t.name.size() > kMaxNameBytes)
      return InvalidArgument(At(i, t.name) + ": name longer than 1024 bytes");
    if (t.shape.size() > static_cast<size_t>(kMaxDims))
      return InvalidArgument(At(i, t.name) + ": more than 8 dims");
    metadata_len += 2 + t.name.size() + 4 + 8 * t.shape.size() + 24;
  }
  if (metadata_len > limits.max_metadata_bytes)
    return ResourceExhausted("metadata of " + std::to_string(metadata_len) +
                             " bytes exceeds transport.max_metadata_bytes");
  f.head_size_ = kHeaderBytes + metadata_len;
  f.head_.reset(new uint8_t[f.head_size_]);
  Writer head(f.head_.get() + kHeaderBytes);
  head.Put<uint16_t>(static_cast<uint16_t>(m.fields.entries().size()));
  for (const auto& [key, value] : m.fields.entries()) {
    head.Put<uint8_t>(static_cast<uint8_t>(key.size()));
    head.PutBytes(key);
    if (const int64_t* i = std::get_if<int64_t>(&value)) {
      head.Put<uint8_t>(kKindInt);
      head.Put<int64_t>(*i);
    } else if (const double* d = std::get_if<double>(&value)) {
      head.Put<uint8_t>(kKindFloat);
      head.Put<double>(*d);
    } else {
      const std::string& s =
          value.index() == 2 ? std::get<std::string>(value) : std::get<Fields::Bytes>(value).data;
      head.Put<uint8_t>(value.index() == 2 ? kKindString : kKindBytes);
      head.Put<uint32_t>(static_cast<uint32_t>(s.size()));
      head.PutBytes(s);
    }
  }

  // Payload pieces follow the head's slot; descriptors are written as each
  // tensor's encoded length becomes known.
  std::vector<EncodedFrame::Part>& payload = f.parts_;
  payload.reserve(1 + 2 * m.tensors.size());
  payload.push_back({nullptr, 0});  // the head, filled in below
  uint64_t offset = 0, decoded_total = 0;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const WireTensor& t = m.tensors[i];
    const int64_t numel = t.numel();
    if (numel < 0)
      return InvalidArgument(At(i, t.name) + ": invalid shape " + ShapeToString(t.shape));
    if (!CodecFits(t.codec, t.dtype))
      return InvalidArgument(At(i, t.name) + ": codec " + CodecName(t.codec) +
                             " needs f32, tensor is " + DTypeName(t.dtype));
    const uint64_t raw_len = static_cast<uint64_t>(numel) * DTypeSize(t.dtype);
    if (raw_len > limits.max_tensor_bytes)
      return ResourceExhausted(At(i, t.name) + ": " + std::to_string(raw_len) +
                               " bytes exceed transport.max_tensor_bytes");
    if (raw_len > limits.max_decoded_bytes - std::min(limits.max_decoded_bytes, decoded_total))
      return ResourceExhausted(At(i, t.name) +
                               ": the frame's tensors exceed transport.max_decoded_bytes " +
                               std::to_string(limits.max_decoded_bytes));
    decoded_total += raw_len;
    if (raw_len > 0 && (!t.storage || t.byte_offset + raw_len > t.storage->bytes()))
      return InvalidArgument(At(i, t.name) + ": storage is smaller than the shape");

    Codec codec = raw_len == 0 ? Codec::kNone : t.codec;  // an empty tensor has nothing to encode
    const void* bytes = raw_len ? t.data() : kZeros;
    uint64_t encoded_len = raw_len;
    if (raw_len > 0 && codec == Codec::kShuffleZstd) {
      auto out = Storage::Allocate(ShuffleZstdBound(raw_len));
      auto scratch = Storage::Allocate(raw_len);
      DNND_ASSIGN_OR_RETURN(size_t n, ShuffleZstdEncode(t.data(), raw_len, DTypeSize(t.dtype),
                                                        static_cast<uint8_t*>(scratch->data()),
                                                        static_cast<uint8_t*>(out->data()),
                                                        out->bytes(), options.zstd_level));
      if (n < raw_len) {  // incompressible data goes as it is
        bytes = out->data();
        encoded_len = n;
        f.keep_alive_.push_back(std::move(out));
      } else {
        codec = Codec::kNone;
        f.keep_alive_.push_back(t.storage);
      }
    } else if (raw_len > 0 && (codec == Codec::kBF16 || codec == Codec::kF16)) {
      auto out = Storage::Allocate(static_cast<size_t>(numel) * 2);
      const float* src = reinterpret_cast<const float*>(t.data());
      uint16_t* dst = static_cast<uint16_t*>(out->data());
      if (codec == Codec::kBF16)
        FloatToBF16(src, dst, numel);
      else
        FloatToF16(src, dst, numel);
      bytes = out->data();
      encoded_len = static_cast<uint64_t>(numel) * 2;
      f.keep_alive_.push_back(std::move(out));
    } else if (raw_len > 0) {
      f.keep_alive_.push_back(t.storage);
    }

    head.Put<uint16_t>(static_cast<uint16_t>(t.name.size()));
    head.PutBytes(t.name);
    head.Put<uint8_t>(static_cast<uint8_t>(t.dtype));
    head.Put<uint8_t>(static_cast<uint8_t>(codec));
    head.Put<uint8_t>(static_cast<uint8_t>(t.shape.size()));
    head.Put<uint8_t>(0);
    for (int64_t d : t.shape) head.Put<int64_t>(d);
    head.Put<uint64_t>(raw_len);
    head.Put<uint64_t>(encoded_len);
    head.Put<uint64_t>(offset);
    if (encoded_len) payload.push_back({bytes, encoded_len});
    offset += encoded_len;
    // Pad to the next tensor's alignment; nothing follows the last one.
    if (i + 1 < m.tensors.size() && AlignUp(offset) != offset) {
      payload.push_back({kZeros, AlignUp(offset) - offset});
      offset = AlignUp(offset);
    }
  }

  f.header_.type = m.type;
  f.header_.flags = m.flags;
  f.header_.tensor_count = static_cast<uint32_t>(m.tensors.size());
  f.header_.request_id = m.request_id;
  f.header_.metadata_len = static_cast<uint32_t>(metadata_len);
  f.header_.body_len = metadata_len + offset;
  if (kHeaderBytes + f.header_.body_len > limits.max_frame_bytes)
    return ResourceExhausted("frame of " + std::to_string(kHeaderBytes + f.header_.body_len) +
                             " bytes exceeds transport.max_frame_bytes " +
                             std::to_string(limits.max_frame_bytes));
  WriteHeader(f.header_, f.head_.get());
  f.parts_[0] = {f.head_.get(), f.head_size_};
  f.total_ = kHeaderBytes + f.header_.body_len;
  return f;
}

std::string FlattenFrame(const EncodedFrame& frame) {
  std::string out;
  out.reserve(frame.total_bytes());
  for (const auto& p : frame.parts()) out.append(static_cast<const char*>(p.data), p.size);
  return out;
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

Result<ParsedMetadata> ParseMetadata(const uint8_t* bytes, const FrameHeader& header,
                                     const Limits& limits) {
  ParsedMetadata md;
  Reader r(bytes, header.metadata_len);
  auto truncated = [&](const std::string& what) {
    return Corruption("metadata truncated in " + what + " at byte " +
                      std::to_string(r.consumed(bytes)));
  };
  uint16_t field_count;
  if (!r.Read(&field_count)) return truncated("the field count");
  if (field_count > limits.max_fields)
    return ResourceExhausted(
        std::to_string(field_count) + " fields exceed " +
        (limits.before_handshake
             ? "the " + std::to_string(limits.max_fields) + " allowed before the handshake"
             : "transport.max_fields " + std::to_string(limits.max_fields)));
  // Appended as read (Fields::Set would search the fields so far: quadratic);
  // uniqueness is checked once all are in.
  auto& entries = md.fields.entries_;
  entries.reserve(field_count);
  for (uint16_t i = 0; i < field_count; ++i) {
    uint8_t key_len, kind;
    std::string key;
    if (!r.Read(&key_len) || !r.ReadString(key_len, &key))
      return truncated("field " + std::to_string(i));
    if (!ValidKey(key)) return Corruption("field " + std::to_string(i) + " has an invalid key");
    if (!r.Read(&kind)) return truncated("field '" + key + "'");
    switch (kind) {
      case kKindInt: {
        int64_t v;
        if (!r.Read(&v)) return truncated("field '" + key + "'");
        entries.emplace_back(std::move(key), Fields::Value(v));
        break;
      }
      case kKindFloat: {
        double v;
        if (!r.Read(&v)) return truncated("field '" + key + "'");
        entries.emplace_back(std::move(key), Fields::Value(v));
        break;
      }
      case kKindString:
      case kKindBytes: {
        uint32_t n;
        std::string s;
        // ReadString checks n against the bytes actually present, so a bogus
        // length cannot allocate more than the metadata already received.
        if (!r.Read(&n) || !r.ReadString(n, &s)) return truncated("field '" + key + "'");
        if (kind == kKindString)
          entries.emplace_back(std::move(key), Fields::Value(std::move(s)));
        else
          entries.emplace_back(std::move(key), Fields::Value(Fields::Bytes{std::move(s)}));
        break;
      }
      default:
        return Corruption("field '" + key + "' has unknown kind " + std::to_string(kind));
    }
  }
  if (entries.size() > 1) {
    std::vector<std::string_view> keys;
    keys.reserve(entries.size());
    for (const auto& e : entries) keys.emplace_back(e.first);
    std::sort(keys.begin(), keys.end());
    if (auto twice = std::adjacent_find(keys.begin(), keys.end()); twice != keys.end())
      return Corruption("field '" + std::string(*twice) + "' appears twice");
  }

  const uint64_t payload_len = header.payload_len();
  uint64_t end_of_previous = 0, encoded_total = 0, decoded_total = 0;
  md.tensors.resize(header.tensor_count);  // bounded by metadata_len / 24 in ParseHeader
  for (uint32_t i = 0; i < header.tensor_count; ++i) {
    TensorDescriptor& d = md.tensors[i];
    uint16_t name_len;
    uint8_t dtype, codec, ndim, reserved;
    if (!r.Read(&name_len) || !r.ReadString(name_len, &d.name))
      return truncated("tensor " + std::to_string(i));
    if (name_len > kMaxNameBytes)
      return Corruption(At(i, d.name) + ": name longer than 1024 bytes");
    if (!r.Read(&dtype) || !r.Read(&codec) || !r.Read(&ndim) || !r.Read(&reserved))
      return truncated(At(i, d.name));
    if (!ValidDType(dtype))
      return Corruption(At(i, d.name) + ": unknown dtype " + std::to_string(dtype));
    if (!ValidCodec(codec))
      return Corruption(At(i, d.name) + ": unknown codec " + std::to_string(codec));
    if (ndim > kMaxDims)
      return Corruption(At(i, d.name) + ": " + std::to_string(ndim) + " dims (at most 8)");
    if (reserved != 0) return Corruption(At(i, d.name) + ": reserved byte is not zero");
    d.dtype = static_cast<DType>(dtype);
    d.codec = static_cast<Codec>(codec);
    if (!CodecFits(d.codec, d.dtype))
      return Corruption(At(i, d.name) + ": codec " + CodecName(d.codec) + " cannot carry " +
                        DTypeName(d.dtype));
    d.shape.resize(ndim);
    for (uint8_t k = 0; k < ndim; ++k) {
      if (!r.Read(&d.shape[k])) return truncated(At(i, d.name));
      if (d.shape[k] < 0)
        return Corruption(At(i, d.name) + ": negative dimension " + std::to_string(d.shape[k]));
    }
    if (!r.Read(&d.raw_len) || !r.Read(&d.encoded_len) || !r.Read(&d.offset))
      return truncated(At(i, d.name));

    const int64_t numel = ShapeNumel(d.shape);
    const uint64_t elem = DTypeSize(d.dtype);
    if (numel < 0 || static_cast<uint64_t>(numel) > std::numeric_limits<uint64_t>::max() / elem)
      return Corruption(At(i, d.name) + ": element count of shape " + ShapeToString(d.shape) +
                        " overflows");
    if (d.raw_len != static_cast<uint64_t>(numel) * elem)
      return Corruption(At(i, d.name) + ": raw length " + std::to_string(d.raw_len) +
                        " does not match shape " + ShapeToString(d.shape) + " of " +
                        DTypeName(d.dtype));
    if (d.raw_len > limits.max_tensor_bytes)
      return ResourceExhausted(At(i, d.name) + ": " + std::to_string(d.raw_len) +
                               " bytes exceed transport.max_tensor_bytes " +
                               std::to_string(limits.max_tensor_bytes));
    // Decoding allocates raw_len per encoded tensor: the frame's total is
    // bounded too, however well its payload compresses.
    if (d.raw_len > limits.max_decoded_bytes - decoded_total)
      return ResourceExhausted(
          At(i, d.name) + ": the frame's tensors decode to more than transport.max_decoded_bytes " +
          std::to_string(limits.max_decoded_bytes));
    decoded_total += d.raw_len;
    if (d.raw_len == 0 && (d.codec != Codec::kNone || d.encoded_len != 0))
      return Corruption(At(i, d.name) +
                        ": an empty tensor must have codec none and no payload bytes");
    switch (d.codec) {
      case Codec::kNone:
        if (d.encoded_len != d.raw_len)
          return Corruption(At(i, d.name) + ": encoded length differs from raw length");
        break;
      case Codec::kBF16:
      case Codec::kF16:
        if (d.encoded_len != static_cast<uint64_t>(numel) * 2)
          return Corruption(At(i, d.name) + ": encoded length is not 2 bytes per element");
        break;
      case Codec::kShuffleZstd:
        if (d.encoded_len == 0 || d.encoded_len > ShuffleZstdBound(d.raw_len))
          return Corruption(At(i, d.name) + ": compressed length " + std::to_string(d.encoded_len) +
                            " impossible for " + std::to_string(d.raw_len) + " raw bytes");
        break;
    }
    if (d.offset % kPayloadAlignment != 0)
      return Corruption(At(i, d.name) + ": offset is not 64-byte aligned");
    if (d.offset < end_of_previous)
      return Corruption(At(i, d.name) + ": overlaps the previous tensor");
    if (d.offset > payload_len || d.encoded_len > payload_len - d.offset)
      return Corruption(At(i, d.name) + ": bytes [" + std::to_string(d.offset) + ", +" +
                        std::to_string(d.encoded_len) + ") lie outside the " +
                        std::to_string(payload_len) + "-byte payload");
    end_of_previous = d.offset + d.encoded_len;
    encoded_total += d.encoded_len;
  }
  if (r.left() != 0)
    return Corruption(std::to_string(r.left()) + " unexpected bytes after the tensor descriptors");
  if (payload_len > encoded_total + uint64_t{kPayloadAlignment - 1} * header.tensor_count)
    return Corruption("payload of " + std::to_string(payload_len) +
                      " bytes is larger than its tensors need");
  return md;
}

Result<Message> AssembleMessage(const FrameHeader& header, ParsedMetadata md,
                                std::shared_ptr<Storage> payload) {
  Message m;
  m.type = header.type;
  m.flags = header.flags;
  m.request_id = header.request_id;
  m.fields = std::move(md.fields);
  m.tensors.reserve(md.tensors.size());
  const uint8_t* base = payload ? static_cast<const uint8_t*>(payload->data()) : nullptr;
  for (size_t i = 0; i < md.tensors.size(); ++i) {
    TensorDescriptor& d = md.tensors[i];
    WireTensor t;
    t.name = std::move(d.name);
    t.dtype = d.dtype;
    t.shape = std::move(d.shape);
    t.codec = d.codec;
    if (d.raw_len == 0) {
      t.storage = Storage::Allocate(1);
    } else if (d.codec == Codec::kNone) {
      t.storage = payload;
      t.byte_offset = d.offset;
    } else {
      const uint8_t* src = base + d.offset;
      // A zstd frame must declare exactly raw_len before a byte is allocated for it.
      if (d.codec == Codec::kShuffleZstd)
        if (Status s = ShuffleZstdCheck(src, d.encoded_len, d.raw_len); !s.ok())
          return s.WithContext(At(i, t.name));
      std::shared_ptr<Storage> scratch;
      try {
        t.storage = Storage::Allocate(d.raw_len);
        if (d.codec == Codec::kShuffleZstd) scratch = Storage::Allocate(d.raw_len);
      } catch (const std::bad_alloc&) {
        return ResourceExhausted(At(i, t.name) + ": cannot allocate " + std::to_string(d.raw_len) +
                                 " decoded bytes");
      }
      uint8_t* dst = static_cast<uint8_t*>(t.storage->data());
      const size_t numel = d.raw_len / DTypeSize(d.dtype);
      if (d.codec == Codec::kShuffleZstd) {
        Status s = ShuffleZstdDecode(src, d.encoded_len, DTypeSize(d.dtype),
                                     static_cast<uint8_t*>(scratch->data()), dst, d.raw_len);
        if (!s.ok()) return s.WithContext(At(i, t.name));
      } else {
        // The payload is 64-byte aligned and offsets too, so 2-byte reads are aligned.
        const uint16_t* half = reinterpret_cast<const uint16_t*>(src);
        if (d.codec == Codec::kBF16)
          BF16ToFloat(half, reinterpret_cast<float*>(dst), numel);
        else
          F16ToFloat(half, reinterpret_cast<float*>(dst), numel);
      }
    }
    m.tensors.push_back(std::move(t));
  }
  return m;
}

Result<Message> DecodeFrame(const uint8_t* data, size_t size, const Limits& limits) {
  if (size < kHeaderBytes)
    return Corruption("frame of " + std::to_string(size) + " bytes is shorter than its header");
  DNND_ASSIGN_OR_RETURN(FrameHeader header, ParseHeader(data, limits));
  if (size - kHeaderBytes != header.body_len)
    return Corruption("frame has " + std::to_string(size - kHeaderBytes) +
                      " body bytes, header says " + std::to_string(header.body_len));
  DNND_ASSIGN_OR_RETURN(ParsedMetadata md, ParseMetadata(data + kHeaderBytes, header, limits));
  std::shared_ptr<Storage> payload;
  if (const uint64_t n = header.payload_len()) {
    try {
      payload = Storage::Allocate(n);
    } catch (const std::bad_alloc&) {
      return ResourceExhausted("cannot allocate " + std::to_string(n) + " payload bytes");
    }
    std::memcpy(payload->data(), data + kHeaderBytes + header.metadata_len, n);
  }
  return AssembleMessage(header, std::move(md), std::move(payload));
}

}  // namespace dnnd::wire
