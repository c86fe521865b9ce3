// A stop that cuts short the checkpoint due at an epoch's end: the epoch,
// whose steps all ran (and which the servers applied), is reported first.
// Otherwise the resumed run, starting after it, never reports it (seen as a
// rare "epochs missing" in Standalone.EpochsEndedJustBeforeSigintAreRecorded
// under load).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <vector>

#include "roles/train/trainer.h"
#include "tensor/model_spec.h"

namespace dnnd {
namespace {

// Stands in for the parameter servers at the one point that matters here:
// their checkpoint call fails because the stop cut it (as rpc::CancelScope
// does once a stopping node's grace runs out). Steps are applied locally.
class ServersCutByTheStop : public StepExchange {
 public:
  explicit ServersCutByTheStop(std::atomic<bool>& stop) : stop_(stop) {}
  Result<int64_t> Begin(nn::Graph&, const ModelSpec&, uint64_t) override { return int64_t{0}; }
  Status Step(nn::Graph&, optim::Optimizer& local, int64_t, float) override {
    local.Step();
    local.ZeroGrad();
    return Status::Ok();
  }
  Status BeforeCheckpoint(nn::Graph&, CheckpointFiles&) override {
    stop_ = true;
    return Status(StatusCode::kCancelled, "the servers' checkpoint call was cut by the stop");
  }
  void End() override {}

 private:
  std::atomic<bool>& stop_;
};

TEST(TrainerStop, AnEpochIsReportedBeforeTheCheckpointDueAtItsEndIsTaken) {
  auto spec = ParseModelSpecText(R"([model]
input = [4]
loss = "cross_entropy"
[[model.layers]]
type = "linear"
out = 2
)",
                                 "test");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  data::Dataset train;
  train.sample_shape = {4};
  train.type = data::SampleType::kFloat32;
  train.num_classes = 2;
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 4; ++j) train.f32.push_back(static_cast<float>((i + j) % 3));
    train.labels.push_back(i % 2);
  }
  const std::string dir = ::testing::TempDir() + "trainer_stop_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);

  std::atomic<bool> stop{false};
  TrainOptions o;
  o.epochs = 3;
  o.batch_size = 8;  // 2 steps per epoch
  o.checkpoint_every_steps = 2;
  o.checkpoint_dir = dir;
  o.report = false;
  o.resume = false;
  o.exchange = std::make_shared<ServersCutByTheStop>(stop);
  std::vector<int64_t> reported;
  o.hooks.on_epoch = [&](const EpochRecord& e, int64_t, int64_t) { reported.push_back(e.epoch); };
  auto trainer = Trainer::Create(*spec, o);
  ASSERT_TRUE(trainer.ok()) << trainer.status().ToString();
  const Status s = (*trainer)->Run(train, nullptr, stop);
  EXPECT_EQ(s.code(), StatusCode::kCancelled) << s.ToString();
  EXPECT_EQ(reported, std::vector<int64_t>{1}) << "epoch 1 ran all its steps";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dnnd
