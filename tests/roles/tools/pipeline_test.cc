// Split -> train -> aggregate with real dnnd processes and real files: the
// splitter's shards and manifest (read back by dnnd and by numpy), its
// refusal to overwrite, the aggregator's weighted average and its errors,
// and the whole pipeline on Fashion-MNIST against centralized training.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <functional>
#include <regex>

#include "core/sha256.h"
#include "tensor/data/idx.h"
#include "tensor/data/npy.h"
#include "tensor/safetensors.h"
#include "tests/roles/dnnd_process.h"

namespace dnnd {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using testing::Daemon;
using testing::Dnnd;
using testing::Outcome;
using testing::ReadFile;
using testing::Src;
using testing::TempDir;

json::value ParseJsonFile(const std::string& path) {
  boost::system::error_code ec;
  json::value v = json::parse(ReadFile(path), ec);
  EXPECT_FALSE(ec) << path << ": " << ec.message();
  return v;
}

std::vector<int64_t> Ints(const json::value& v) {
  std::vector<int64_t> out;
  for (const auto& e : v.as_array()) out.push_back(e.as_int64());
  return out;
}

double FinalAccuracy(const std::string& output) {
  std::smatch m;
  if (!std::regex_search(output, m, std::regex("final test accuracy ([0-9.]+)%"))) return -1;
  return std::stod(m[1]);
}

// The splitter on the first 3000 Fashion-MNIST training samples.
Outcome Split(const std::string& out, const std::string& extra = "") {
  return Dnnd("--role=splitter --config " + Src("configs/splitter.toml") +
              " --set data.limit_train=3000 --set splitter.output_dir=" + out + " " + extra);
}

TEST(Splitter, ShardsAndManifestDescribeEachOtherAndTheSource) {
  TempDir dir;
  const std::string out = dir.path() + "/shards";
  Outcome r = Split(out);
  ASSERT_EQ(r.code, 0) << r.output;
  const json::value m = ParseJsonFile(out + "/manifest.json");
  EXPECT_EQ(m.at("strategy").as_string(), "iid");
  EXPECT_EQ(m.at("seed").as_int64(), 42);
  const json::object& source = m.at("source").as_object();
  EXPECT_EQ(source.at("samples").as_int64(), 3000);
  const std::vector<int64_t> source_hist = Ints(source.at("label_histogram"));

  auto fm = data::LoadIdxDataset("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
                                 "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz");
  ASSERT_TRUE(fm.ok()) << fm.status().ToString();
  const data::Dataset first = fm->Take(3000);
  EXPECT_EQ(source_hist, first.ClassHistogram());

  const json::array& shards = m.at("shards").as_array();
  ASSERT_EQ(shards.size(), 3u);
  std::vector<int64_t> hist_sum(10, 0);
  int64_t samples = 0;
  uint64_t pixel_sum = 0;
  for (const auto& s : shards) {
    const std::string file = out + "/" + std::string(s.at("file").as_string());
    // The manifest's digest is the file's.
    auto sha = Sha256FileHex(file);
    ASSERT_TRUE(sha.ok()) << sha.status().ToString();
    EXPECT_EQ(*sha, s.at("sha256").as_string()) << file;
    // dnnd reads the shard back as the worker will (data.format = "npz").
    auto shard = data::LoadNpzDataset(file);
    ASSERT_TRUE(shard.ok()) << shard.status().ToString();
    EXPECT_EQ(shard->sample_shape, (Shape{1, 28, 28}));
    EXPECT_EQ(shard->size(), s.at("samples").as_int64());
    EXPECT_NEAR(static_cast<double>(shard->size()), 1000.0, 1.0);
    std::vector<int64_t> h = Ints(s.at("label_histogram"));
    h.resize(10);
    std::vector<int64_t> actual = shard->ClassHistogram();
    actual.resize(10);
    EXPECT_EQ(actual, h) << file;
    for (int c = 0; c < 10; ++c) hist_sum[c] += h[c];
    samples += shard->size();
    for (uint8_t p : shard->u8) pixel_sum += p;
  }
  // Together the shards are the source: same count, classes and pixels.
  EXPECT_EQ(samples, 3000);
  EXPECT_EQ(hist_sum, source_hist);
  uint64_t source_pixels = 0;
  for (uint8_t p : first.u8) source_pixels += p;
  EXPECT_EQ(pixel_sum, source_pixels);
}

TEST(Splitter, NumpyOpensAShardAndAgreesWithTheManifest) {
  if (std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0)
    GTEST_SKIP() << "no numpy";
  TempDir dir;
  const std::string out = dir.path() + "/shards";
  Outcome r = Split(out);
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string script = dir.Write("check.py", R"(
import hashlib, json, sys
import numpy as np
out = sys.argv[1]
m = json.load(open(out + "/manifest.json"))
for s in m["shards"]:
    path = out + "/" + s["file"]
    z = np.load(path)
    x, y = z["x"], z["y"]
    assert x.dtype == np.uint8 and x.shape == (s["samples"], 28, 28), (x.dtype, x.shape)
    assert y.dtype == np.int32 and y.shape == (s["samples"],), (y.dtype, y.shape)
    assert np.bincount(y, minlength=10).tolist() == s["label_histogram"], path
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == s["sha256"], path
print("numpy ok", len(m["shards"]))
)");
  Outcome py = testing::Shell("/usr/bin/python3 " + script + " " + out);
  EXPECT_EQ(py.code, 0) << py.output;
  EXPECT_NE(py.output.find("numpy ok 3"), std::string::npos) << py.output;
}

std::vector<std::string> Digests(const std::string& out) {
  std::vector<std::string> d;
  const json::value manifest = ParseJsonFile(out + "/manifest.json");
  for (const auto& s : manifest.at("shards").as_array()) d.emplace_back(s.at("sha256").as_string());
  return d;
}

TEST(Splitter, TheSeedAloneDecidesTheShards) {
  TempDir dir;
  ASSERT_EQ(Split(dir.path() + "/a").code, 0);
  ASSERT_EQ(Split(dir.path() + "/b").code, 0);
  ASSERT_EQ(Split(dir.path() + "/c", "--set splitter.seed=43").code, 0);
  EXPECT_EQ(Digests(dir.path() + "/a"), Digests(dir.path() + "/b"));
  EXPECT_NE(Digests(dir.path() + "/a")[0], Digests(dir.path() + "/c")[0]);
}

TEST(Splitter, RefusesToOverwriteUnlessTold) {
  TempDir dir;
  const std::string out = dir.path() + "/shards";
  ASSERT_EQ(Split(out).code, 0);
  const auto before = Digests(out);
  Outcome again = Split(out, "--set splitter.seed=7");
  EXPECT_EQ(again.code, 1) << again.output;
  EXPECT_NE(again.output.find(out + "/manifest.json already exists"), std::string::npos)
      << again.output;
  EXPECT_NE(again.output.find("splitter.overwrite = true"), std::string::npos) << again.output;
  EXPECT_EQ(Digests(out), before) << "the refused run changed nothing";
  // Told to: two new shards replace three, and the third old one goes.
  Outcome forced =
      Split(out, "--set splitter.seed=7 --set splitter.shards=2 --set splitter.overwrite=true");
  ASSERT_EQ(forced.code, 0) << forced.output;
  EXPECT_EQ(Digests(out).size(), 2u);
  EXPECT_NE(Digests(out)[0], before[0]);
  EXPECT_FALSE(std::filesystem::exists(out + "/shard-002.npz"));
  for (const auto& e : std::filesystem::directory_iterator(out))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos)
        << "left a temp file: " << e.path();
}

