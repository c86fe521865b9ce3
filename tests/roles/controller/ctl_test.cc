// `dnnd ctl` against a real controller, and the standalone role's controller.
#include "fixture.h"

namespace dnnd {
namespace {

using namespace dnnd::controller_testing;

TEST(ControllerCtl, DrivesTheApiWithScriptableExitCodes) {
  TempDir dir;
  ControllerProcess c(dir);
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  const std::string ctl = "ctl --controller 127.0.0.1:" + std::to_string(c.port()) + " ";
  std::string labels = Idx({10}, 0);
  labels[labels.size() - 1] = 1;
  const std::string images = dir.Write("x.idx", Idx({10, 4, 4}, 7)),
                    ys = dir.Write("y.idx", labels);
  Outcome r = Dnnd(ctl + "dataset upload d --format idx --train-images " + images +
                   " --train-labels " + ys);
  ASSERT_EQ(r.code, 0) << r.output;
  r = Dnnd(ctl + "dataset list");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("[9,1]"), std::string::npos) << r.output;  // the class histogram
  const std::string spec = dir.Write("m.toml",
                                     "[model]\ninput = [1, 4, 4]\n[[model.layers]]\ntype = "
                                     "\"flatten\"\n[[model.layers]]\ntype = \"linear\"\nout = 2\n");
  ASSERT_EQ(Dnnd(ctl + "model create m --spec " + spec).code, 0);
  r = Shell(std::string(DNND_BINARY) + " " + ctl +
            "job create --model m --dataset d --epochs 2 --batch 5 2>/dev/null");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output, "1\n");  // just the id, for scripts
  r = Dnnd(ctl + "-o json job get 1");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("\"model\": \"m\""), std::string::npos) << r.output;
  // Refused (4xx) is 3 with the controller's message; unreachable is 1; usage is 2.
  r = Dnnd(ctl + "job create --model nope --dataset d");
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.output.find("unknown model 'nope'"), std::string::npos) << r.output;
  EXPECT_EQ(Dnnd(ctl + "job get 42").code, 3);
  EXPECT_EQ(Dnnd(ctl + "dataset get ../../etc").code, 3);
  EXPECT_EQ(Dnnd(ctl + "job frobnicate").code, 2);
  EXPECT_EQ(Dnnd(ctl + "job create --model m --epochs many").code, 2);
  EXPECT_EQ(Dnnd("ctl --controller 127.0.0.1:1 job list").code, 1);
}

