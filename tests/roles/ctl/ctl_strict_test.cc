// `dnnd ctl` at its edges, the real binary against a real controller: an
// unknown flag, verb or argument is a usage error (exit 2) naming it with a
// did-you-mean, never silently ignored; --controller takes a URL; every verb
// answers with a table; settings print in their shortest form; an
// unreachable controller is said in words, not Boost's internals.
#include <gtest/gtest.h>

#include "tests/roles/controller_process.h"

namespace dnnd::testing {
namespace {

// One controller with the real Fashion-MNIST ("fm") and the MLP ("mlp").
class CtlStrict : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz")) return;
    dir_ = new TempDir;
    c_ = new ControllerProcess(*dir_);
    ASSERT_GT(c_->port(), 0) << c_->daemon().output();
    RegisterFashionMnistAndMlp(*c_);
    ready_ = true;
  }
  static void TearDownTestSuite() {
    delete c_;
    delete dir_;
  }
  void SetUp() override {
    if (!ready_) GTEST_SKIP() << "dataset-fashion-mnist missing or the controller did not start";
  }
  static Outcome Ctl(const std::string& args) {
    return Dnnd("ctl --controller 127.0.0.1:" + std::to_string(c_->port()) + " " + args);
  }
  static size_t Jobs() { return c_->Json("GET", "/api/v1/jobs").at("jobs").as_array().size(); }
  // A job that trains long enough to be cancelled: its id.
  static std::string LongJob(const std::string& extra = "") {
    const Outcome r = Dnnd("ctl --controller 127.0.0.1:" + std::to_string(c_->port()) +
                           " train --model mlp --dataset fm --epochs 10000 --limit-train 64"
                           " --limit-test 64 --workers 1 " +
                           extra + " 2>/dev/null");
    EXPECT_EQ(r.code, 0) << r.output;
    return r.output.substr(0, r.output.find('\n'));
  }
  static void CancelAndWait(const std::string& id) {
    c_->Send("POST", "/api/v1/jobs/" + id + "/cancel");
    WaitForJob(*c_, std::stoll(id), JobOver, std::chrono::seconds(30));
  }
  static inline TempDir* dir_ = nullptr;
  static inline ControllerProcess* c_ = nullptr;
  static inline bool ready_ = false;
};

TEST_F(CtlStrict, AnUnknownFlagIsAUsageErrorNamingItAndCreatesNoJob) {
  const size_t before = Jobs();
  const Outcome r = Ctl("train --model mlp --dataset fm --epoch 3");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("unknown flag --epoch (did you mean --epochs?)"), std::string::npos)
      << r.output;
  EXPECT_EQ(Jobs(), before);
  // Spelled with '=' too, and a flag of another verb is unknown to this one.
  EXPECT_NE(Ctl("train --model mlp --dataset fm --epoch=3").output.find("unknown flag --epoch "),
            std::string::npos);
  const Outcome other = Ctl("job list --spec x.toml");
  EXPECT_EQ(other.code, 2);
  EXPECT_NE(other.output.find("unknown flag --spec"), std::string::npos) << other.output;
  EXPECT_EQ(Jobs(), before);
}

TEST_F(CtlStrict, PredictWithAMisspelledJobIsRefusedNotAnsweredByTheNewestJob) {
  TempDir files;
  const std::string sample = files.Write("x.json", R"({"inputs": [[0]]})");
  const Outcome r = Ctl("predict mlp " + sample + " --jobb 3");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("unknown flag --jobb (did you mean --job?)"), std::string::npos)
      << r.output;
}

TEST_F(CtlStrict, UnknownNounsVerbsAndArgumentsAreUsageErrors) {
  Outcome r = Ctl("jobs list");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("unknown noun 'jobs' (did you mean job?)"), std::string::npos)
      << r.output;
  r = Ctl("job lst");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("unknown job verb 'lst' (did you mean list?)"), std::string::npos)
      << r.output;
  r = Ctl("job get 1 2");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("unexpected argument '2'"), std::string::npos) << r.output;
  r = Ctl("job logs 1 --follow=yes");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--follow is a switch"), std::string::npos) << r.output;
  r = Ctl("train --model mlp --dataset fm --epochs 1 --epochs 2");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--epochs is given twice"), std::string::npos) << r.output;
  r = Ctl("train --dataset fm");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--model is required"), std::string::npos) << r.output;
  EXPECT_EQ(Ctl("job list -o yaml").code, 2);
}