TEST(Splitter, StratifiedIsBalancedAndDirichletIsSkewed) {
  TempDir dir;
  ASSERT_EQ(Split(dir.path() + "/s", "--set splitter.strategy=stratified").code, 0);
  const json::value strat_manifest = ParseJsonFile(dir.path() + "/s/manifest.json");
  const json::array& strat = strat_manifest.at("shards").as_array();
  for (int c = 0; c < 10; ++c) {
    int64_t lo = INT64_MAX, hi = 0;
    for (const auto& s : strat) {
      const int64_t n = Ints(s.at("label_histogram"))[c];
      lo = std::min(lo, n);
      hi = std::max(hi, n);
    }
    EXPECT_LE(hi - lo, 1) << "class " << c;
  }
  Outcome r =
      Split(dir.path() + "/d", "--set splitter.strategy=dirichlet --set splitter.alpha=0.1");
  ASSERT_EQ(r.code, 0) << r.output;
  const json::value d = ParseJsonFile(dir.path() + "/d/manifest.json");
  EXPECT_DOUBLE_EQ(d.at("alpha").as_double(), 0.1);
  // Each shard is dominated by a few classes: the largest holds far more
  // than the 10 % an iid shard would give it.
  double top_share = 0;
  for (const auto& s : d.at("shards").as_array()) {
    const std::vector<int64_t> h = Ints(s.at("label_histogram"));
    top_share += static_cast<double>(*std::max_element(h.begin(), h.end())) /
                 s.at("samples").as_int64() / 3.0;
  }
  EXPECT_GT(top_share, 0.3) << ReadFile(dir.path() + "/d/manifest.json");
}