TEST(ControllerCtl, TokenFromEnvOrFileTrainFollowLogsFollowDelete) {
  TempDir dir;
  const std::string token_file = dir.Write("token", "tok-ctl\n");
  const std::string wire_key_file = dir.Write("wire-key", "wire-ctl\n");
  // One worker: a second one-worker job waits queued while the first runs.
  ControllerProcess c(dir, "--set http.token_file=" + token_file + " --set transport.token_file=" +
                               wire_key_file + " --set controller.local_workers=1");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  const std::string address = "127.0.0.1:" + std::to_string(c.port());
  TinyFiles files(dir);
  // A clean environment: nothing inherited decides where the token comes from.
  const std::string home = dir.path() + "/home";
  std::filesystem::create_directories(home + "/.config/dnnd");
  const std::string env =
      "env -u DNND_TOKEN -u DNND_CONTROLLER -u XDG_CONFIG_HOME HOME=" + home + " ";
  auto ctl = [&](const std::string& args) { return Shell(env + DNND_BINARY + " ctl " + args); };
  // No token: refused (3), with a hint where a token comes from.
  Outcome o = ctl("--controller " + address + " model create m --spec " + files.spec);
  EXPECT_EQ(o.code, 3) << o.output;
  EXPECT_NE(o.output.find("DNND_TOKEN"), std::string::npos) << o.output;
  // From the environment (address too).
  o = Shell(env + "DNND_CONTROLLER=" + address + " DNND_TOKEN=tok-ctl " + DNND_BINARY +
            " ctl dataset upload d --format idx --train-images " + files.images +
            " --train-labels " + files.labels + " --test-images " + files.images +
            " --test-labels " + files.labels);
  EXPECT_EQ(o.code, 0) << o.output;
  EXPECT_TRUE(c.Json("GET", "/api/v1/datasets/d").as_object().contains("train_samples"));
  // From ~/.config/dnnd/ctl.toml: address and a token_file next to it.
  std::ofstream(home + "/.config/dnnd/ctl.toml")
      << "controller = \"" << address << "\"\ntoken_file = \"tok\"\n";
  std::ofstream(home + "/.config/dnnd/tok") << "tok-ctl\n";
  o = ctl("model create m --spec " + files.spec);
  ASSERT_EQ(o.code, 0) << o.output;
  o = ctl("--token nope model list");  // the flag wins over the file; GETs need no token anyway
  EXPECT_EQ(o.code, 0) << o.output;
  o = ctl("--token nope model create m2 --spec " + files.spec);
  EXPECT_EQ(o.code, 3) << o.output;
  EXPECT_NE(o.output.find("refused this token"), std::string::npos) << o.output;

  // train --follow: a progress line per epoch, exit 0 when the job succeeded.
  o = ctl("train --model m --dataset d --epochs 3 --batch 5 --workers 1 --follow");
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("job 1 succeeded epoch 3/3 [####################] 100%  loss "),
            std::string::npos)
      << o.output;
  EXPECT_NE(o.output.find("acc "), std::string::npos) << o.output;
  // A longer job, followed; a second job queued behind it, its log followed.
  Daemon follow_train("ctl --controller " + address +
                          " --token tok-ctl train --model m --dataset d --epochs 150 "
                          "--batch 5 --workers 1 --follow",
                      dir.path() + "/follow-train.log");
  auto job2 = WaitForJob(
      c, 2, [](const json::value& j) { return j.at("state") == "running"; },
      std::chrono::seconds(20));
  ASSERT_EQ(job2.at("state"), "running") << job2;
  o = ctl("train --model m --dataset d --epochs 2 --batch 5 --workers 1");
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_EQ(o.output, "3\n");
  Daemon follow_logs("ctl --controller " + address + " job logs 3 -f",
                     dir.path() + "/follow-logs.log");
  ASSERT_TRUE(follow_logs.WaitFor("queued: model m", std::chrono::seconds(10)))
      << follow_logs.output();
  EXPECT_EQ(follow_logs.output().find("running"),
            std::string::npos);  // job 3 waits for job 2's worker
  // Delete is refused while a job is active, allowed once it is over.
  o = ctl("job delete 2");
  EXPECT_EQ(o.code, 3) << o.output;
  EXPECT_NE(o.output.find("job_active"), std::string::npos) << o.output;
  EXPECT_EQ(follow_train.Wait(), 0) << follow_train.output();  // the followed job succeeded
  EXPECT_NE(follow_train.output().find("job 2 succeeded"), std::string::npos)
      << follow_train.output();
  // The log follower saw job 3's lines appear, and stopped when it ended.
  EXPECT_EQ(follow_logs.Wait(), 0) << follow_logs.output();
  const std::string followed = follow_logs.output();
  EXPECT_NE(followed.find("running"), std::string::npos) << followed;
  EXPECT_NE(followed.find("epoch 2:"), std::string::npos) << followed;
  EXPECT_NE(followed.find("succeeded"), std::string::npos) << followed;
  EXPECT_EQ(followed, HttpBody(c.Send("GET", "/api/v1/jobs/3/logs")));  // all of it, once
  ASSERT_TRUE(std::filesystem::exists(dir.path() + "/data/jobs/2"));
  o = ctl("job delete 2");
  EXPECT_EQ(o.code, 0) << o.output;
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/jobs/2")), 404);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data/jobs/2"));
  EXPECT_EQ(ctl("job delete 2").code, 3);
  // A followed job that is cancelled: exit 4. (Last: after a cancel the pool
  // worker is busy for a while before it takes the next job.)
  Daemon follow_cancelled("ctl --controller " + address +
                              " --token tok-ctl train --model m --dataset d "
                              "--epochs 100000 --batch 5 --workers 1 --follow",
                          dir.path() + "/follow-cancelled.log");
  auto job4 = WaitForJob(
      c, 4, [](const json::value& j) { return j.at("state") == "running"; },
      std::chrono::seconds(20));
  ASSERT_EQ(job4.at("state"), "running") << job4;
  ASSERT_EQ(ctl("job cancel 4").code, 0);
  EXPECT_EQ(follow_cancelled.Wait(), 4) << follow_cancelled.output();
  EXPECT_NE(follow_cancelled.output().find("cancelled"), std::string::npos)
      << follow_cancelled.output();
  // The logs endpoint pages by offset.
  const std::string r = c.Send("GET", "/api/v1/jobs/3/logs?offset=5");
  EXPECT_EQ(HttpBody(r), followed.substr(5));
  EXPECT_EQ(HttpHeader(r, "X-Log-Offset"), std::to_string(followed.size()));
  EXPECT_EQ(HttpHeader(r, "X-Job-State"), "succeeded");
  EXPECT_EQ(HttpStatus(c.Send("GET", "/api/v1/jobs/3/logs?offset=-1")), 400);
}

