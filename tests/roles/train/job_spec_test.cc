// The typed job spec: the store's JSON form (old rows included), validation
// naming the field, and what a worker trains from it.
#include "roles/train/job_spec.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "roles/pool/protocol.h"
#include "roles/train/trainer.h"
#include "tensor/model_spec.h"

namespace dnnd {
namespace {

namespace json = boost::json;

TEST(JobSpec, DecodesARowStoredBeforeTheSpecExisted) {
  // A row as CreateJob wrote it before lr_schedule and eval_every existed.
  const json::value row =
      json::parse(R"({"epochs":3,"batch":32,"workers":2,"servers":1,"kavg_steps":8,"seed":7,)"
                  R"("limit_train":600,"limit_test":100,"mode":"sync","optimizer":"sgd","lr":0.05,)"
                  R"("normalize_mean":0.25,"normalize_std":0.5})");
  auto spec = JobSpec::FromJson(row.as_object(), JobSpec::Stored());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->epochs, 3);
  EXPECT_EQ(spec->batch, 32);
  EXPECT_EQ(spec->lr_schedule, "constant");  // the old default
  EXPECT_EQ(spec->eval_every, 1);
  EXPECT_TRUE(spec->normalized);
  TrainOptions o;
  spec->ApplyTo(o);
  EXPECT_EQ(o.epochs, 3);
  EXPECT_EQ(o.batch_size, 32);
  EXPECT_EQ(o.seed, 7u);
  EXPECT_EQ(o.lr_schedule, "constant");
  ASSERT_EQ(o.normalize_mean.size(), 1u);
  ASSERT_EQ(o.normalize_std.size(), 1u);
  EXPECT_FLOAT_EQ(o.normalize_mean[0], 0.25f);
  EXPECT_FLOAT_EQ(o.normalize_std[0], 0.5f);
  EXPECT_EQ(o.stop_epoch, 0);
  ModelSpec model;
  spec->ApplyTo(model);
  EXPECT_EQ(model.optimizer.type, "sgd");
  EXPECT_FLOAT_EQ(model.optimizer.lr, 0.05f);
}

TEST(JobSpec, RoundTripsThroughTheStoresJson) {
  JobSpec s;
  s.epochs = 4;
  s.elastic = true;
  s.min_workers = 1;
  s.workers = 2;
  s.max_workers = 3;
  s.goal_accuracy = 0.8;
  s.normalized = true;
  s.normalize_mean = 0.1;
  s.normalize_std = 0.3;
  for (const char* key :
       {"augment_flip", "momentum", "weight_decay", "freeze", "gradient_codec", "weights_codec"})
    EXPECT_FALSE(s.ToJson().contains(key)) << key;  // off: rows stay as they were
  s.augment_crop_padding = 4;
  s.augment_flip = true;
  s.optimizer = "sgd";
  s.momentum = 0.9;
  s.weight_decay = 0;  // given, even as 0: it overrides the model's
  s.freeze = {"stem.*", "fc.weight"};
  s.gradient_codec = "bf16";
  s.weights_codec = "bf16";
  auto back = JobSpec::FromJson(s.ToJson(), JobSpec::Stored());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(json::serialize(back->ToJson()), json::serialize(s.ToJson()));
  EXPECT_EQ(back->max_workers, 3);
  EXPECT_DOUBLE_EQ(back->goal_accuracy, 0.8);
  EXPECT_EQ(back->augment_crop_padding, 4);
  EXPECT_TRUE(back->augment_flip);
  EXPECT_EQ(back->gradient_codec, "bf16");
  EXPECT_EQ(back->weights_codec, "bf16");
  TrainOptions o;
  back->ApplyTo(o);
  EXPECT_EQ(o.augment_crop_padding, 4);
  EXPECT_TRUE(o.augment_flip);
  EXPECT_EQ(o.freeze, s.freeze);
  ModelSpec model;
  model.optimizer.weight_decay = 0.5f;
  back->ApplyTo(model);
  EXPECT_FLOAT_EQ(model.optimizer.momentum, 0.9f);
  EXPECT_EQ(model.optimizer.weight_decay, 0.0f);
  JobSpec bad;
  bad.augment_crop_padding = -1;
  EXPECT_NE(bad.Validate().message().find("augment_crop_padding"), std::string::npos);
}

TEST(JobSpec, ValidateNamesTheBadField) {
  auto bad = [](auto change) {
    JobSpec s;
    change(s);
    return s.Validate().message();
  };
  EXPECT_EQ(bad([](JobSpec& s) { s.epochs = 0; }), "field 'epochs' is 0; expected 1..100000");
  EXPECT_NE(bad([](JobSpec& s) { s.mode = "fast"; }).find("field 'mode' is 'fast'"),
            std::string::npos);
  EXPECT_NE(bad([](JobSpec& s) { s.lr = 0; }).find("field 'lr'"), std::string::npos);
  EXPECT_NE(bad([](JobSpec& s) { s.stop_epoch = 9; }).find("stop_epoch"), std::string::npos);
  EXPECT_NE(
      bad([](JobSpec& s) { s.gradient_codec = "gzip"; }).find("field 'gradient_codec' is 'gzip'"),
      std::string::npos);
  EXPECT_EQ(bad([](JobSpec& s) {
              s.mode = "async";
              s.weights_codec = "bf16";
            }),
            "field 'weights_codec' \"bf16\" needs mode \"sync\" (the job's is \"async\"): only a "
            "sync step's weights are the same for every worker");
  EXPECT_TRUE(JobSpec().Validate().ok());
  // Decoding validates too, and says where the object came from.
  auto decoded =
      JobSpec::FromJson(json::parse(R"({"batch":0})").as_object(), JobSpec::Stored(), "task: spec");
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("task: spec"), std::string::npos);
  EXPECT_NE(decoded.status().message().find("'batch'"), std::string::npos);
}

TEST(JobSpec, ThePoolCarriesItTypedWithItsSegment) {
  pool::NodeOrder order;
  order.kind = pool::NodeOrder::Kind::kRun;
  pool::Task t;
  t.job = 3;
  t.attempt = "a1";
  t.index = 1;
  t.count = 2;
  t.dataset = "fm";
  t.spec.epochs = 5;
  t.spec.start_epoch = 2;
  t.spec.start_step = 40;
  t.spec.stop_epoch = 3;
  t.model = "[model]\n";
  t.ps_ports = {7101};
  order.task = t;
  auto back = pool::NodeOrderFromJson(pool::ToJson(order));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_TRUE(back->task);
  EXPECT_EQ(back->task->spec.epochs, 5);
  EXPECT_EQ(back->task->spec.start_epoch, 2);
  EXPECT_EQ(back->task->spec.start_step, 40);
  EXPECT_EQ(back->task->spec.stop_epoch, 3);
  EXPECT_EQ(back->task->model, "[model]\n");
  // A segment past the job's epochs is refused, naming it.
  json::value v = pool::ToJson(order);
  v.at("task").at("segment").at("stop_epoch") = 9;
  auto refused = pool::NodeOrderFromJson(v);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("segment"), std::string::npos);
}

}  // namespace
}  // namespace dnnd
