#include "tensor/onnx/onnx_tensor.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "onnx/onnx.pb.h"

namespace dnnd::onnx {

Const Const::MakeFloat(Shape dims, std::vector<float> v) {
  Const c;
  c.dims = std::move(dims);
  c.f = std::move(v);
  return c;
}

Const Const::MakeInt(Shape dims, std::vector<int64_t> v) {
  Const c;
  c.dims = std::move(dims);
  c.integer = true;
  c.i = std::move(v);
  return c;
}

std::vector<float> Const::Floats() const {
  if (!integer) return f;
  return std::vector<float>(i.begin(), i.end());
}

std::vector<int64_t> Const::Ints() const {
  if (integer) return i;
  std::vector<int64_t> out;
  for (float x : f) out.push_back(static_cast<int64_t>(x));
  return out;
}

bool Const::HasBatch() const { return integer && std::find(i.begin(), i.end(), kBatch) != i.end(); }

Const Const::Transposed() const {
  Const t = *this;
  const int64_t r = dims.at(0), c = dims.at(1);
  t.dims = {c, r};
  t.transposed = !transposed;
  for (int64_t y = 0; y < r; ++y)
    for (int64_t x = 0; x < c; ++x) {
      if (integer)
        t.i[x * r + y] = i[y * c + x];
      else
        t.f[x * r + y] = f[y * c + x];
    }
  return t;
}

namespace {

// Values from raw_data (little-endian, as ONNX stores it) or the typed field.
template <typename Raw, typename Out, typename Field>
Status Take(const ::onnx::TensorProto& t, int64_t n, const Field& field, std::vector<Out>* out,
            const std::string& where) {
  // Sizes are checked before anything is allocated: dims are the file's word.
  if (t.has_raw_data()) {
    if (t.raw_data().size() != static_cast<size_t>(n) * sizeof(Raw))
      return Corruption(where + ": " + std::to_string(t.raw_data().size()) + " bytes of data for " +
                        std::to_string(n) + " elements of " + std::to_string(sizeof(Raw)) +
                        " bytes");
    out->resize(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) {
      Raw v;
      std::memcpy(&v, t.raw_data().data() + k * sizeof(Raw), sizeof(Raw));
      (*out)[k] = static_cast<Out>(v);
    }
    return Status::Ok();
  }
  if (field.size() != n)
    return Corruption(where + ": " + std::to_string(field.size()) + " values for " +
                      std::to_string(n) + " elements");
  out->resize(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) (*out)[k] = static_cast<Out>(field.Get(static_cast<int>(k)));
  return Status::Ok();
}

}  // namespace

Result<Const> ReadTensor(const ::onnx::TensorProto& t, const std::string& where) {
  if (t.data_location() == ::onnx::TensorProto::EXTERNAL || t.external_data_size() > 0)
    return InvalidArgument(where +
                           ": its data is stored outside the file (external data); "
                           "export with the weights inside (models under 2 GiB)");
  Const c;
  int64_t n = 1;
  for (int64_t d : t.dims()) {
    if (d < 0 || d > (int64_t{1} << 31) || (d > 0 && n > (int64_t{1} << 31) / d))
      return Corruption(where + ": dimension " + std::to_string(d) + " is out of range");
    n *= d;
    c.dims.push_back(d);
  }
  switch (t.data_type()) {
    case ::onnx::TensorProto::FLOAT:
      DNND_RETURN_IF_ERROR(Take<float>(t, n, t.float_data(), &c.f, where));
      break;
    case ::onnx::TensorProto::DOUBLE:
      DNND_RETURN_IF_ERROR(Take<double>(t, n, t.double_data(), &c.f, where));
      break;
    case ::onnx::TensorProto::INT64:
      c.integer = true;
      DNND_RETURN_IF_ERROR(Take<int64_t>(t, n, t.int64_data(), &c.i, where));
      break;
    case ::onnx::TensorProto::INT32:
      c.integer = true;
      DNND_RETURN_IF_ERROR(Take<int32_t>(t, n, t.int32_data(), &c.i, where));
      break;
    case ::onnx::TensorProto::INT8:
      c.integer = true;
      DNND_RETURN_IF_ERROR(Take<int8_t>(t, n, t.int32_data(), &c.i, where));
      break;
    case ::onnx::TensorProto::UINT8:
    case ::onnx::TensorProto::BOOL:
      c.integer = true;
      DNND_RETURN_IF_ERROR(Take<uint8_t>(t, n, t.int32_data(), &c.i, where));
      break;
    default:
      return InvalidArgument(where + ": data type " + std::to_string(t.data_type()) +
                             " is not supported (float, double and integer tensors are)");
  }
  return c;
}

namespace {

Status Bad(const ::onnx::NodeProto& n, const std::string& why) {
  return InvalidArgument("folding " + n.op_type() + " '" + n.name() + "' over constants: " + why);
}

const ::onnx::AttributeProto* Attr(const ::onnx::NodeProto& n, const char* name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

std::vector<int64_t> Axes(const ::onnx::NodeProto& n, const std::vector<const Const*>& in,
                          int64_t opset) {
  if (opset >= 13 && in.size() > 1 && in[1]) return in[1]->Ints();
  const auto* a = Attr(n, "axes");
  return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::vector<int64_t>{};
}

}  // namespace

Result<Const> FoldOp(const ::onnx::NodeProto& n, const std::vector<const Const*>& in,
                     int64_t opset) {
  const std::string& op = n.op_type();
  if (in.empty() || !in[0]) return Bad(n, "no input");
  const Const& a = *in[0];
  if (op == "Identity") {
    Const out = a;
    out.origin = a.origin;
    return out;
  }
  if (op == "Cast") {
    const auto* to = Attr(n, "to");
    if (!to) return Bad(n, "no 'to'");
    const int64_t t = to->i();
    if (t == ::onnx::TensorProto::FLOAT || t == ::onnx::TensorProto::DOUBLE)
      return Const::MakeFloat(a.dims, a.Floats());
    if (a.HasBatch() || a.integer) {
      Const out = Const::MakeInt(a.dims, a.Ints());
      return out;
    }
    return Const::MakeInt(a.dims, a.Ints());
  }
  if (op == "Gather") {
    if (in.size() != 2 || !in[1]) return Bad(n, "expected data and indices");
    const auto* ax = Attr(n, "axis");
    if ((ax && ax->i() != 0) || a.dims.size() != 1) return Bad(n, "only 1-D data along axis 0");
    const Const& idx = *in[1];
    std::vector<int64_t> out;
    std::vector<float> outf;
    for (int64_t k : idx.Ints()) {
      if (k < 0) k += a.Numel();
      if (k < 0 || k >= a.Numel()) return Bad(n, "index out of range");
      if (a.integer)
        out.push_back(a.i[k]);
      else
        outf.push_back(a.f[k]);
    }
    if (a.integer) return Const::MakeInt(idx.dims, out);
    return Const::MakeFloat(idx.dims, outf);
  }
  if (op == "Unsqueeze" || op == "Squeeze") {
    Const out = a;
    out.origin.clear();
    std::vector<int64_t> axes = Axes(n, in, opset);
    if (op == "Unsqueeze") {
      std::sort(axes.begin(), axes.end());
      for (int64_t ax : axes) {
        const int64_t rank = static_cast<int64_t>(out.dims.size()) + 1;
        if (ax < 0) ax += rank;
        if (ax < 0 || ax >= rank) return Bad(n, "axis out of range");
        out.dims.insert(out.dims.begin() + ax, 1);
      }
    } else {
      Shape dims;
      for (size_t d = 0; d < out.dims.size(); ++d) {
        const bool listed = axes.empty() ? out.dims[d] == 1
                                         : std::count(axes.begin(), axes.end(), int64_t(d)) ||
                                               std::count(axes.begin(), axes.end(),
                                                          int64_t(d) - int64_t(out.dims.size()));
        if (!listed) dims.push_back(out.dims[d]);
      }
      out.dims = dims;
    }
    return out;
  }
  if (op == "Concat") {
    Const out = a;
    out.origin.clear();
    if (a.dims.size() != 1) return Bad(n, "only 1-D constants");
    for (size_t k = 1; k < in.size(); ++k) {
      if (!in[k] || in[k]->dims.size() != 1 || in[k]->integer != a.integer)
        return Bad(n, "only 1-D constants of one type");
      out.i.insert(out.i.end(), in[k]->i.begin(), in[k]->i.end());
      out.f.insert(out.f.end(), in[k]->f.begin(), in[k]->f.end());
      out.dims[0] += in[k]->dims[0];
    }
    return out;
  }
  if (op == "Slice") {
    if (a.dims.size() != 1 || !a.integer) return Bad(n, "only 1-D integer constants");
    int64_t start = 0, end = a.Numel(), step = 1;
    if (opset >= 10) {
      if (in.size() < 3 || !in[1] || !in[2] || in[1]->Numel() != 1 || in[2]->Numel() != 1)
        return Bad(n, "expected one start and one end");
      start = in[1]->Ints()[0];
      end = in[2]->Ints()[0];
      if (in.size() > 4 && in[4]) step = in[4]->Ints().at(0);
    } else {
      const auto* s = Attr(n, "starts");
      const auto* e = Attr(n, "ends");
      if (!s || !e || s->ints_size() != 1 || e->ints_size() != 1)
        return Bad(n, "expected one start and end");
      start = s->ints(0);
      end = e->ints(0);
    }
    if (step != 1) return Bad(n, "only step 1");
    const int64_t len = a.Numel();
    if (start < 0) start += len;
    if (end < 0) end += len;
    start = std::clamp<int64_t>(start, 0, len);
    end = std::clamp<int64_t>(end, start, len);
    std::vector<int64_t> out(a.i.begin() + start, a.i.begin() + end);
    return Const::MakeInt({end - start}, out);
  }
  if (op == "Transpose") {
    const auto* perm = Attr(n, "perm");
    if (a.dims.size() != 2 || (perm && (perm->ints_size() != 2 || perm->ints(0) != 1)))
      return Bad(n, "only 2-D transposes");
    return a.Transposed();
  }
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
    if (in.size() != 2 || !in[1]) return Bad(n, "expected two inputs");
    const Const& b = *in[1];
    if (b.Numel() != 1 && b.Numel() != a.Numel()) return Bad(n, "shapes do not broadcast");
    const Const& big = a.Numel() >= b.Numel() ? a : b;
    if (a.HasBatch() || b.HasBatch()) {
      Const out = Const::MakeInt(big.dims, std::vector<int64_t>(big.Numel(), kBatch));
      return out;  // the caller refuses arithmetic on the batch
    }
    const int64_t count = big.Numel();
    if (a.integer && b.integer) {
      std::vector<int64_t> out(count);
      for (int64_t k = 0; k < count; ++k) {
        const int64_t x = a.i[a.Numel() == 1 ? 0 : k], y = b.i[b.Numel() == 1 ? 0 : k];
        if (op == "Div" && (y == 0 || (y == -1 && x == INT64_MIN)))
          return Bad(n, "division by zero or overflow");
        int64_t r = 0;
        const bool overflow = op == "Add"   ? __builtin_add_overflow(x, y, &r)
                              : op == "Sub" ? __builtin_sub_overflow(x, y, &r)
                              : op == "Mul" ? __builtin_mul_overflow(x, y, &r)
                                            : (r = x / y, false);
        if (overflow) return Bad(n, "integer overflow");
        out[k] = r;
      }
      return Const::MakeInt(big.dims, out);
    }
    std::vector<float> out(count);
    for (int64_t k = 0; k < count; ++k) {
      const float x = a.Float(a.Numel() == 1 ? 0 : k), y = b.Float(b.Numel() == 1 ? 0 : k);
      out[k] = op == "Add" ? x + y : op == "Sub" ? x - y : op == "Mul" ? x * y : x / y;
    }
    return Const::MakeFloat(big.dims, out);
  }
  return Bad(n, "op type '" + op + "' is not supported over constants");
}

}  // namespace dnnd::onnx