TEST(Splitter, BadInputIsAClearError) {
  TempDir dir;
  Outcome alpha = Split(dir.path() + "/a", "--set splitter.alpha=0");
  EXPECT_EQ(alpha.code, 2) << alpha.output;
  EXPECT_NE(alpha.output.find("splitter.alpha"), std::string::npos) << alpha.output;
  Outcome strategy = Split(dir.path() + "/a", "--set splitter.strategy=random");
  EXPECT_EQ(strategy.code, 2);
  EXPECT_NE(strategy.output.find("splitter.strategy: 'random' is not allowed"), std::string::npos)
      << strategy.output;
  Outcome missing = Split(dir.path() + "/a", "--set data.train_images=" + dir.path() + "/nope.gz");
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.output.find(dir.path() + "/nope.gz"), std::string::npos) << missing.output;
  Outcome many = Split(dir.path() + "/a", "--set splitter.shards=5000");
  EXPECT_NE(many.code, 0);
  EXPECT_NE(many.output.find("3000 samples, fewer than the 5000 shards"), std::string::npos)
      << many.output;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/a/manifest.json"));
}

// --- aggregator ------------------------------------------------------------

// A briefly trained XOR model in `dir` (8 training samples).
void TrainXor(const std::string& dir, int seed) {
  Outcome r = Dnnd("--role=worker --config " + Src("configs/worker-xor.toml") +
                   " --set train.iterations=50" + " --set train.seed=" + std::to_string(seed) +
                   " --set train.checkpoint_dir=" + dir);
  ASSERT_EQ(r.code, 0) << r.output;
}

// Rewrites `dir`/model.safetensors through `edit`.
void EditCheckpoint(const std::string& from, const std::string& to,
                    const std::function<void(SafetensorsFile&)>& edit) {
  auto f = LoadSafetensors(from + "/model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  edit(*f);
  std::filesystem::create_directories(to);
  ASSERT_TRUE(SaveSafetensors(to + "/model.safetensors", f->tensors, f->metadata).ok());
}

Outcome Aggregate(const std::vector<std::string>& inputs, const std::string& out,
                  const std::string& extra = "") {
  std::string list;
  for (const auto& i : inputs) list += std::string(list.empty() ? "" : ",") + "\"" + i + "\"";
  return Dnnd("--role=aggregator --config " + Src("configs/aggregator.toml") +
              " --set 'aggregator.inputs=[" + list + "]' --set aggregator.output_dir=" + out +
              " --set data.builtin=xor --set data.normalize_mean=0 --set data.normalize_std=1 " +
              extra);
}

TEST(Aggregator, WritesTheSampleWeightedAverageAndAReport) {
  TempDir dir;
  const std::string a = dir.path() + "/a", b = dir.path() + "/b";
  TrainXor(a, 1);
  TrainXor(dir.path() + "/b8", 2);
  auto ca = LoadSafetensors(a + "/model.safetensors");
  ASSERT_TRUE(ca.ok());
  EXPECT_EQ(ca->metadata.at("dnnd.train_samples"), "8");
  // The same model as if trained on three times the data: weight 24.
  EditCheckpoint(dir.path() + "/b8", b,
                 [](SafetensorsFile& f) { f.metadata["dnnd.train_samples"] = "24"; });
  // One input as a directory, one as a file.
  Outcome r = Aggregate({a, b + "/model.safetensors"}, dir.path() + "/avg");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("aggregated 2 models (32 training samples): test accuracy"),
            std::string::npos)
      << r.output;
  auto avg = LoadSafetensors(dir.path() + "/avg/model.safetensors");
  auto cb = LoadSafetensors(b + "/model.safetensors");
  ASSERT_TRUE(avg.ok() && cb.ok()) << avg.status().ToString();
  EXPECT_EQ(avg->metadata.at("dnnd.train_samples"), "32");
  EXPECT_NE(avg->metadata.at("dnnd.model_spec").find("[[model.layers]]"), std::string::npos);
  // What prediction needs comes along from the inputs (tensor/prediction_meta.h).
  for (const char* key :
       {"dnnd.input_shape", "dnnd.channel_order", "dnnd.normalize_mean", "dnnd.normalize_std"}) {
    ASSERT_TRUE(ca->metadata.count(key)) << key;
    EXPECT_EQ(avg->metadata.at(key), ca->metadata.at(key)) << key;
  }
  ASSERT_EQ(avg->tensors.size(), ca->tensors.size());
  for (size_t t = 0; t < avg->tensors.size(); ++t) {
    const auto va = ca->tensors[t].second.ToVector(), vb = cb->tensors[t].second.ToVector(),
               v = avg->tensors[t].second.ToVector();
    ASSERT_EQ(avg->tensors[t].first, ca->tensors[t].first);
    for (size_t i = 0; i < v.size(); ++i)
      ASSERT_NEAR(v[i], 0.25 * va[i] + 0.75 * vb[i], 1e-6) << avg->tensors[t].first;
  }
  const json::value report = ParseJsonFile(dir.path() + "/avg/report.json");
  EXPECT_EQ(report.at("test_samples").as_int64(), 8);
  EXPECT_EQ(report.at("aggregated").at("models").as_int64(), 2);
  EXPECT_TRUE(report.at("aggregated").as_object().contains("test_accuracy"));
  const json::array& inputs = report.at("inputs").as_array();
  ASSERT_EQ(inputs.size(), 2u);
  EXPECT_DOUBLE_EQ(inputs[0].at("weight").to_number<double>(), 0.25);
  EXPECT_DOUBLE_EQ(inputs[1].at("weight").to_number<double>(), 0.75);
  EXPECT_TRUE(inputs[1].as_object().contains("test_accuracy"));
  EXPECT_TRUE(report.at("missing").as_array().empty());
  // The averaged checkpoint is an ordinary one: inference runs on it.
  ASSERT_TRUE(SaveSafetensors(dir.path() + "/x.safetensors", {{"x", Tensor::Zeros({2, 3})}}).ok());
  Outcome infer = Dnnd("infer --model " + dir.path() + "/avg --input " + dir.path() +
                       "/x.safetensors --output " + dir.path() + "/y.safetensors");
  EXPECT_EQ(infer.code, 0) << infer.output;
}

