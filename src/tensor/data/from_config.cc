#include "tensor/data/from_config.h"

#include "tensor/data/cifar.h"
#include "tensor/data/csv.h"
#include "tensor/data/idx.h"
#include "tensor/data/npy.h"

namespace dnnd::data {
namespace {

// One split ("train" or "test") in `format`; nullopt when its path is empty.
Result<std::optional<Dataset>> LoadSplit(const Config& cfg, const std::string& format,
                                         const std::string& split, const DecodeLimits& limits) {
  if (format == "cifar10") {
    // Explicit files win; otherwise the standard names in data.cifar_dir.
    std::vector<std::string> files = cfg.GetStrings("data." + split + "_files");
    const std::string dir = cfg.GetString("data.cifar_dir");
    if (files.empty() && !dir.empty())
      files = split == "train" ? Cifar10TrainFiles(dir) : Cifar10TestFiles(dir);
    if (files.empty()) return std::optional<Dataset>();
    DNND_ASSIGN_OR_RETURN(Dataset d, LoadCifar10Files(files, limits));
    return std::optional<Dataset>(std::move(d));
  }
  if (format == "idx" || format == "npy") {
    const std::string x = cfg.GetString("data." + split + "_images");
    const std::string y = cfg.GetString("data." + split + "_labels");
    if (x.empty()) return std::optional<Dataset>();
    if (y.empty())
      return InvalidArgument("data." + split + "_images is set but data." + split +
                             "_labels is empty");
    DNND_ASSIGN_OR_RETURN(
        Dataset d, format == "idx" ? LoadIdxDataset(x, y, limits) : LoadNpyDataset(x, y, limits));
    return std::optional<Dataset>(std::move(d));
  }
  const std::string file = cfg.GetString("data." + split + "_file");
  if (file.empty()) return std::optional<Dataset>();
  Result<Dataset> d =
      format == "npz"
          ? LoadNpzDataset(file, cfg.GetString("data.x_key"), cfg.GetString("data.y_key"), limits)
          : LoadCsvDataset(file,
                           {.label_column = static_cast<int>(cfg.GetInt("data.csv_label_column")),
                            .header = cfg.GetBool("data.csv_header")},
                           limits);
  if (!d) return d.status();
  return std::optional<Dataset>(std::move(d).value());
}

}  // namespace

DecodeLimits LimitsFromConfig(const Config& cfg) {
  DecodeLimits l;
  l.max_bytes = static_cast<uint64_t>(cfg.GetInt("data.max_decoded_bytes"));
  l.max_members = cfg.GetInt("data.max_npz_members");
  return l;
}

Result<Dataset> LoadTrainingSet(const Config& cfg) {
  return LoadTrainingSet(cfg, LimitsFromConfig(cfg));
}

Result<std::optional<Dataset>> LoadTestSet(const Config& cfg) {
  return LoadTestSet(cfg, LimitsFromConfig(cfg));
}

Result<Dataset> LoadTrainingSet(const Config& cfg, const DecodeLimits& limits) {
  if (cfg.GetString("data.builtin") == "xor") return MakeXorDataset();
  const std::string format = cfg.GetString("data.format");
  DNND_ASSIGN_OR_RETURN(std::optional<Dataset> train, LoadSplit(cfg, format, "train", limits));
  if (!train) {
    const bool files = format == "idx" || format == "npy";
    return InvalidArgument("data.format = \"" + format + "\" needs " +
                           (format == "cifar10" ? "data.cifar_dir or data.train_files"
                            : files             ? "data.train_images and data.train_labels"
                                                : "data.train_file"));
  }
  return train->Take(cfg.GetInt("data.limit_train"));
}

Result<std::optional<Dataset>> LoadTestSet(const Config& cfg, const DecodeLimits& limits) {
  // The XOR table is its own test set (DockerNN evaluates on what it trains on).
  if (cfg.GetString("data.builtin") == "xor") return std::optional<Dataset>(MakeXorDataset());
  std::string format = cfg.GetString("data.test_format");
  if (format == "same") format = cfg.GetString("data.format");
  DNND_ASSIGN_OR_RETURN(std::optional<Dataset> test, LoadSplit(cfg, format, "test", limits));
  if (test) *test = test->Take(cfg.GetInt("data.limit_test"));
  return test;
}

}  // namespace dnnd::data
