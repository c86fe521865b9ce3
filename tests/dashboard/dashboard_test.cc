// The controller's web dashboard: its routes on a real router (embedded
// bytes, content types, caching, 404s), and the pages themselves rendered by
// Debian's headless Chromium against a real controller process that has
// trained a tiny job (browse.mjs drives the browser and checks the DOM).
#include "roles/controller/dashboard.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>

#include "../roles/dnnd_process.h"
#include "transport/http.h"

namespace dnnd {
namespace {

using namespace dnnd::testing;
namespace json = boost::json;
namespace fs = std::filesystem;

HttpResponse Get(const HttpRouter& router, const std::string& path,
                 const std::string& if_none_match = "") {
  HttpRequest r;
  r.method = "GET";
  r.target = r.path = path;
  if (!if_none_match.empty()) r.headers.emplace_back("If-None-Match", if_none_match);
  return router.Dispatch(r);
}

std::string Header(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

TEST(DashboardRoutes, ServeTheSourceFilesBytesWithTheirTypes) {
  HttpRouter router;
  AddDashboardRoutes(router);
  const fs::path dir = Src("src/roles/controller/dashboard");
  size_t on_disk = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name[0] == '.') continue;
    ++on_disk;
    const HttpResponse r = Get(router, "/ui/" + name);
    ASSERT_EQ(r.status, 200) << name;
    EXPECT_EQ(r.body, ReadFile(entry.path().string())) << name << " differs from the embedded copy";
  }
  EXPECT_EQ(DashboardAssets().size(), on_disk);
  EXPECT_EQ(Get(router, "/ui/index.html").content_type, "text/html; charset=utf-8");
  EXPECT_EQ(Get(router, "/ui/app.js").content_type,
            "text/javascript; charset=utf-8");  // modules need a JS type
  EXPECT_EQ(Get(router, "/ui/style.css").content_type, "text/css; charset=utf-8");
  EXPECT_EQ(Get(router, "/ui/").body, ReadFile((dir / "index.html").string()));
  for (const char* path : {"/", "/ui"}) {
    const HttpResponse r = Get(router, path);
    EXPECT_EQ(r.status, 302) << path;
    EXPECT_EQ(Header(r, "Location"), "/ui/") << path;
  }
}

TEST(DashboardRoutes, RevalidateByETagAndAnswerUnknownAssetsWithJson404) {
  HttpRouter router;
  AddDashboardRoutes(router);
  const HttpResponse first = Get(router, "/ui/app.js");
  const std::string etag = Header(first, "ETag");
  ASSERT_EQ(etag.size(), 18u) << etag;  // "<16 hex digits>"
  EXPECT_EQ(Header(first, "Cache-Control"), "no-cache");
  EXPECT_EQ(Header(first, "X-Content-Type-Options"), "nosniff");
  const HttpResponse again = Get(router, "/ui/app.js", etag);
  EXPECT_EQ(again.status, 304);
  EXPECT_TRUE(again.body.empty());
  EXPECT_EQ(Get(router, "/ui/app.js", "\"0000000000000000\"").status,
            200);  // a stale copy gets the bytes
  EXPECT_NE(Header(Get(router, "/ui/style.css"), "ETag"), etag);
  const HttpResponse missing = Get(router, "/ui/nope.js");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.content_type, "application/json");
  EXPECT_EQ(json::parse(missing.body).at("error").at("code").as_string(), "not_found");
  EXPECT_NE(missing.body.find("nope.js"), std::string::npos);
  EXPECT_EQ(Get(router, "/ui/a/b.js").status, 404);
}

// ---- in the browser ---------------------------------------------------------

// An IDX file: magic (uint8, dims.size() dimensions), big-endian sizes, data.
std::string Idx(const std::vector<int>& dims, const std::string& data) {
  std::string s = {0, 0, 8, static_cast<char>(dims.size())};
  for (int d : dims)
    s += {static_cast<char>(d >> 24), static_cast<char>(d >> 16), static_cast<char>(d >> 8),
          static_cast<char>(d)};
  return s + data;
}