TEST(Aggregator, MismatchedModelsNameTheTensorAndBothShapes) {
  TempDir dir;
  const std::string a = dir.path() + "/a";
  TrainXor(a, 1);
  EditCheckpoint(a, dir.path() + "/narrow", [](SafetensorsFile& f) {
    for (auto& [name, t] : f.tensors)
      if (name == "2.weight") t = Tensor::Zeros({99, 50});
  });
  Outcome r = Aggregate({a, dir.path() + "/narrow"}, dir.path() + "/avg");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("tensor 2.weight has shape [100, 50] in " + a +
                          "/model.safetensors but [99, 50] in " + dir.path() +
                          "/narrow/model.safetensors"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/avg/model.safetensors"));
  // Same shapes, another activation: not one architecture.
  EditCheckpoint(a, dir.path() + "/tanh", [](SafetensorsFile& f) {
    std::string& spec = f.metadata["dnnd.model_spec"];
    spec.replace(spec.find("relu"), 4, "tanh");
  });
  Outcome arch = Aggregate({a, dir.path() + "/tanh"}, dir.path() + "/avg");
  EXPECT_NE(arch.code, 0);
  EXPECT_NE(arch.output.find("different architectures"), std::string::npos) << arch.output;
  EXPECT_NE(arch.output.find("layer 1: relu vs tanh"), std::string::npos) << arch.output;
  // A checkpoint without its sample count cannot be weighted.
  EditCheckpoint(a, dir.path() + "/unweighted",
                 [](SafetensorsFile& f) { f.metadata.erase("dnnd.train_samples"); });
  Outcome unweighted = Aggregate({a, dir.path() + "/unweighted"}, dir.path() + "/avg");
  EXPECT_NE(unweighted.code, 0);
  EXPECT_NE(unweighted.output.find(
                dir.path() + "/unweighted/model.safetensors: metadata has no dnnd.train_samples"),
            std::string::npos)
      << unweighted.output;
}

TEST(Aggregator, MissingInputIsAnErrorUnlessMinModelsAllowsIt) {
  TempDir dir;
  const std::string a = dir.path() + "/a", b = dir.path() + "/b", gone = dir.path() + "/gone";
  TrainXor(a, 1);
  TrainXor(b, 2);
  Outcome strict = Aggregate({a, b, gone}, dir.path() + "/avg");
  EXPECT_EQ(strict.code, 1) << strict.output;
  EXPECT_NE(
      strict.output.find("missing aggregator input(s): " + gone + " (2 of 3 present, 3 required"),
      std::string::npos)
      << strict.output;
  EXPECT_NE(strict.output.find("aggregator.min_models"), std::string::npos);
  Outcome partial = Aggregate({a, b, gone}, dir.path() + "/avg", "--set aggregator.min_models=2");
  ASSERT_EQ(partial.code, 0) << partial.output;
  const json::value report = ParseJsonFile(dir.path() + "/avg/report.json");
  EXPECT_EQ(report.at("aggregated").at("models").as_int64(), 2);
  ASSERT_EQ(report.at("missing").as_array().size(), 1u);
  EXPECT_EQ(report.at("missing").as_array()[0].as_string(), gone);
  Outcome too_many = Aggregate({a, gone}, dir.path() + "/avg", "--set aggregator.min_models=3");
  EXPECT_EQ(too_many.code, 2) << too_many.output;
  EXPECT_NE(too_many.output.find("aggregator.min_models is 3 but aggregator.inputs lists only 2"),
            std::string::npos)
      << too_many.output;
  Outcome none = Aggregate({}, dir.path() + "/avg");
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.output.find("aggregator.inputs is empty"), std::string::npos) << none.output;
}

