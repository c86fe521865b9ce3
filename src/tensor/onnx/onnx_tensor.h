// ONNX tensors known at import time: initializers (the weights) and the
// constants of the shape arithmetic PyTorch exports around a Reshape, folded
// here. Used by onnx_import.cc only.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/tensor.h"

namespace onnx {
class TensorProto;
class NodeProto;
}  // namespace onnx

namespace dnnd::onnx {

// The batch dimension in folded shapes (Shape of a per-sample value): an
// integer no real dimension has; only a Reshape may consume it.
inline constexpr int64_t kBatch = -(int64_t{1} << 40);

struct Const {
  Shape dims;
  bool integer = false;     // i holds the values, else f
  std::vector<float> f;     // float and double tensors
  std::vector<int64_t> i;   // integer and bool tensors
  std::string origin;       // the initializer's name; "" when computed
  bool transposed = false;  // 2-D: origin's data, transposed

  static Const MakeFloat(Shape dims, std::vector<float> v);
  static Const MakeInt(Shape dims, std::vector<int64_t> v);
  int64_t Numel() const {
    return integer ? static_cast<int64_t>(i.size()) : static_cast<int64_t>(f.size());
  }
  float Float(size_t k) const { return integer ? static_cast<float>(i[k]) : f[k]; }
  std::vector<float> Floats() const;
  std::vector<int64_t> Ints() const;
  bool HasBatch() const;
  Const Transposed() const;  // of a 2-D tensor; origin kept, `transposed` flipped
};

// The tensor's values (float, double, int64, int32, int8, uint8, bool), its
// dims checked against the data. Errors start with `where`.
Result<Const> ReadTensor(const ::onnx::TensorProto& t, const std::string& where);

// Folds node `n` over constant inputs (nullptr: an omitted optional input):
// Identity, Cast, Gather, Unsqueeze, Squeeze, Concat, Slice, Transpose (2-D),
// Add, Sub, Mul, Div. InvalidArgument for anything else.
Result<Const> FoldOp(const ::onnx::NodeProto& n, const std::vector<const Const*>& in,
                     int64_t opset);

}  // namespace dnnd::onnx
