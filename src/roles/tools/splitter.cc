#include "roles/tools/splitter.h"

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "core/files.h"
#include "core/json_text.h"
#include "core/log.h"
#include "core/sha256.h"
#include "tensor/data/from_config.h"
#include "tensor/data/npy.h"
#include "tensor/data/split.h"

namespace dnnd {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr const char* kManifest = "manifest.json";

std::string ShardName(int64_t index, int64_t count) {
  const int width = std::max<int>(3, static_cast<int>(std::to_string(count - 1).size()));
  char name[64];
  std::snprintf(name, sizeof name, "shard-%0*lld.npz", width, static_cast<long long>(index));
  return name;
}

bool IsShardName(const std::string& name) {
  static const std::regex re("shard-[0-9]+\\.npz");
  return std::regex_match(name, re);
}

// The manifest and shard files already in `dir`.
std::vector<fs::path> ExistingOutputs(const fs::path& dir) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == kManifest || IsShardName(name)) found.push_back(e.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

json::array ToJson(const std::vector<int64_t>& v) {
  json::array a;
  for (int64_t x : v) a.push_back(x);
  return a;
}

// x as numpy users expect it: single-channel images [n, h, w] (dnnd reads
// them back as [n, 1, h, w]), anything else [n, ...sample_shape].
std::map<std::string, data::NdArray> ShardArrays(const data::Dataset& d) {
  Shape shape = d.sample_shape;
  if (shape.size() == 3 && shape[0] == 1) shape.erase(shape.begin());
  shape.insert(shape.begin(), d.size());
  data::NdArray x = d.type == data::SampleType::kUint8 ? data::FromUint8(d.u8, shape)
                                                       : data::FromFloat(d.f32, shape);
  return {{"x", std::move(x)}, {"y", data::FromLabels(d.labels)}};
}

// Where the training set came from, for the manifest.
json::object SourceJson(const Config& cfg, const data::Dataset& set) {
  json::object src;
  const std::string format = cfg.GetString("data.format");
  src["format"] = format;
  if (format == "idx" || format == "npy")
    src["files"] = json::array{json::value(cfg.GetString("data.train_images")),
                               json::value(cfg.GetString("data.train_labels"))};
  else
    src["files"] = json::array{json::value(cfg.GetString("data.train_file"))};
  src["samples"] = set.size();
  src["sample_shape"] = ToJson(set.sample_shape);
  src["dtype"] = set.type == data::SampleType::kUint8 ? "uint8" : "float32";
  src["num_classes"] = set.num_classes;
  src["label_histogram"] = ToJson(set.ClassHistogram());
  return src;
}

class SplitterRole : public Role {
 public:
  SplitterRole(Config cfg, data::SplitOptions options, std::string output_dir, bool overwrite)
      : cfg_(std::move(cfg)),
        options_(options),
        dir_(std::move(output_dir)),
        overwrite_(overwrite) {}

  Status Run() override {
    DNND_RETURN_IF_ERROR(ClaimOutputDir());
    DNND_ASSIGN_OR_RETURN(data::Dataset set, data::LoadTrainingSet(cfg_));
    if (set.labels.empty() || static_cast<int64_t>(set.labels.size()) != set.size())
      return InvalidArgument(
          "the splitter writes labelled shards; the [data] training set has no class labels");
    DNND_ASSIGN_OR_RETURN(auto shards, data::SplitIndices(set, options_));

    json::array entries;
    std::string sizes;
    for (size_t k = 0; k < shards.size(); ++k) {
      if (stop_.load())
        return Cancelled("stopped after " + std::to_string(k) + " shards (no manifest written)");
      const std::string name = ShardName(static_cast<int64_t>(k), options_.shards);
      const std::string path = (fs::path(dir_) / name).string();
      const data::Dataset shard = set.Select(shards[k]);
      DNND_RETURN_IF_ERROR(data::WriteNpzFile(path, ShardArrays(shard)));
      // The digest of the bytes on disk: what `sha256sum shard-000.npz` prints.
      DNND_ASSIGN_OR_RETURN(std::string sha, Sha256FileHex(path));
      entries.push_back(json::object{{"index", static_cast<int64_t>(k)},
                                     {"file", name},
                                     {"samples", shard.size()},
                                     {"label_histogram", ToJson(shard.ClassHistogram())},
                                     {"bytes", static_cast<int64_t>(fs::file_size(path))},
                                     {"sha256", sha}});
      sizes += (sizes.empty() ? "" : ", ") + std::to_string(shard.size());
      Log(LogLevel::kInfo, "splitter", "shard written",
          {{"file", path}, {"samples", shard.size()}, {"sha256", sha}});
    }
    json::object manifest{{"format", "dnnd-shards"},
                          {"version", 1},
                          {"strategy", data::SplitStrategyName(options_.strategy)},
                          {"seed", static_cast<int64_t>(options_.seed)}};
    if (options_.strategy == data::SplitStrategy::kDirichlet) manifest["alpha"] = options_.alpha;
    manifest["arrays"] =
        json::object{{"x", "samples, the source's dtype; [n, h, w] for single-channel images"},
                     {"y", "int32 class labels [n]"}};
    manifest["source"] = SourceJson(cfg_, set);
    manifest["shards"] = std::move(entries);
    DNND_RETURN_IF_ERROR(
        WriteFileAtomic((fs::path(dir_) / kManifest).string(), PrettyJson(manifest)));
    RemoveLeftovers();
    std::fprintf(
        stderr, "wrote %lld %s shards of %lld samples to %s (%s samples), manifest %s/%s\n",
        static_cast<long long>(options_.shards), data::SplitStrategyName(options_.strategy),
        static_cast<long long>(set.size()), dir_.c_str(), sizes.c_str(), dir_.c_str(), kManifest);
    return Status::Ok();
  }

  void Stop() override { stop_.store(true); }

 private:
  // Refuses a directory holding an earlier split unless overwriting; then
  // removes its manifest first, so a crash mid-way leaves no manifest that
  // describes shards half replaced.
  Status ClaimOutputDir() {
    const std::vector<fs::path> existing = ExistingOutputs(dir_);
    if (!existing.empty() && !overwrite_)
      return AlreadyExists(
          existing.front().string() + " already exists (" + std::to_string(existing.size()) +
          " shard/manifest files in " + dir_ +
          "); refusing to overwrite them: set splitter.overwrite = true or choose another "
          "splitter.output_dir");
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) return IoError(dir_ + ": cannot create directory: " + ec.message());
    fs::remove(fs::path(dir_) / kManifest, ec);
    if (ec) return IoError(dir_ + "/" + kManifest + ": cannot remove: " + ec.message());
    return Status::Ok();
  }

  // Shards of an earlier split with more shards than this one.
  void RemoveLeftovers() {
    for (const fs::path& p : ExistingOutputs(dir_)) {
      const std::string name = p.filename().string();
      if (name == kManifest) continue;
      const int64_t index = std::stoll(name.substr(6));
      if (index >= options_.shards || name != ShardName(index, options_.shards)) {
        std::error_code ec;
        fs::remove(p, ec);
        Log(LogLevel::kInfo, "splitter", "removed a shard of an earlier split",
            {{"file", p.string()}});
      }
    }
  }

  Config cfg_;
  data::SplitOptions options_;
  std::string dir_;
  bool overwrite_;
  std::atomic<bool> stop_{false};
};

}  // namespace

Result<std::unique_ptr<Role>> MakeSplitterRole(const Config& cfg) {
  data::SplitOptions o;
  o.shards = cfg.GetInt("splitter.shards");
  DNND_ASSIGN_OR_RETURN(o.strategy, data::ParseSplitStrategy(cfg.GetString("splitter.strategy")));
  o.seed = static_cast<uint64_t>(cfg.GetInt("splitter.seed"));
  o.alpha = cfg.GetFloat("splitter.alpha");
  o.min_shard_samples = cfg.GetInt("splitter.min_shard_samples");
  const std::string dir = cfg.GetString("splitter.output_dir");
  if (dir.empty())
    return InvalidArgument("splitter.output_dir is empty (" + cfg.Origin("splitter.output_dir") +
                           ")");
  if (cfg.GetString("data.builtin") != "none")
    return InvalidArgument(
        "the splitter cuts a dataset read from files; data.builtin must be \"none\"");
  return std::unique_ptr<Role>(new SplitterRole(cfg, o, dir, cfg.GetBool("splitter.overwrite")));
}

}  // namespace dnnd