// --- the pipeline --------------------------------------------------------------

// Fashion-MNIST cut into 3 iid shards, 3 worker processes (same seed, so the
// same initial weights) train 5 epochs each on their shard, the aggregator
// averages them and evaluates on the 10,000 test images; centralized training
// of the same model for the same epochs is the reference.
TEST(Pipeline, SplitTrainAggregateReaches85PercentOnFashionMnist) {
  TempDir dir;
  const std::string shards = dir.path() + "/shards";
  Outcome split = Dnnd("--role=splitter --config " + Src("configs/splitter.toml") +
                       " --set splitter.output_dir=" + shards);
  ASSERT_EQ(split.code, 0) << split.output;

  std::vector<std::unique_ptr<Daemon>> workers;
  std::vector<std::string> checkpoints;
  for (int i = 0; i < 3; ++i) {
    checkpoints.push_back(dir.path() + "/worker-" + std::to_string(i));
    workers.push_back(std::make_unique<Daemon>(
        "--role=worker --config " + Src("configs/worker-shard.toml") +
            " --set data.train_file=" + shards + "/shard-00" + std::to_string(i) +
            ".npz --set train.checkpoint_dir=" + checkpoints.back() +
            " --set node.threads=1 --set train.progress=none",
        dir.path() + "/worker-" + std::to_string(i) + ".log"));
  }
  for (auto& w : workers) ASSERT_EQ(w->Wait(), 0) << w->output();
  for (const auto& c : checkpoints) {
    auto f = LoadSafetensors(c + "/model.safetensors");
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->metadata.at("dnnd.train_samples"), "20000") << c;
  }

  std::string list;
  for (const auto& c : checkpoints) list += std::string(list.empty() ? "" : ",") + "\"" + c + "\"";
  Outcome agg = Dnnd("--role=aggregator --config " + Src("configs/aggregator.toml") +
                     " --set 'aggregator.inputs=[" + list +
                     "]' --set aggregator.output_dir=" + dir.path() + "/aggregated");
  ASSERT_EQ(agg.code, 0) << agg.output;
  const json::value report = ParseJsonFile(dir.path() + "/aggregated/report.json");
  EXPECT_EQ(report.at("test_samples").as_int64(), 10000);
  const double aggregated = 100 * report.at("aggregated").at("test_accuracy").to_number<double>();
  const double worker0 =
      100 * report.at("inputs").as_array()[0].at("test_accuracy").to_number<double>();
  // The worker's own evaluation (IDX test set through data.test_format) agrees.
  EXPECT_NEAR(FinalAccuracy(workers[0]->output()), worker0, 0.006) << workers[0]->output();

  Outcome central = Dnnd("--role=worker --config " + Src("configs/worker-mlp.toml") +
                         " --set train.checkpoint_dir=" + dir.path() +
                         "/central --set train.progress=none --set train.epochs=5");
  ASSERT_EQ(central.code, 0) << central.output;
  const double centralized = FinalAccuracy(central.output);
  std::fprintf(stderr,
               "Fashion-MNIST MLP, 5 epochs: aggregated 3 iid shards %.2f%%, worker 0 alone (1/3 "
               "of the data) %.2f%%, "
               "centralized %.2f%%\n",
               aggregated, worker0, centralized);
  EXPECT_GE(aggregated, 85.0) << agg.output;
}

}  // namespace
}  // namespace dnnd
