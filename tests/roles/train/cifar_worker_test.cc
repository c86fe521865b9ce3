// A worker training on CIFAR-10 files (written here in the binary format)
// with per-channel normalisation and augmentation, against the real dnnd
// binary: two runs with the same seed end with bit-identical weights, another
// seed does not, and a per-channel setting of the wrong length stops the
// worker before training, naming the setting.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "tensor/safetensors.h"
#include "tests/roles/dnnd_process.h"

namespace dnnd {
namespace {

using namespace dnnd::testing;

// `n` records: label i % 10, a colour per class plus a moving bright square.
void WriteCifar(const std::string& path, int n, int first) {
  std::string bytes;
  for (int i = first; i < first + n; ++i) {
    const int label = i % 10;
    bytes.push_back(static_cast<char>(label));
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) {
          const bool square =
              y >= (i % 20) && y < (i % 20) + 8 && x >= label * 2 && x < label * 2 + 8;
          bytes.push_back(static_cast<char>(square ? 250 : (label * 25 + c * 40 + x) % 256));
        }
  }
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string Config(const std::string& dir, const std::string& run, uint64_t seed,
                   const std::string& mean) {
  return "[node]\nrole = \"worker\"\nthreads = 1\n"
         "[data]\nformat = \"cifar10\"\n"
         "train_files = [\"" +
         dir + "/a.bin\", \"" + dir +
         "/b.bin\"]\n"
         "test_files = [\"" +
         dir +
         "/t.bin\"]\n"
         "normalize_mean = " +
         mean +
         "\nnormalize_std = [0.247, 0.243, 0.261]\n"
         "augment_crop_padding = 4\naugment_flip = true\n"
         "[train]\nepochs = 2\nbatch_size = 16\nseed = " +
         std::to_string(seed) + "\nprogress = \"none\"\nresume = false\ncheckpoint_dir = \"" + dir +
         "/" + run +
         "\"\n"
         "[model]\ninput = [3, 32, 32]\nloss = \"cross_entropy\"\n"
         "[[model.layers]]\ntype = \"conv2d\"\nout = 4\nkernel = 3\npadding = 1\n"
         "[[model.layers]]\ntype = \"relu\"\n"
         "[[model.layers]]\ntype = \"maxpool2d\"\nkernel = 4\n"
         "[[model.layers]]\ntype = \"flatten\"\n"
         "[[model.layers]]\ntype = \"linear\"\nout = 10\n"
         "[model.optimizer]\ntype = \"sgd\"\nlr = 0.05\n";
}

std::vector<std::vector<float>> Weights(const std::string& model) {
  auto f = LoadSafetensors(model);
  EXPECT_TRUE(f.ok()) << model << ": " << f.status().ToString();
  std::vector<std::vector<float>> out;
  if (f.ok())
    for (auto& [name, t] : f->tensors) out.push_back(t.ToVector());
  return out;
}

TEST(CifarWorker, AugmentedRunsWithOneSeedAreBitIdentical) {
  TempDir dir;
  WriteCifar(dir.path() + "/a.bin", 48, 0);
  WriteCifar(dir.path() + "/b.bin", 48, 48);
  WriteCifar(dir.path() + "/t.bin", 20, 96);
  const std::string mean = "[0.4914, 0.4822, 0.4465]";
  for (const auto& [run, seed] :
       std::vector<std::pair<std::string, uint64_t>>{{"one", 7}, {"two", 7}, {"other", 8}}) {
    const std::string cfg = dir.Write(run + ".toml", Config(dir.path(), run, seed, mean));
    Outcome o = Dnnd("--config " + cfg);
    ASSERT_EQ(o.code, 0) << o.output;
  }
  const auto one = Weights(dir.path() + "/one/model.safetensors");
  ASSERT_FALSE(one.empty());
  EXPECT_EQ(one, Weights(dir.path() + "/two/model.safetensors"));
  EXPECT_NE(one, Weights(dir.path() + "/other/model.safetensors"));
}

TEST(CifarWorker, AChannelCountMismatchStopsTheWorkerNamingTheSetting) {
  TempDir dir;
  WriteCifar(dir.path() + "/a.bin", 16, 0);
  WriteCifar(dir.path() + "/b.bin", 16, 16);
  WriteCifar(dir.path() + "/t.bin", 4, 32);
  const std::string cfg = dir.Write("bad.toml", Config(dir.path(), "bad", 1, "[0.5, 0.5]"));
  Outcome o = Dnnd("--config " + cfg);
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("data.normalize_mean has 2 values"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("3 channels"), std::string::npos) << o.output;
}

// The same data and model as a data-parallel sync job in one process: 2
// parameter servers, 2 workers each augmenting its half of the data.
std::string DataParallel(const std::string& dir, const std::string& run) {
  std::string worker = Config(dir, run, 7, "[0.4914, 0.4822, 0.4465]");
  worker = worker.substr(worker.find("[data]"));
  return "[node]\nrole = \"standalone\"\nthreads = 2\n"
         "[standalone]\ncontroller = false\nservers = 2\nworkers = 2\n"
         "[ps]\nmode = \"sync\"\nresume = false\ncheckpoint_dir = \"" +
         dir + "/" + run +
         "-ps\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
         "[transport]\ntoken = \"cifar\"\n" +
         worker;
}

TEST(CifarWorker, AugmentedDataParallelSyncRunsAreBitIdentical) {
  TempDir dir;
  WriteCifar(dir.path() + "/a.bin", 48, 0);
  WriteCifar(dir.path() + "/b.bin", 48, 48);
  WriteCifar(dir.path() + "/t.bin", 20, 96);
  for (const std::string run : {"p1", "p2"}) {
    const std::string cfg = dir.Write(run + ".toml", DataParallel(dir.path(), run));
    Outcome o = Dnnd("--config " + cfg);
    ASSERT_EQ(o.code, 0) << o.output;
  }
  const auto one = Weights(dir.path() + "/p1/model.safetensors");
  ASSERT_FALSE(one.empty());
  EXPECT_EQ(one, Weights(dir.path() + "/p2/model.safetensors"));
}

}  // namespace
}  // namespace dnnd