// 60 28x28 images in 10 classes, class c a white band on rows 4+2c and
// 5+2c: a linear model learns it in a few epochs, and the dashboard gets
// real history to chart.
void UploadTinyDataset(int port) {
  std::string images, labels;
  for (int i = 0; i < 60; ++i) {
    const int c = i % 10;
    labels += static_cast<char>(c);
    std::string image(28 * 28, '\0');
    std::fill_n(image.begin() + (4 + 2 * c) * 28, 2 * 28, '\xff');
    images += image;
  }
  const std::string x = Idx({60, 28, 28}, images), y = Idx({60}, labels);
  for (const auto& [part, body] :
       {std::pair{"train-images", x}, {"train-labels", y}, {"test-images", x}, {"test-labels", y}})
    ASSERT_EQ(
        HttpStatus(HttpSend(port, "PUT", std::string("/api/v1/datasets/tiny/files/") + part, body)),
        201);
  const std::string r =
      HttpSend(port, "POST", "/api/v1/datasets", R"({"name":"tiny","format":"idx"})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
}

// True when `method path` is routed (a 405 for another method also says so).
bool RouteExists(int port, const std::string& path) {
  const int status = HttpStatus(HttpGet(port, path));
  return status != 404 && status != 0;
}

TEST(DashboardBrowser, JobsJobNodesAndPredictPagesRenderInHeadlessChromium) {
  ASSERT_TRUE(fs::exists("/usr/bin/chromium"))
      << "Debian's chromium is needed: scripts/setup.sh installs it";
  ASSERT_EQ(Shell("node --version").code, 0)
      << "Node.js (>= 18, with npm) is needed to drive Chromium";
  const Outcome npm = Shell(Src("scripts/npm-ci.sh") + " " + Src("tests/dashboard"));
  ASSERT_EQ(npm.code, 0) << "installing tests/dashboard's npm packages failed:\n" << npm.output;

  TempDir dir;
  Daemon controller("--role=controller --config " + Src("configs/controller.toml") +
                        " --set http.listen=127.0.0.1:0 --set controller.data_dir=" + dir.path() +
                        "/data --set node.threads=2",
                    dir.path() + "/controller.log");
  const int port =
      controller.PortAfter("control plane listening address=127.0.0.1:", std::chrono::seconds(10));
  ASSERT_GT(port, 0) << controller.output();
  UploadTinyDataset(port);
  std::string r =
      HttpSend(port, "POST", "/api/v1/models",
               R"({"name":"tiny","spec":{"model":{"input":[1,28,28],"layers":[{"type":"flatten"},)"
               R"({"type":"linear","out":10}],"optimizer":{"type":"adam","lr":0.01}}}})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  r = HttpSend(port, "POST", "/api/v1/jobs",
               R"({"model":"tiny","dataset":"tiny","epochs":3,"batch":10,"workers":1})");
  ASSERT_EQ(HttpStatus(r), 201) << r;
  const int64_t id = json::parse(HttpBody(r)).at("id").as_int64();
  std::string state;
  for (int i = 0; i < 600 && state != "succeeded" && state != "failed"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    state = json::value_to<std::string>(
        json::parse(HttpBody(HttpGet(port, "/api/v1/jobs/" + std::to_string(id)))).at("state"));
  }
  ASSERT_EQ(state, "succeeded") << controller.output();

  // Routes other engineers are adding: checked against whatever this build
  // has, so the test holds before and after they land.
  const bool nodes = RouteExists(port, "/api/v1/nodes");
  const bool predict = RouteExists(port, "/api/v1/models/tiny/predict");
  const std::string out = (fs::path(DNND_BINARY).parent_path() / "dashboard-artifacts").string();
  fs::remove_all(out);  // no screenshot of an earlier run can pass for this one's
  const Outcome browse =
      Shell("cd " + Src("tests/dashboard") +
            " && timeout 120 node browse.mjs --url http://127.0.0.1:" + std::to_string(port) +
            " --job " + std::to_string(id) + " --out " + out + " --nodes-route " +
            (nodes ? "yes" : "no") + " --predict-route " + (predict ? "yes" : "no"));
  std::cout << browse.output;
  EXPECT_EQ(browse.code, 0) << browse.output << "\ncontroller log:\n" << controller.output();
  for (const char* page : {"jobs", "job", "nodes", "predict"}) {
    const fs::path png = fs::path(out) / (std::string(page) + ".png");
    EXPECT_TRUE(fs::exists(png) && fs::file_size(png) > 1000) << png;
  }
  controller.Signal(SIGTERM);
  EXPECT_EQ(controller.Wait(), 0) << controller.output();
}

}  // namespace
}  // namespace dnnd
