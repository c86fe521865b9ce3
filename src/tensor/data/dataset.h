// In-memory datasets and batching.
//
// Samples stay in their source dtype (Fashion-MNIST's uint8 images take 47 MB,
// not 188 MB as float32) and are converted and normalised per batch into a
// pooled tensor. Labels are int32 class indices; regression targets (the XOR
// table) are float rows.
//
//   Dataset train = ValueOrThrow(LoadIdxDataset(images_path, labels_path));
//   DataLoader loader(train, {.batch_size = 128, .shuffle = true, .seed = 42});
//   for (int64_t b = 0; b < loader.num_batches(); ++b) {
//     Batch batch = loader.GetBatch(epoch, b);   // same batches for the same (seed, epoch)
//   }
//
// Training batches may be augmented (random crop after zero padding,
// horizontal flip) as they are assembled, from the stored samples.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/nn.h"
#include "tensor/tensor.h"

namespace dnnd::data {

enum class SampleType { kUint8, kFloat32 };

struct Dataset {
  Shape sample_shape;  // per sample, e.g. [1, 28, 28]
  SampleType type = SampleType::kUint8;
  std::vector<uint8_t> u8;      // size() * sample numel, when type == kUint8
  std::vector<float> f32;       // size() * sample numel, when type == kFloat32
  std::vector<int32_t> labels;  // classification: one class index per sample
  std::vector<float> targets;   // regression: target_width floats per sample
  int64_t target_width = 0;
  int32_t num_classes = 0;

  int64_t size() const;
  int64_t sample_numel() const { return ShapeNumel(sample_shape); }
  // Samples per class (classification only).
  std::vector<int64_t> ClassHistogram() const;
  // The first n samples (all if n <= 0 or n >= size()).
  Dataset Take(int64_t n) const;
  // Part `index` of `count` equal contiguous parts (the last size % count
  // samples are left out, so every data-parallel worker takes the same
  // number of steps per epoch).
  Dataset Part(int64_t index, int64_t count) const;
  // Samples [first, first + n).
  Dataset Slice(int64_t first, int64_t n) const;
  // The samples at `indices`, in that order (each must be in [0, size())).
  Dataset Select(const std::vector<int64_t>& indices) const;
  // No samples, but this set's shape, type, classes and target width.
  Dataset EmptyLike() const;
};

// DockerNN's XOR table: the 8 rows of 3 bits, target = parity, shape [8, 1].
Dataset MakeXorDataset();

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;
  uint64_t seed = 42;
  // x' = (x - mean[c]) / std[c] for channel c, after uint8 -> [0, 1]. One
  // value applies to every channel; otherwise one per channel (SampleChannels).
  std::vector<float> mean = {0.0f};
  std::vector<float> std = {1.0f};
  bool drop_last = false;
  // Training augmentation of image samples ([c, h, w] or [h, w]), applied as
  // each batch is assembled: pad by crop_padding zero pixels (0 before
  // normalisation) per side and crop back at a random offset, then, with
  // `flip`, mirror left-right with probability 1/2. The draws come from
  // (seed, epoch, batch index, position in the batch) alone.
  int64_t crop_padding = 0;
  bool flip = false;
};

// The channels normalisation counts for samples of `shape`: the first
// dimension of a sample of rank >= 3 ([3, 32, 32] -> 3), otherwise 1.
int64_t SampleChannels(const Shape& shape);

// InvalidArgument unless `options` fit samples of `shape`: mean and std hold
// one value or one per channel, every std > 0, and augmentation is only asked
// of image samples (rank 2 or 3) no smaller than the padding. `what` names
// the settings in errors ("data.normalize_mean").
Status CheckLoaderOptions(const Shape& shape, const LoaderOptions& options,
                          const std::string& mean_setting = "data.normalize_mean",
                          const std::string& std_setting = "data.normalize_std");

struct Batch {
  Tensor x;  // [size, ...sample_shape]
  nn::Target target;
  int64_t size = 0;
};

class DataLoader {
 public:
  // std::invalid_argument when CheckLoaderOptions refuses `options`: callers
  // check them first.
  DataLoader(const Dataset& set, LoaderOptions options);
  int64_t num_batches() const;
  // Batch `index` of `epoch`. The order within an epoch is a permutation drawn
  // from (seed, epoch) alone, so a run resumed at any step sees exactly the
  // batches an uninterrupted run would have.
  Batch GetBatch(int64_t epoch, int64_t index);

 private:
  void PrepareEpoch(int64_t epoch);

  const Dataset& set_;
  LoaderOptions options_;
  std::vector<float> scale_, shift_;  // per channel: x' = x * scale + shift
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
};

}  // namespace dnnd::data