TEST_F(CtlStrict, TheControllerMayBeGivenAsAnHttpUrl) {
  const std::string port = std::to_string(c_->port());
  for (const std::string& address :
       {"http://127.0.0.1:" + port, "http://127.0.0.1:" + port + "/", "HTTP://127.0.0.1:" + port}) {
    const Outcome r = Dnnd("ctl --controller " + address + " model list");
    EXPECT_EQ(r.code, 0) << address << ": " << r.output;
    EXPECT_NE(r.output.find("mlp"), std::string::npos) << r.output;
  }
  const Outcome env =
      Shell("DNND_CONTROLLER=http://127.0.0.1:" + port + "/ " + DNND_BINARY + " ctl model list");
  EXPECT_EQ(env.code, 0) << env.output;
  // What it cannot use is a usage error saying why, before any request.
  Outcome r = Dnnd("ctl --controller https://127.0.0.1:" + port + " model list");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("https"), std::string::npos) << r.output;
  r = Dnnd("ctl --controller 127.0.0.1 model list");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--controller: the controller address '127.0.0.1' has no port"),
            std::string::npos)
      << r.output;
}

TEST_F(CtlStrict, CancelAnswersWithATableAndJsonOnlyWhenAsked) {
  const std::string id = LongJob();
  Outcome r = Ctl("job cancel " + id);
  EXPECT_EQ(r.code, 0) << r.output;
  const std::string gap(std::max<size_t>(2, id.size()) - id.size() + 2, ' ');
  EXPECT_EQ(r.output, "ID  STATE\n" + id + gap + "cancelling\n");
  CancelAndWait(id);
  const std::string second = LongJob();
  r = Ctl("--json job cancel " + second);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(json::parse(r.output).at("cancelling"), true) << r.output;
  CancelAndWait(second);
  // The other one-record verbs answer with tables too.
  r = Ctl("dataset get fm");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.output.rfind("NAME  FORMAT", 0), 0u) << r.output;
  r = Ctl("model get mlp");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.output.rfind("NAME  PARAMETERS", 0), 0u) << r.output;
}

// The model spec's lr is a float32 (0.001f); a job that does not set --lr
// takes it, widened to the double 0.0010000000474974513. People read 0.001.
TEST_F(CtlStrict, SettingsPrintInTheirShortestForm) {
  const std::string id = LongJob();
  const std::string other = LongJob("--lr 0.0005 --goal-accuracy 0.875");
  Outcome r = Ctl("job get " + id);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("lr = 0.001,"), std::string::npos) << r.output;
  r = Ctl("job get " + other);
  EXPECT_NE(r.output.find("lr = 0.0005,"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("goal_accuracy = 0.875,"), std::string::npos) << r.output;
  r = Ctl("model get mlp");
  EXPECT_NE(r.output.find("\nlr = 0.001\n"), std::string::npos) << r.output;
  r = Ctl("job logs " + id);  // the controller's log says it the same way
  EXPECT_NE(r.output.find("lr = 0.001,"), std::string::npos) << r.output;
  for (const Outcome& o : {Ctl("job get " + id), Ctl("model get mlp"), r}) {
    EXPECT_EQ(o.output.find("0.00100000"), std::string::npos) << o.output;
    EXPECT_EQ(o.output.find("E-3"), std::string::npos) << o.output;
  }
  CancelAndWait(id);
  CancelAndWait(other);
}

TEST(CtlHuman, AnUnreachableControllerIsSaidInWords) {
  const Outcome r = Dnnd("ctl --controller 127.0.0.1:1 job list");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.output, "dnnd ctl: cannot reach the controller at 127.0.0.1:1: connection refused\n");
  const Outcome url = Dnnd("ctl --controller http://127.0.0.1:1/ job list");
  EXPECT_EQ(url.output, r.output);
}

}  // namespace
}  // namespace dnnd::testing
