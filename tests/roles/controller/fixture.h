// What the controller's tests share (tests/roles/controller/*_test.cc): the
// tiny IDX dataset and model most of them register, and pool worker
// processes joined to a controller process.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "roles/controller/controller.h"
#include "roles/controller/store.h"
#include "tests/roles/controller_process.h"
#include "tests/roles/dnnd_process.h"

namespace dnnd::controller_testing {

using namespace dnnd::testing;
namespace json = boost::json;

// An IDX file: magic (type 0x08 = uint8, `dims.size()` dimensions), sizes, data.
inline std::string Idx(const std::vector<int>& dims, uint8_t fill) {
  std::string s = {0, 0, 8, static_cast<char>(dims.size())};
  size_t n = 1;
  for (int d : dims) {
    s += {static_cast<char>(d >> 24), static_cast<char>(d >> 16), static_cast<char>(d >> 8),
          static_cast<char>(d)};
    n *= static_cast<size_t>(d);
  }
  return s + std::string(n, static_cast<char>(fill));
}

// A pool worker process: `dnnd --role=worker` with worker.controller set.
inline std::unique_ptr<Daemon> StartPoolWorker(TempDir& dir, int port, const std::string& name) {
  const std::string config =
      dir.Write(name + ".toml", "[node]\nname = \"" + name +
                                    "\"\nthreads = 1\n[worker]\ncontroller = \"127.0.0.1:" +
                                    std::to_string(port) + "\"\nheartbeat_ms = 200\n");
  return std::make_unique<Daemon>("--role=worker --config " + config,
                                  dir.path() + "/" + name + ".log");
}

inline json::array PoolNodes(ControllerProcess& c) {
  return c.Json("GET", "/api/v1/nodes").at("nodes").as_array();
}

inline bool WaitForNodes(ControllerProcess& c, size_t n, std::chrono::seconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    size_t idle = 0;
    for (const auto& node : PoolNodes(c)) idle += node.at("state") == "idle";
    if (idle >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// The 10-sample 4x4 dataset and the 2-class linear model most tests here use.
struct TinyFiles {
  std::string images, labels, spec;
  explicit TinyFiles(TempDir& dir) {
    std::string ys = Idx({10}, 0);
    ys[ys.size() - 1] = 1;
    images = dir.Write("x.idx", Idx({10, 4, 4}, 7));
    labels = dir.Write("y.idx", ys);
    spec = dir.Write("m.toml",
                     "[model]\ninput = [1, 4, 4]\n[[model.layers]]\ntype = \"flatten\"\n"
                     "[[model.layers]]\ntype = \"linear\"\nout = 2\n");
  }
};

// TinyFiles' samples as dataset "d" (no test set) and its model as "m".
inline void RegisterTiny(ControllerProcess& c, const TinyFiles& files) {
  ASSERT_EQ(
      HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-images", ReadFile(files.images))),
      201);
  ASSERT_EQ(
      HttpStatus(c.Send("PUT", "/api/v1/datasets/d/files/train-labels", ReadFile(files.labels))),
      201);
  ASSERT_EQ(HttpStatus(c.Send("POST", "/api/v1/datasets", R"({"name":"d","format":"idx"})")), 201);
  ASSERT_EQ(HttpStatus(c.Send("POST", "/api/v1/models",
                              R"({"name":"m","spec":)" +
                                  json::serialize(json::value(ReadFile(files.spec))) + "}")),
            201);
}

// A controller with `workers` local pool workers, idle, and TinyFiles
// registered; check HasFatalFailure() after Start().
struct TinyPool {
  TempDir dir;
  ControllerProcess c;
  TinyFiles files;
  explicit TinyPool(int workers)
      : c(dir, "--set controller.local_workers=" + std::to_string(workers)), files(dir) {}
  void Start(size_t workers) {
    ASSERT_GT(c.port(), 0) << c.daemon().output();
    RegisterTiny(c, files);
    ASSERT_TRUE(WaitForNodes(c, workers, std::chrono::seconds(10)))
        << c.Send("GET", "/api/v1/nodes");
  }
};

}  // namespace dnnd::controller_testing
