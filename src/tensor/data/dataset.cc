#include "tensor/data/dataset.h"

#include <algorithm>
#include <numeric>
#include <random>

namespace dnnd::data {

int64_t Dataset::size() const {
  const int64_t per = std::max<int64_t>(1, sample_numel());
  return static_cast<int64_t>(type == SampleType::kUint8 ? u8.size() : f32.size()) / per;
}

std::vector<int64_t> Dataset::ClassHistogram() const {
  std::vector<int64_t> h(static_cast<size_t>(std::max(0, num_classes)), 0);
  for (int32_t l : labels)
    if (l >= 0 && l < num_classes) ++h[l];
  return h;
}

Dataset Dataset::Take(int64_t n) const {
  if (n <= 0 || n >= size()) return *this;
  return Slice(0, n);
}

Dataset Dataset::Part(int64_t index, int64_t count) const {
  const int64_t per_part = size() / std::max<int64_t>(1, count);
  return Slice(index * per_part, per_part);
}

Dataset Dataset::EmptyLike() const {
  Dataset d;
  d.sample_shape = sample_shape;
  d.type = type;
  d.num_classes = num_classes;
  d.target_width = target_width;
  return d;
}

Dataset Dataset::Slice(int64_t first, int64_t n) const {
  Dataset d = EmptyLike();
  const int64_t per = sample_numel();
  if (type == SampleType::kUint8)
    d.u8.assign(u8.begin() + first * per, u8.begin() + (first + n) * per);
  else
    d.f32.assign(f32.begin() + first * per, f32.begin() + (first + n) * per);
  if (!labels.empty()) d.labels.assign(labels.begin() + first, labels.begin() + first + n);
  if (!targets.empty())
    d.targets.assign(targets.begin() + first * target_width,
                     targets.begin() + (first + n) * target_width);
  return d;
}

Dataset Dataset::Select(const std::vector<int64_t>& indices) const {
  Dataset d = EmptyLike();
  const int64_t per = sample_numel();
  const size_t n = indices.size();
  if (type == SampleType::kUint8)
    d.u8.reserve(n * per);
  else
    d.f32.reserve(n * per);
  for (int64_t i : indices) {
    if (type == SampleType::kUint8)
      d.u8.insert(d.u8.end(), u8.begin() + i * per, u8.begin() + (i + 1) * per);
    else
      d.f32.insert(d.f32.end(), f32.begin() + i * per, f32.begin() + (i + 1) * per);
    if (!labels.empty()) d.labels.push_back(labels[i]);
    if (!targets.empty())
      d.targets.insert(d.targets.end(), targets.begin() + i * target_width,
                       targets.begin() + (i + 1) * target_width);
  }
  return d;
}

Dataset MakeXorDataset() {
  Dataset d;
  d.sample_shape = {3};
  d.type = SampleType::kFloat32;
  d.target_width = 1;
  for (int i = 0; i < 8; ++i) {
    int bits[3] = {(i >> 2) & 1, (i >> 1) & 1, i & 1};
    for (int b : bits) d.f32.push_back(static_cast<float>(b));
    d.targets.push_back(static_cast<float>(bits[0] ^ bits[1] ^ bits[2]));
  }
  return d;
}

DataLoader::DataLoader(const Dataset& set, LoaderOptions options) : set_(set), options_(options) {
  if (options_.batch_size < 1) options_.batch_size = 1;
  if (!(options_.std > 0.0f)) options_.std = 1.0f;
}

int64_t DataLoader::num_batches() const {
  const int64_t n = set_.size(), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

void DataLoader::PrepareEpoch(int64_t epoch) {
  if (epoch == epoch_ && !order_.empty()) return;
  epoch_ = epoch;
  order_.resize(static_cast<size_t>(set_.size()));
  std::iota(order_.begin(), order_.end(), 0);
  if (options_.shuffle) {
    // Seeded per (seed, epoch): independent of how many batches ran before.
    std::seed_seq seq{static_cast<uint32_t>(options_.seed),
                      static_cast<uint32_t>(options_.seed >> 32), static_cast<uint32_t>(epoch),
                      static_cast<uint32_t>(epoch >> 32)};
    std::mt19937_64 rng(seq);
    // Fisher-Yates with our own index draw: std::shuffle's use of the engine is
    // implementation-defined, and batches must not change across toolchains.
    for (int64_t i = static_cast<int64_t>(order_.size()) - 1; i > 0; --i) {
      const uint64_t j = rng() % static_cast<uint64_t>(i + 1);
      std::swap(order_[i], order_[j]);
    }
  }
}

Batch DataLoader::GetBatch(int64_t epoch, int64_t index) {
  PrepareEpoch(epoch);
  const int64_t begin = index * options_.batch_size;
  const int64_t size = std::min<int64_t>(options_.batch_size, set_.size() - begin);
  const int64_t per = set_.sample_numel();
  Batch batch;
  batch.size = size;
  Shape shape = {size};
  shape.insert(shape.end(), set_.sample_shape.begin(), set_.sample_shape.end());
  batch.x = Tensor::Empty(shape);
  float* out = batch.x.data();
  const float inv_std = 1.0f / options_.std;
  for (int64_t i = 0; i < size; ++i) {
    const int64_t s = order_[begin + i];
    float* dst = out + i * per;
    if (set_.type == SampleType::kUint8) {
      // x/255 then normalise, folded into one multiply-add the compiler vectorises.
      const uint8_t* src = set_.u8.data() + s * per;
      const float scale = inv_std / 255.0f, shift = -options_.mean * inv_std;
      for (int64_t k = 0; k < per; ++k) dst[k] = static_cast<float>(src[k]) * scale + shift;
    } else {
      const float* src = set_.f32.data() + s * per;
      const float shift = -options_.mean * inv_std;
      for (int64_t k = 0; k < per; ++k) dst[k] = src[k] * inv_std + shift;
    }
  }
  if (!set_.labels.empty()) {
    batch.target.labels.resize(static_cast<size_t>(size));
    for (int64_t i = 0; i < size; ++i) batch.target.labels[i] = set_.labels[order_[begin + i]];
  }
  if (set_.target_width > 0) {
    const int64_t w = set_.target_width;
    batch.target.values = Tensor::Empty({size, w});
    for (int64_t i = 0; i < size; ++i)
      std::copy_n(set_.targets.data() + order_[begin + i] * w, w,
                  batch.target.values.data() + i * w);
  }
  return batch;
}

}  // namespace dnnd::data
