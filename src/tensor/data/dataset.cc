#include "tensor/data/dataset.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <stdexcept>

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

int64_t SampleChannels(const Shape& shape) { return shape.size() >= 3 ? shape[0] : 1; }

Status CheckLoaderOptions(const Shape& shape, const LoaderOptions& options,
                          const std::string& mean_setting, const std::string& std_setting) {
  const int64_t channels = SampleChannels(shape);
  const std::string samples = "samples of shape " + ShapeToString(shape) + " have " +
                              std::to_string(channels) + (channels == 1 ? " channel" : " channels");
  for (const auto* values : {&options.mean, &options.std}) {
    const std::string& setting = values == &options.mean ? mean_setting : std_setting;
    const auto n = static_cast<int64_t>(values->size());
    if (n == 0) return InvalidArgument(setting + " is empty; give one value or one per channel");
    if (n != 1 && n != channels)
      return InvalidArgument(setting + " has " + std::to_string(n) + " values but " + samples +
                             "; give one value or " + std::to_string(channels));
  }
  for (float v : options.std)
    if (!(v > 0.0f)) return InvalidArgument(std_setting + " must be > 0, not " + std::to_string(v));
  if (options.crop_padding < 0)
    return InvalidArgument("the crop padding must be >= 0, not " +
                           std::to_string(options.crop_padding));
  if ((options.crop_padding > 0 || options.flip) && shape.size() != 2 && shape.size() != 3)
    return InvalidArgument("augmentation (crop, flip) needs image samples ([c, h, w] or [h, w]); " +
                           samples.substr(0, samples.find(" have")) + " are not images");
  return Status::Ok();
}

DataLoader::DataLoader(const Dataset& set, LoaderOptions options) : set_(set), options_(options) {
  if (options_.batch_size < 1) options_.batch_size = 1;
  for (float& v : options_.std)
    if (!(v > 0.0f)) v = 1.0f;
  if (Status s = CheckLoaderOptions(set_.sample_shape, options_); !s.ok())
    throw std::invalid_argument(s.message());
  // x/255 then normalise, folded into one multiply-add per value.
  const int64_t channels = SampleChannels(set_.sample_shape);
  for (int64_t c = 0; c < channels; ++c) {
    const float mean = options_.mean.size() == 1 ? options_.mean[0] : options_.mean[c];
    const float inv_std = 1.0f / (options_.std.size() == 1 ? options_.std[0] : options_.std[c]);
    scale_.push_back(set_.type == SampleType::kUint8 ? inv_std / 255.0f : inv_std);
    shift_.push_back(-mean * inv_std);
  }
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

namespace {

// SplitMix64's finaliser: a well-mixed 64-bit value from any input.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Sample `src` (channels x h x w) into `dst`, scaled per channel; cropped at
// (dy, dx) of the image padded by `pad` zeros per side, then mirrored when
// `flip`. pad 0, no flip: a plain copy.
template <typename T>
void AssembleSample(const T* src, float* dst, int64_t channels, int64_t h, int64_t w,
                    const float* scale, const float* shift, int64_t pad, int64_t dy, int64_t dx,
                    bool flip) {
  const int64_t plane = h * w;
  for (int64_t c = 0; c < channels; ++c) {
    const T* in = src + c * plane;
    float* out = dst + c * plane;
    const float a = scale[c], b = shift[c];
    if (pad == 0 && !flip) {
      for (int64_t k = 0; k < plane; ++k) out[k] = static_cast<float>(in[k]) * a + b;
      continue;
    }
    for (int64_t y = 0; y < h; ++y) {
      const int64_t sy = y + dy - pad;
      float* row = out + y * w;
      if (sy < 0 || sy >= h) {
        std::fill(row, row + w, b);  // a padding row: 0 normalised
        continue;
      }
      const T* in_row = in + sy * w;
      for (int64_t x = 0; x < w; ++x) {
        const int64_t sx = (flip ? w - 1 - x : x) + dx - pad;
        row[x] = sx >= 0 && sx < w ? static_cast<float>(in_row[sx]) * a + b : b;
      }
    }
  }
}

}  // namespace

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
  // Samples as channels x h x w planes: [c, h, w], [h, w], or (not
  // augmented) anything else as one plane of `per` values.
  const Shape& ss = set_.sample_shape;
  const int64_t channels = static_cast<int64_t>(scale_.size());
  const int64_t h = ss.size() >= 2 ? ss[ss.size() - 2] : 1;
  const int64_t w = ss.size() >= 2 ? per / std::max<int64_t>(1, channels * h) : per;
  const int64_t pad = options_.crop_padding;
  const bool augment = pad > 0 || options_.flip;
  const uint64_t batch_key =
      Mix(Mix(Mix(options_.seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(index));
  for (int64_t i = 0; i < size; ++i) {
    const int64_t s = order_[begin + i];
    int64_t dy = pad, dx = pad;  // centred: no shift
    bool flip = false;
    if (augment) {
      // Drawn from (seed, epoch, batch, position) alone: the same batch in
      // any run with this seed, however it was reached.
      const uint64_t r = Mix(batch_key ^ static_cast<uint64_t>(i));
      if (pad > 0) {
        dy = static_cast<int64_t>(r % static_cast<uint64_t>(2 * pad + 1));
        dx = static_cast<int64_t>(Mix(r) % static_cast<uint64_t>(2 * pad + 1));
      }
      flip = options_.flip && (Mix(r ^ 0x5DEECE66Dull) >> 63) != 0;
    }
    float* dst = out + i * per;
    if (set_.type == SampleType::kUint8)
      AssembleSample(set_.u8.data() + s * per, dst, channels, h, w, scale_.data(), shift_.data(),
                     pad, dy, dx, flip);
    else
      AssembleSample(set_.f32.data() + s * per, dst, channels, h, w, scale_.data(), shift_.data(),
                     pad, dy, dx, flip);
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
