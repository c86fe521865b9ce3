// Numeric kernels on raw float buffers. The only place in dnnd that calls BLAS
// or Eigen: autograd ops, nn and optim call these, never a library directly.
// All matrices are row-major and dense unless a leading dimension says so.
#pragma once

#include <cstdint>

namespace dnnd::kernels {

// --- BLAS-like -------------------------------------------------------------
// C[m,n] = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T.
// A is [m,k] (or [k,m] if trans_a), B is [k,n] (or [n,k] if trans_b).
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          const float* b, float beta, float* c);
// Gemm for a layer's products (ops::Linear, ops::MatMul): with the opt-in
// bf16 precision active (isa.h), op(A) and op(B) are rounded to bfloat16 and
// multiplied with float32 sums, except for a C of one row; otherwise Gemm.
void LayerGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, const float* b, float beta, float* c);
void Axpy(int64_t n, float alpha, const float* x, float* y);  // y += alpha * x
void Scale(int64_t n, float alpha, float* x);                 // x *= alpha
void Fill(float* x, int64_t n, float value);
float Sum(int64_t n, const float* x);
float Dot(int64_t n, const float* x, const float* y);

// --- element-wise ----------------------------------------------------------
void Add(int64_t n, const float* a, const float* b, float* out);
void Sub(int64_t n, const float* a, const float* b, float* out);
void Mul(int64_t n, const float* a, const float* b, float* out);
void MulAdd(int64_t n, const float* a, const float* b, float* out);  // out += a*b
void AddScalarMul(int64_t n, const float* a, float s, float* out);   // out = s*a
// out[r, c] = in[r, c] + row[c]; `in` may alias `out`.
void AddRowVector(int64_t rows, int64_t cols, const float* in, const float* row, float* out);
// out[c] (+)= sum_r in[r, c]
void ColumnSum(int64_t rows, int64_t cols, const float* in, float* out, bool accumulate);
// out[r] (+)= sum_c in[r, c]
void RowSum(int64_t rows, int64_t cols, const float* in, float* out, bool accumulate);

void Relu(int64_t n, const float* x, float* y);
// out = Relu of a + b, in one pass: the same values as Add then Relu.
void AddRelu(int64_t n, const float* a, const float* b, float* out);
void ReluBackward(int64_t n, const float* y, const float* gy, float* gx);  // gx = gy * (y > 0)
void Sigmoid(int64_t n, const float* x, float* y);
void SigmoidBackward(int64_t n, const float* y, const float* gy, float* gx);
void Tanh(int64_t n, const float* x, float* y);
void TanhBackward(int64_t n, const float* y, const float* gy, float* gx);

// Row-wise softmax / log-softmax over `cols`, numerically stable.
void SoftmaxRows(int64_t rows, int64_t cols, const float* x, float* y);
void LogSoftmaxRows(int64_t rows, int64_t cols, const float* x, float* y);

// --- convolution and pooling (NCHW) ------------------------------------------
struct Conv2dGeometry {
  int64_t channels, height, width;  // input per sample
  int64_t kernel_h, kernel_w, stride, padding;
  int64_t out_h() const { return (height + 2 * padding - kernel_h) / stride + 1; }
  int64_t out_w() const { return (width + 2 * padding - kernel_w) / stride + 1; }
  int64_t patch() const { return channels * kernel_h * kernel_w; }
};
// cols[patch, out_h*out_w] from one image[C, H, W]; zero padding. Row r of
// cols starts at cols + r * ld (ld >= out_h*out_w), so several images can sit
// side by side in one matrix.
void Im2Col(const Conv2dGeometry& g, const float* image, float* cols, int64_t ld);
// image[C, H, W] += scatter of cols (the adjoint of Im2Col, same layout).
void Col2Im(const Conv2dGeometry& g, const float* cols, int64_t ld, float* image);

// Pooling output size along one dimension (PyTorch's floor mode).
inline int64_t PoolOut(int64_t in, int64_t k, int64_t stride, int64_t padding) {
  return (in + 2 * padding - k) / stride + 1;
}
// Max pooling of one plane; `argmax` records the input index (into the
// unpadded plane) of each output. Padding counts as -inf, so with
// padding <= k / 2 every window holds at least one input element.
void MaxPool2dPlane(int64_t h, int64_t w, int64_t k, int64_t stride, int64_t padding,
                    const float* in, float* out, int32_t* argmax);
void MaxPool2dPlaneBackward(int64_t out_n, const int32_t* argmax, const float* gy, float* gx);
// Average pooling of one plane, padded zeros counted (divisor k * k).
void AvgPool2dPlane(int64_t h, int64_t w, int64_t k, int64_t stride, int64_t padding,
                    const float* in, float* out);
