// A real controller process for tests (tests/roles/*): started on an
// ephemeral port with its data in a TempDir, plus the helpers its tests share
// (JSON error fields, uploading the real Fashion-MNIST, the MLP's spec,
// waiting for a job).
#pragma once

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "dnnd_process.h"

namespace dnnd::testing {

namespace json = boost::json;

inline const std::string kFm = "/usr/share/datasets/fashion-mnist/";

class ControllerProcess {
 public:
  ControllerProcess(const TempDir& dir, const std::string& extra = "")
      : daemon_("--role=controller --config " + Src("configs/controller.toml") +
                    " --set http.listen=127.0.0.1:0" + " --set controller.data_dir=" + dir.path() +
                    "/data --set node.threads=2 " + extra,
                dir.path() + "/controller-" + std::to_string(counter_++) + ".log") {
    port_ =
        daemon_.PortAfter("control plane listening address=127.0.0.1:", std::chrono::seconds(10));
  }
  int port() const { return port_; }
  Daemon& daemon() { return daemon_; }
  std::string Send(const std::string& method, const std::string& path, const std::string& body = "",
                   const std::string& content_type = "application/json") {
    return HttpSend(port_, method, path, body, content_type, auth_);
  }
  // Later requests carry "Authorization: Bearer <token>" ("" = none).
  void UseToken(const std::string& token) {
    auth_ = token.empty() ? "" : "Authorization: Bearer " + token + "\r\n";
  }
  json::value Json(const std::string& method, const std::string& path,
                   const std::string& body = "") {
    return json::parse(HttpBody(Send(method, path, body)));
  }

 private:
  static inline int counter_ = 0;
  Daemon daemon_;
  int port_ = 0;
  std::string auth_;
};

inline std::string ErrorCode(const std::string& response) {
  auto v = json::parse(HttpBody(response));
  return std::string(v.at("error").at("code").as_string());
}
inline std::string ErrorMessage(const std::string& response) {
  auto v = json::parse(HttpBody(response));
  return std::string(v.at("error").at("message").as_string());
}

inline void UploadFashionMnist(ControllerProcess& c, const std::string& name) {
  const std::pair<const char*, const char*> parts[] = {
      {"train-images", "train-images-idx3-ubyte.gz"},
      {"train-labels", "train-labels-idx1-ubyte.gz"},
      {"test-images", "t10k-images-idx3-ubyte.gz"},
      {"test-labels", "t10k-labels-idx1-ubyte.gz"}};
  for (const auto& [part, file] : parts) {
    const std::string r =
        c.Send("PUT", "/api/v1/datasets/" + name + "/files/" + part, ReadFile(kFm + file));
    ASSERT_EQ(HttpStatus(r), 201) << r;
  }
  const std::string r =
      c.Send("POST", "/api/v1/datasets", R"({"name":")" + name + R"(","format":"idx"})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
}

// Peak resident set of a process, in bytes (VmHWM from /proc).
inline int64_t PeakRss(pid_t pid) {
  const std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
  const size_t p = status.find("VmHWM:");
  return p == std::string::npos ? -1 : std::atoll(status.c_str() + p + 6) * 1024;
}

inline std::string MlpSpecJson() {
  return json::serialize(json::value(ReadFile(Src("configs/models/mlp.toml"))));
}

// The real Fashion-MNIST as dataset "fm" and the MLP as model `model`.
inline void RegisterFashionMnistAndMlp(ControllerProcess& c, const std::string& model = "mlp") {
  UploadFashionMnist(c, "fm");
  const std::string r = c.Send("POST", "/api/v1/models",
                               R"({"name":")" + model + R"(","spec":)" + MlpSpecJson() + "}");
  ASSERT_EQ(HttpStatus(r), 201) << r;
}

// A job record (GET /api/v1/jobs/{id}) in a final state.
inline bool JobOver(const json::value& job) {
  return job.at("state") != "queued" && job.at("state") != "running";
}

inline json::value WaitForJob(ControllerProcess& c, int64_t id,
                              const std::function<bool(const json::value&)>& done,
                              std::chrono::seconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  json::value job;
  while (std::chrono::steady_clock::now() < end) {
    const std::string r = c.Send("GET", "/api/v1/jobs/" + std::to_string(id));
    if (HttpStatus(r) == 200) {
      job = json::parse(HttpBody(r));
      if (done(job)) return job;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return job;
}

}  // namespace dnnd::testing
