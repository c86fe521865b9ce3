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

// Max pooling of one plane; `argmax` records the input index of each output.
void MaxPool2dPlane(int64_t h, int64_t w, int64_t k, int64_t stride, const float* in, float* out,
                    int32_t* argmax);
void MaxPool2dPlaneBackward(int64_t out_n, const int32_t* argmax, const float* gy, float* gx);

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