// gx (+)= the adjoint of AvgPool2dPlane applied to gy; gx must be zeroed first.
void AvgPool2dPlaneBackward(int64_t h, int64_t w, int64_t k, int64_t stride, int64_t padding,
                            const float* gy, float* gx);

// --- activations (kernels_nn.cc) ----------------------------------------------
void LeakyRelu(int64_t n, const float* x, float slope, float* y);
// gx = gy where x > 0, else slope * gy (PyTorch's subgradient at 0 is slope).
void LeakyReluBackward(int64_t n, const float* x, float slope, const float* gy, float* gx);
void Gelu(int64_t n, const float* x, float* y);  // x * Phi(x), erf form
// gx = gy * (Phi(x) + x * phi(x)).
void GeluBackward(int64_t n, const float* x, const float* gy, float* gx);

// --- normalisation (kernels_nn.cc) ----------------------------------------------
// Batch norm sees x as [n, c, plane] (plane = h * w, or 1 for [n, c]).
// Training forward: per channel, mean and biased variance of the batch
// (never sum-of-squares minus squared mean: deviations from a mean, with
// double accumulators), then y = (x - mean) * invstd * weight + bias.
// weight/bias may be null (1 / 0). Writes mean[c], var[c] (biased) and
// invstd[c] = 1 / sqrt(var + eps) as the forward used it (backward needs that
// exact value: see BatchNormBackward's relu_y).
// `relu`: y = max(that, 0) instead (a following ReLU fused: one pass less).
// Parallel over channels, each channel finished while its data is in cache.
void BatchNormTrainForward(int64_t n, int64_t c, int64_t plane, const float* x, const float* weight,
                           const float* bias, float eps, bool relu, float* y, float* mean,
                           float* var, float* invstd);
// y = x * scale[ch] + shift[ch] (evaluation-mode batch norm, and its dx).
void ChannelAffine(int64_t n, int64_t c, int64_t plane, const float* x, const float* scale,
                   const float* shift, float* y);
// Batch norm backward from the statistics used in forward (mean, invstd per
// channel; the batch's in training, the running ones in evaluation):
//   sum_g[ch] = sum g,  sum_gx[ch] = sum g * (x - mean)  (double accumulators)
// and, when dx is not null and `batch_stats`, the standard formula
//   dx = w * invstd * (g - sum_g / m - (x - mean) * invstd^2 * sum_gx / m)
// with m = n * plane (with !batch_stats, dx = w * invstd * g). weight may be
// null (1). dweight = invstd * sum_gx, dbias = sum_g; either may be null.
// relu_y, when not null, is the output of a ReLU fused after the batch norm:
// g is then the ReLU's output gradient, taken as 0 where relu_y <= 0. With
// batch_stats and [n, c, h, w] the vector kernels recompute that mask from x,
// weight, bias and BatchNormTrainForward's own mean and invstd instead of
// reading relu_y (one stream less per pass), so those must be exactly the
// forward's; relu_y is still read on the other paths.
void BatchNormBackward(int64_t n, int64_t c, int64_t plane, const float* x, const float* g,
                       const float* relu_y, const float* mean, const float* invstd,
                       const float* weight, const float* bias, bool batch_stats, float* dx,
                       float* dweight, float* dbias);
// Layer norm over rows of `cols` elements: y = (x - mean) * invstd * w + b
// (w/b [cols] or null); writes each row's mean and invstd for backward.
void LayerNormForward(int64_t rows, int64_t cols, const float* x, const float* weight,
                      const float* bias, float eps, float* y, float* mean, float* invstd);
// dx (if not null) = invstd * (gh - mean(gh) - xhat * mean(gh * xhat)), gh = g * w;
// dweight += sum_rows g * xhat, dbias += sum_rows g (either may be null;
// they are accumulated into, so zero them first).
void LayerNormBackward(int64_t rows, int64_t cols, const float* x, const float* g,
                       const float* mean, const float* invstd, const float* weight, float* dx,
                       float* dweight, float* dbias);

// --- optimiser updates (in place over one parameter tensor) -----------------
// SGD with momentum/Nesterov/weight decay, PyTorch semantics. `buf` may be
// null when momentum == 0.
void SgdUpdate(int64_t n, float* w, const float* g, float* buf, float lr, float momentum,
               float dampening, float weight_decay, bool nesterov, bool first_step);
// Adam / AdamW (decoupled weight decay when `decoupled`), PyTorch semantics;
// `step` is the 1-based step count after this update.
void AdamUpdate(int64_t n, float* w, const float* g, float* m, float* v, float lr, float beta1,
                float beta2, float eps, float weight_decay, bool decoupled, int64_t step);

}  // namespace dnnd::kernels