TEST(ControllerCtl, HelpOnEveryVerb) {
  for (const char* verb :
       {"train", "dataset list", "dataset get", "dataset delete", "dataset upload", "model list",
        "model get", "model create", "job list", "job get", "job create", "job cancel",
        "job delete", "job logs", "node list"}) {
    Outcome o = Dnnd(std::string("ctl ") + verb + " --help");
    EXPECT_EQ(o.code, 0) << verb << ": " << o.output;
    EXPECT_EQ(o.output.rfind(std::string("dnnd ctl ") + verb, 0), 0u) << verb << ": " << o.output;
  }
  EXPECT_NE(Dnnd("ctl train --help").output.find("--epochs"), std::string::npos);
  EXPECT_EQ(Dnnd("ctl job logs").code, 2);  // missing <id>
}

// The README's run command: the standalone role is the controller with its
// workers in one process; it registers the config's data and model once,
// submits the job through its own API and (standalone.exit_when_done) exits
// 0 when the job succeeded. tests/roles/node/standalone_test.cc: the default,
// serving on after the job, and a re-run resuming a stopped job.
TEST(ControllerStandalone, RunsTheConfigsJobThroughTheControllerAndKeepsItsHistory) {
  if (!std::filesystem::exists(kFm + "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist missing";
  TempDir dir;
  const std::string args =
      "--role=standalone --config " + Src("configs/standalone.toml") +
      " --set http.listen=127.0.0.1:0 --set controller.data_dir=" + dir.path() +
      "/c --set data.limit_train=4096 --set data.limit_test=1000 --set train.epochs=1"
      " --set train.progress=none --set standalone.exit_when_done=true";
  const Outcome first = Dnnd(args);
  ASSERT_EQ(first.code, 0) << first.output;
  EXPECT_NE(first.output.find("dashboard: http://127.0.0.1:"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("registering dataset fashion-mnist from"), std::string::npos)
      << first.output;
  EXPECT_NE(first.output.find("job 1 succeeded"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("test accuracy"), std::string::npos) << first.output;
  // A second run reuses the registered data and model, and job 1 (the same settings).
  const Outcome second = Dnnd(args);
  ASSERT_EQ(second.code, 0) << second.output;
  EXPECT_EQ(second.output.find("registering dataset"), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("job 1 succeeded"), std::string::npos) << second.output;
  // Other settings: another job, 2.
  const Outcome third = Dnnd(args + " --set train.seed=7");
  ASSERT_EQ(third.code, 0) << third.output;
  EXPECT_NE(third.output.find("job 2 succeeded"), std::string::npos) << third.output;
  auto store = ControllerStore::Open(dir.path() + "/c/controller.db");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto jobs = (*store)->ListJobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 2u);
  for (const auto& j : *jobs) EXPECT_EQ(j.state, kJobSucceeded) << j.id << " " << j.reason;
}

}  // namespace
}  // namespace dnnd
