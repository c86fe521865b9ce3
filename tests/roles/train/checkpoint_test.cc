// Crash-safe trainer checkpoints, against the real dnnd binary: a worker
// SIGKILLed at random moments while it checkpoints every step always resumes,
// never from an earlier step; a damaged newest generation falls back to the
// previous one; what killed writers leave behind is swept at start.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "tensor/safetensors.h"
#include "tests/roles/controller_process.h"
#include "tests/roles/dnnd_process.h"

namespace dnnd {
namespace {

using namespace dnnd::testing;
namespace fs = std::filesystem;

// XOR (8 samples, 3-50-100-1) with a checkpoint after every step: most of a
// run's time is spent saving, so a kill at a random moment mostly lands in a save.
std::string XorWorker(const std::string& checkpoint_dir, const std::string& extra = "") {
  return "--role=worker --config " + Src("configs/worker-xor.toml") +
         " --set train.iterations=1000000000 --set train.checkpoint_every_steps=1 --set "
         "train.resume=true" +
         " --set train.progress=none --set train.checkpoint_dir=" + checkpoint_dir + " " + extra;
}

// The step of "resumed from <dir> at step N" in a run's output; -1 if it did not resume.
long ResumedStep(const std::string& output) {
  const std::string marker = " at step ";
  const size_t at = output.find("resumed from ");
  if (at == std::string::npos) return -1;
  const size_t step = output.find(marker, at);
  return step == std::string::npos ? -1 : std::atol(output.c_str() + step + marker.size());
}

long ModelStep(const std::string& dir) {
  auto f = LoadSafetensors(dir + "/model.safetensors");
  return f.ok() ? std::stol(f->metadata.at("dnnd.step")) : -1;
}

// The pid of a process that has exited (for planting a dead writer's temp files).
pid_t DeadPid() {
  pid_t pid = 0;
  const char* argv[] = {"/bin/true", nullptr};
  if (posix_spawn(&pid, "/bin/true", nullptr, nullptr, const_cast<char**>(argv), environ) != 0)
    return 0;
  waitpid(pid, nullptr, 0);
  return pid;
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// `kills` runs, each SIGKILLed a random [min_ms, max_ms] after it starts
// training, and each resuming what the previous one left: every run must still be alive
// when killed (a failed resume exits at once), the resumed step never goes
// back, and a last, clean run resumes and ends with exit code 0.
void KillLoop(int kills, int min_ms, int max_ms) {
  TempDir dir;
  const std::string ckpt = dir.path() + "/ckpt";
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay(min_ms, max_ms);
  long last = 0, last_model = 0;
  int resumed = 0;
  for (int i = 0; i < kills; ++i) {
    Daemon w(XorWorker(ckpt), dir.path() + "/run.log");
    // Start-up takes a varying while on a busy machine: the delay counts from
    // the line the worker logs just before it resumes and trains.
    ASSERT_TRUE(w.WaitFor("worker: training", std::chrono::seconds(20))) << w.output();
    std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng)));
    w.Signal(SIGKILL);
    const int code = w.Wait();
    const std::string out = w.output();
    ASSERT_EQ(code, -1) << "run " << i << " ended on its own instead of training until killed:\n"
                        << out;
    const long step = ResumedStep(out);
    if (step >= 0) {
      ++resumed;
      ASSERT_GE(step, last) << "run " << i << " resumed from an earlier step:\n" << out;
      last = step;
    }
    // The file other readers use is always a whole model, never older than the last one.
    if (fs::exists(ckpt + "/model.safetensors")) {
      const long model = ModelStep(ckpt);
      ASSERT_GE(model, last_model) << "run " << i;
      last_model = model;
    }
  }
  // Most runs got as far as resuming (the kills hit training and saving).
  EXPECT_GE(resumed, kills / 2);
  Outcome final = Dnnd(
      XorWorker(ckpt, "--set train.max_steps=" + std::to_string(std::max(last, last_model) + 20)));
  ASSERT_EQ(final.code, 0) << final.output;
  EXPECT_GE(ResumedStep(final.output), std::max(last, last_model)) << final.output;
  // What the kills left was swept; two generations are kept.
  int generations = 0;
  for (const std::string& name : Entries(ckpt)) {
    EXPECT_EQ(name.find(".tmp."), std::string::npos) << name;
    generations += name.rfind("gen-", 0) == 0;
  }
  EXPECT_EQ(generations, 2);
}

TEST(CheckpointCrash, SigkillWhileCheckpointingEveryStepAlwaysResumes) { KillLoop(30, 5, 100); }

// The same for 200 kills (about a minute): ctest -L long.
TEST(CheckpointCrash, DISABLED_SigkillSoak) { KillLoop(200, 0, 150); }

TEST(CheckpointCrash, DamagedNewestGenerationFallsBackToThePreviousOne) {
  TempDir dir;
  const std::string ckpt = dir.path() + "/ckpt";
  Outcome first = Dnnd(XorWorker(ckpt, "--set train.max_steps=5"));
  ASSERT_EQ(first.code, 0) << first.output;
  EXPECT_EQ(Entries(ckpt), (std::vector<std::string>{"gen-4", "gen-5", "model.safetensors"}));
  // Torn on disk (say a disk error): the newest optimizer state is cut in half.
  const std::string bad = ckpt + "/gen-5/optimizer.safetensors";
  fs::resize_file(bad, fs::file_size(bad) / 2);
  Outcome second = Dnnd(XorWorker(ckpt, "--set train.max_steps=8"));
  ASSERT_EQ(second.code, 0) << second.output;
  EXPECT_NE(second.output.find(
                "checkpoint generation does not load; trying the previous one generation=" + ckpt +
                "/gen-5"),
            std::string::npos)
      << second.output;
  EXPECT_NE(second.output.find("resumed from " + ckpt + "/gen-4 at step 4"), std::string::npos)
      << second.output;
  EXPECT_TRUE(fs::exists(ckpt + "/gen-5.bad/optimizer.safetensors"));  // kept for inspection
  EXPECT_EQ(ModelStep(ckpt), 8);
  // Both kept generations are whole and the newest is the published model.
  EXPECT_EQ(Entries(ckpt),
            (std::vector<std::string>{"gen-5.bad", "gen-7", "gen-8", "model.safetensors"}));
  for (const char* gen : {"/gen-7", "/gen-8"})
    EXPECT_TRUE(LoadSafetensors(ckpt + gen + "/optimizer.safetensors").ok()) << gen;
  EXPECT_EQ(LoadSafetensors(ckpt + "/gen-8/model.safetensors")->metadata.at("dnnd.step"), "8");
  // When no generation loads, the resume fails and says why, naming each one.
  for (const char* gen : {"/gen-7", "/gen-8"})
    fs::resize_file(ckpt + gen + "/model.safetensors", 10);
  Outcome third = Dnnd(XorWorker(ckpt, "--set train.max_steps=9"));
  EXPECT_NE(third.code, 0);
  EXPECT_NE(third.output.find("no checkpoint generation loads"), std::string::npos) << third.output;
  EXPECT_NE(third.output.find(ckpt + "/gen-7/model.safetensors"), std::string::npos)
      << third.output;
  EXPECT_NE(third.output.find(ckpt + "/gen-8/model.safetensors"), std::string::npos)
      << third.output;
}

TEST(CheckpointCrash, WorkerSweepsLeftoversOfKilledWritersAtStart) {
  TempDir dir;
  const std::string ckpt = dir.path() + "/ckpt";
  fs::create_directories(ckpt);
  const std::string dead = std::to_string(DeadPid()), alive = std::to_string(::getpid());
  ASSERT_NE(dead, "0");
  std::ofstream(ckpt + "/model.safetensors.tmp." + dead) << "half a file";
  fs::create_directories(ckpt + "/gen-9.tmp." + dead);
  std::ofstream(ckpt + "/gen-9.tmp." + dead + "/model.safetensors") << "half a generation";
  // Not ours to remove: a live writer's temp file, and names that only look alike.
  std::ofstream(ckpt + "/model.safetensors.tmp." + alive) << "being written";
  std::ofstream(ckpt + "/notes.tmp.txt") << "a user's";
  std::ofstream(ckpt + "/model.safetensors.tmp.x1") << "a user's";
  Outcome r = Dnnd(XorWorker(ckpt, "--set train.max_steps=2"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("removed what an interrupted checkpoint left behind path=" + ckpt +
                          "/gen-9.tmp." + dead),
            std::string::npos)
      << r.output;
  EXPECT_EQ(Entries(ckpt), (std::vector<std::string>{"gen-1", "gen-2", "model.safetensors",
                                                     "model.safetensors.tmp." + alive,
                                                     "model.safetensors.tmp.x1", "notes.tmp.txt"}));
  EXPECT_EQ(ModelStep(ckpt), 2);
}

TEST(CheckpointCrash, ControllerSweepsTempAndUploadLeftoversAtStart) {
  TempDir dir;
  const std::string data = dir.path() + "/data", dead = std::to_string(DeadPid());
  fs::create_directories(data + "/uploads/staged");
  fs::create_directories(data + "/jobs/7/ps");
  std::ofstream(data + "/uploads/.upload-a1B2c3") << "an upload cut short";
  std::ofstream(data + "/uploads/staged/train") << "a part uploaded, not registered yet";
  std::ofstream(data + "/jobs/7/task.toml.tmp." + dead) << "x";
  std::ofstream(data + "/jobs/7/ps/ps-0-0.safetensors.tmp." + dead) << "x";
  std::ofstream(data + "/jobs/7/job.log") << "a job's log\n";
  ControllerProcess c(dir, "--set controller.local_workers=0");
  ASSERT_GT(c.port(), 0) << c.daemon().output();
  EXPECT_EQ(HttpStatus(c.Send("GET", "/healthz")), 200);
  EXPECT_NE(c.daemon().output().find("removed what interrupted writes left behind files=3"),
            std::string::npos)
      << c.daemon().output();
  EXPECT_FALSE(fs::exists(data + "/uploads/.upload-a1B2c3"));
  EXPECT_FALSE(fs::exists(data + "/jobs/7/task.toml.tmp." + dead));
  EXPECT_FALSE(fs::exists(data + "/jobs/7/ps/ps-0-0.safetensors.tmp." + dead));
  EXPECT_TRUE(fs::exists(data + "/uploads/staged/train"));
  EXPECT_TRUE(fs::exists(data + "/jobs/7/job.log"));
}

}  // namespace
}  // namespace dnnd
