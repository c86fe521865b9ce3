#include "roles/controller.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <array>
#include <atomic>
#include <cmath>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>
#include <tuple>

#include "core/dir_lock.h"
#include "tensor/data/from_config.h"
#include "core/files.h"
#include "core/json_fields.h"
#include "core/json_text.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/work_queue.h"
#include "roles/controller_store.h"
#include <cinttypes>
#include <map>
#include <set>

#include "roles/elastic_policy.h"
#include "roles/ps/parameter_server.h"
#include "roles/predictor.h"
#include "roles/pool/protocol.h"
#include "roles/pool/worker_end.h"
#include "roles/pool/controller_end.h"
#include "tensor/parallel.h"
#include "transport/hello.h"
#include "transport/rpc_server.h"
#include "transport/secrets.h"
#include "roles/dashboard.h"
#include "tensor/model_spec.h"
#include "transport/hello.h"
#include "transport/http.h"

namespace dnnd {
namespace fs = std::filesystem;
namespace json = boost::json;

bool IsValidName(const std::string& name) {
  if (name.empty() || name.size() > 64 || !std::isalnum(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

namespace {

const char* kNameRule = "names are 1-64 characters [A-Za-z0-9._-] starting with a letter or digit";

Status CheckName(const std::string& what, const std::string& name) {
  if (IsValidName(name)) return Status::Ok();
  return InvalidArgument("invalid " + what + " name '" + name + "': " + kNameRule);
}

// The staged parts each format needs: {train parts}, {test parts}.
std::pair<std::vector<std::string>, std::vector<std::string>> PartsFor(const std::string& format) {
  if (format == "idx" || format == "npy") return {{"train-images", "train-labels"}, {"test-images", "test-labels"}};
  return {{"train"}, {"test"}};
}


// A JSON model spec ({"model": {...}} or the table itself) as TOML text, so
// one parser (ParseModelSpecText) validates both forms.
std::string JsonToToml(const json::value& v) {
  switch (v.kind()) {
    case json::kind::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, x] : v.get_object()) {
        out += (first ? "" : ", ") + TomlQuote(std::string(k)) + " = " + JsonToToml(x);
        first = false;
      }
      return out + "}";
    }
    case json::kind::array: {
      std::string out = "[";
      bool first = true;
      for (const auto& x : v.get_array()) {
        out += (first ? "" : ", ") + JsonToToml(x);
        first = false;
      }
      return out + "]";
    }
    case json::kind::string: return TomlQuote(std::string(v.get_string()));
    case json::kind::bool_: return v.get_bool() ? "true" : "false";
    case json::kind::int64: return std::to_string(v.get_int64());
    case json::kind::uint64: return std::to_string(v.get_uint64());
    case json::kind::double_: {
      std::ostringstream o;
      o.precision(17);
      o << v.get_double();
      std::string s = o.str();
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      return s;
    }
    case json::kind::null: return "\"\"";
  }
  return "\"\"";
}

json::value ParseJsonText(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  return ec ? json::value() : v;
}


Result<json::object> JsonObjectBody(const HttpRequest& r, size_t max_bytes) {
  if (r.body.size() > max_bytes)
    return ResourceExhausted("request body is " + std::to_string(r.body.size()) + " bytes; the limit is " +
                             std::to_string(max_bytes) + " (http.max_body_bytes)");
  DNND_ASSIGN_OR_RETURN(json::value v, ParseJsonBody(r));
  if (!v.is_object()) return InvalidArgument("request body must be a JSON object");
  return std::move(v.get_object());
}

json::value ShapeJson(const Shape& s) {
  json::array a;
  for (auto d : s) a.push_back(d);
  return a;
}

int64_t DirBytes(const fs::path& dir) {
  int64_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file()) n += static_cast<int64_t>(e.file_size());
  return n;
}

json::object DatasetJson(const DatasetRecord& d) {
  return {{"name", d.name},
          {"format", d.format},
          {"bytes", d.bytes},
          {"train_samples", d.train_samples},
          {"test_samples", d.test_samples},
          {"num_classes", d.num_classes},
          {"sample_shape", ParseJsonText(d.sample_shape)},
          {"class_histogram", ParseJsonText(d.histogram)},
          {"files", ParseJsonText(d.files)},
          {"created", d.created}};
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// controller.ps_ports: "first-last" (both in 1..65535, first <= last), or
// empty for any free port (nullopt).
Result<std::optional<std::pair<int64_t, int64_t>>> ParsePortRange(const std::string& range) {
  if (range.empty()) return std::optional<std::pair<int64_t, int64_t>>();
  int64_t first = 0, last = 0;
  char tail = 0;
  if (std::sscanf(range.c_str(), "%" SCNd64 "-%" SCNd64 "%c", &first, &last, &tail) != 2 || first < 1 ||
      last > 65535 || first > last)
    return InvalidArgument("controller.ps_ports is '" + range + "'; expected \"first-last\" ports, e.g. \"7101-7104\"");
  return std::optional<std::pair<int64_t, int64_t>>(std::pair{first, last});
}

// Mean and standard deviation of every input value, as the data loader sees
// them before normalising (uint8 pixels scaled to [0, 1]).
std::pair<double, double> PixelStats(const data::Dataset& set) {
  double sum = 0, sq = 0;
  size_t n = 0;
  auto add = [&](double x) {
    sum += x;
    sq += x * x;
  };
  if (set.type == data::SampleType::kUint8) {
    std::array<size_t, 256> counts{};
    for (uint8_t v : set.u8) ++counts[v];
    for (int v = 0; v < 256; ++v) {
      const double x = v / 255.0;
      sum += x * static_cast<double>(counts[v]);
      sq += x * x * static_cast<double>(counts[v]);
    }
    n = set.u8.size();
  } else {
    for (float v : set.f32) add(v);
    n = set.f32.size();
  }
  if (n == 0) return {0.0, 1.0};
  const double mean = sum / static_cast<double>(n);
  const double var = std::max(0.0, sq / static_cast<double>(n) - mean * mean);
  return {mean, var > 1e-12 ? std::sqrt(var) : 1.0};
}

struct LiveProgress {
  int64_t job = 0;
  std::atomic<int64_t> step{0}, total{0};
  // First step of this attempt and when it was seen (for the rate); atomics:
  // written by the training thread, read by HTTP threads.
  std::atomic<int64_t> start_step{-1};
  std::atomic<double> start_s{0};
  std::atomic<int64_t> workers{0};  // of the current segment (recorded with each epoch)
  // The last epoch recorded (an elastic job's scheduler decides on it).
  std::mutex mu;
  pool::EpochReport last_epoch;  // epoch 0: none yet
};

class ControllerRole : public Role {
 public:
  // The heavy requests' threads use this object: they stop before it goes.
  ~ControllerRole() override { heavy_->Stop(); }

  ControllerRole(const Config& cfg, DirLock dir_lock, std::unique_ptr<ControllerStore> store,
                 wire::Secrets secrets, int64_t local_workers)
      : cfg_(cfg),
        dir_lock_(std::move(dir_lock)),
        store_(std::move(store)),
        dir_(cfg.GetString("controller.data_dir")),
        max_upload_(static_cast<size_t>(cfg.GetInt("controller.max_upload_bytes"))),
        max_json_(static_cast<size_t>(cfg.GetInt("http.max_body_bytes"))),
        secrets_(std::move(secrets)),
        local_workers_(local_workers),
        predictor_(*store_, {.checkpoint_path = [this](int64_t id) { return CheckpointPath(id); },
                             .max_body_bytes = max_json_,
                             .image = {.max_pixels = cfg.GetInt("controller.max_image_pixels"),
                                       .max_jpeg_scans = cfg.GetInt("controller.max_jpeg_scans")}}),
        pool_(std::chrono::milliseconds(cfg.GetInt("controller.node_timeout_ms")), PoolListener()),
        dataset_limits_{.max_bytes = static_cast<uint64_t>(cfg.GetInt("controller.max_dataset_bytes")),
                        .max_members = cfg.GetInt("controller.max_dataset_members"),
                        .bytes_setting = "controller.max_dataset_bytes",
                        .members_setting = "controller.max_dataset_members"},
        model_limits_{.max_parameters = cfg.GetInt("controller.max_model_parameters")},
        heavy_(std::make_shared<WorkQueue>(static_cast<int>(cfg.GetInt("controller.heavy_threads")),
                                           static_cast<size_t>(cfg.GetInt("controller.heavy_queue")),
                                           "controller.heavy_threads, controller.heavy_queue")) {}

  std::pair<bool, std::string> Readiness() const override {
    if (!running_.load()) return {false, "controller starting"};
    return {true, ""};
  }

  void OnControlPlane(const std::string& address) override { http_address_ = address; }

  Status Run() override {
    Log(LogLevel::kInfo, "controller", "store open",
        {{"data_dir", dir_}, {"schema_version", store_->SchemaVersion()}});
    DNND_RETURN_IF_ERROR(StartShardService());
    DNND_RETURN_IF_ERROR(StartLocalWorkers());
    if (secrets_.api_token.empty())
      Log(LogLevel::kWarn, "controller",
          "the API is UNAUTHENTICATED: no token is set, so anyone who can reach http.listen may upload, train "
          "and delete; set transport.token_file (or env DNND_TRANSPORT__TOKEN)");
    else if (secrets_.api_token_derived)
      Log(LogLevel::kInfo, "controller",
          "the API's bearer token is derived from the wire key (http.token unset); `dnnd api-token --config <file>` "
          "prints it for dnnd ctl");
    running_ = true;
    while (true) {
      {
        std::unique_lock lock(mu_);
        if (stop_) break;
        cv_.wait_for(lock, std::chrono::milliseconds(250));
        if (stop_) break;
      }
      Schedule();
    }
    // Shutting down: the jobs' servers checkpoint; the jobs stay `running`
    // in the store and resume at the next start. This process's own workers
    // stop first, at a step boundary, while their servers still answer
    // (stopped after them, they would retry the dead servers for minutes).
    for (auto& w : local_) w->Stop();
    for (auto& t : local_threads_) t.join();
    std::map<int64_t, std::unique_ptr<RunningJob>> jobs;
    {
      std::lock_guard lock(mu_);
      jobs.swap(jobs_);
    }
    for (auto& [id, job] : jobs) {
      JobLog(id, "controller stopping; the job resumes from its checkpoint at the next start");
      pool_.Release(id);
      for (auto& s : job->servers) s->Stop();
    }
    if (shards_) shards_->Stop();
    heavy_->Stop();  // before main stops the HTTP server its tasks answer through
    return Cancelled("controller stopped");
  }

  void Stop() override {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }

  void AddRoutes(HttpRouter& r) override {
    auto wrap = [this](auto fn) {
      return [this, fn](const HttpRequest& req) -> HttpResponse {
        Result<HttpResponse> res = (this->*fn)(req);
        if (res.ok()) return std::move(res).value();
        if (res.status().code() == StatusCode::kResourceExhausted)
          return HttpResponse::Error(413, "payload_too_large", res.status().message());
        return HttpResponse::FromStatus(res.status());
      };
    };
    // Mutating routes need the token; GETs, /healthz, /readyz, /metrics are read-only status (docs/controller.md).
    r.RequireBearer({.token = secrets_.api_token, .metrics = &DefaultMetrics()});
    r.HandleUpload("PUT", "/api/v1/datasets/{name}/files/{part}",
                   {.dir = dir_ + "/uploads", .max_bytes = max_upload_, .limit_name = "controller.max_upload_bytes"},
                   wrap(&ControllerRole::StageFile));
    // Heavy work (dataset validation, model building, image decoding and
    // prediction) runs on heavy_, not on the threads answering /healthz and heartbeats.
    r.HandleOffloaded("POST", "/api/v1/datasets", heavy_, wrap(&ControllerRole::CreateDataset));
    r.Handle("GET", "/api/v1/datasets", wrap(&ControllerRole::ListDatasets));
    r.Handle("GET", "/api/v1/datasets/{name}", wrap(&ControllerRole::GetDataset));
    r.Handle("DELETE", "/api/v1/datasets/{name}", wrap(&ControllerRole::DeleteDataset));
    r.HandleOffloaded("POST", "/api/v1/models", heavy_, wrap(&ControllerRole::CreateModel));
    r.Handle("GET", "/api/v1/models", wrap(&ControllerRole::ListModels));
    r.Handle("GET", "/api/v1/models/{name}", wrap(&ControllerRole::GetModel));
    r.Handle("GET", "/api/v1/models/{name}/checkpoint", wrap(&ControllerRole::ModelCheckpoint));
    r.HandleOffloaded("POST", "/api/v1/models/{name}/predict", heavy_,
                      [this](const HttpRequest& q) { return predictor_.Predict(q); });
    r.HandleOffloaded("POST", "/api/v1/jobs", heavy_, wrap(&ControllerRole::CreateJob));  // loads the dataset
    r.Handle("GET", "/api/v1/jobs", wrap(&ControllerRole::ListJobs));
    r.Handle("GET", "/api/v1/jobs/{id}", wrap(&ControllerRole::GetJob));
    r.Handle("DELETE", "/api/v1/jobs/{id}", wrap(&ControllerRole::DeleteJob));
    r.Handle("POST", "/api/v1/jobs/{id}/cancel", wrap(&ControllerRole::CancelJob));
    r.Handle("GET", "/api/v1/jobs/{id}/logs", wrap(&ControllerRole::JobLogs));
    r.Handle("GET", "/api/v1/jobs/{id}/checkpoint", wrap(&ControllerRole::JobCheckpoint));
    r.HandleUpload("PUT", "/api/v1/jobs/{id}/model",
                   {.dir = dir_ + "/uploads", .max_bytes = max_upload_, .limit_name = "controller.max_upload_bytes"},
                   wrap(&ControllerRole::UploadModel));
    r.Handle("POST", "/api/v1/nodes/{name}/heartbeat", wrap(&ControllerRole::NodeHeartbeat));
    r.Handle("GET", "/api/v1/nodes", wrap(&ControllerRole::ListNodes));
    AddDashboardRoutes(r);  // the web UI at /ui/ (roles/dashboard.h)
    // Anything else under /api/ gets the router's JSON 404.
  }

 private:
  // ---- datasets -----------------------------------------------------------
  Result<HttpResponse> StageFile(const HttpRequest& r) {
    const std::string name = r.params.at("name"), part = r.params.at("part");
    DNND_RETURN_IF_ERROR(CheckName("dataset", name));
    static const std::vector<std::string> parts = {"train-images", "train-labels", "test-images",
                                                   "test-labels",  "train",        "test"};
    if (std::find(parts.begin(), parts.end(), part) == parts.end())
      return InvalidArgument("unknown file part '" + part +
                             "'; expected train-images, train-labels, test-images, test-labels (idx, npy) or "
                             "train, test (npz, csv)");
    // The server streamed the body to r.body_file (HandleUpload), under max_upload_.
    if (r.body_file.empty()) return Internal("upload route called without a streamed body");
    if (r.body_file_bytes == 0) return InvalidArgument("empty upload for " + name + "/" + part);
    if (store_->GetDataset(name).ok()) return AlreadyExists("dataset '" + name + "' already exists");
    const fs::path stage = fs::path(dir_) / "uploads" / name;
    std::error_code ec;
    fs::create_directories(stage, ec);
    if (ec) return IoError("cannot create " + stage.string() + ": " + ec.message());
    DNND_RETURN_IF_ERROR(CommitTempFile(r.body_file, (stage / part).string()));
    return HttpResponse::Json(201, {{"dataset", name}, {"part", part}, {"bytes", r.body_file_bytes}});
  }

  Result<HttpResponse> CreateDataset(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(json::object body, JsonObjectBody(r, max_json_));
    JsonFields f{body, ""};
    DNND_RETURN_IF_ERROR(f.RejectUnknown({"name", "format"}));
    DNND_ASSIGN_OR_RETURN(std::string name, f.String("name", "", true));
    DNND_RETURN_IF_ERROR(CheckName("dataset", name));
    DNND_ASSIGN_OR_RETURN(std::string format, f.String("format", "", true));
    if (format != "idx" && format != "npy" && format != "npz" && format != "csv")
      return InvalidArgument("unknown dataset format '" + format + "'; expected idx, npy, npz or csv");
    if (store_->GetDataset(name).ok()) return AlreadyExists("dataset '" + name + "' already exists");
    std::lock_guard lock(dataset_mu_);  // one registration at a time: the rename below
    const fs::path stage = fs::path(dir_) / "uploads" / name, final_dir = fs::path(dir_) / "datasets" / name;
    const auto [train_parts, test_parts] = PartsFor(format);
    json::object files;
    for (const auto& p : train_parts) {
      if (!fs::exists(stage / p))
        return InvalidArgument("dataset '" + name + "' (" + format + ") needs the file part '" + p +
                               "': PUT /api/v1/datasets/" + name + "/files/" + p);
      files[p] = p;
    }
    // A missing part (above) keeps what is staged, as its message says; a
    // registration refused from here on removes the staged files (the
    // client uploads them again, fixed): a rejected upload leaves nothing.
    RemoveUnlessKept staged(stage.string());
    bool has_test = true;
    for (const auto& p : test_parts) has_test &= fs::exists(stage / p);
    if (has_test)
      for (const auto& p : test_parts) files[p] = p;
    // Validate with exactly the readers a job will use, through a [data] section.
    DNND_ASSIGN_OR_RETURN(Config data_cfg, DataConfig(format, stage.string(), files));
    auto train = data::LoadTrainingSet(data_cfg, dataset_limits_);
    if (!train.ok()) return InvalidArgument("invalid dataset '" + name + "': " + train.status().message());
    auto test = data::LoadTestSet(data_cfg, dataset_limits_);
    if (!test.ok()) return InvalidArgument("invalid dataset '" + name + "': " + test.status().message());
    if (train->labels.empty()) return InvalidArgument("invalid dataset '" + name + "': labels must be class indices");
    if (test->has_value() && (*test)->sample_shape != train->sample_shape)
      return InvalidArgument("invalid dataset '" + name + "': test samples are " +
                             ShapeToString((*test)->sample_shape) + " but training samples are " +
                             ShapeToString(train->sample_shape));
    DatasetRecord d;
    d.name = name;
    d.format = format;
    d.train_samples = train->size();
    d.test_samples = test->has_value() ? (*test)->size() : 0;
    d.num_classes = std::max(train->num_classes, test->has_value() ? (*test)->num_classes : 0);
    d.sample_shape = json::serialize(ShapeJson(train->sample_shape));
    json::array hist;
    for (auto c : train->ClassHistogram()) hist.push_back(c);
    d.histogram = json::serialize(hist);
    d.files = json::serialize(files);
    d.created = UtcNow();
    // Files first, then the row: a crash in between leaves an orphan
    // directory (replaced by the next registration of the name), never a row
    // without files.
    std::error_code ec;
    fs::remove_all(final_dir, ec);
    fs::create_directories(final_dir.parent_path(), ec);
    fs::rename(stage, final_dir, ec);
    if (ec) return IoError("cannot move " + stage.string() + " to " + final_dir.string() + ": " + ec.message());
    staged.Keep();  // moved: a new upload of the name may stage there again
    RemoveUnlessKept unregistered(final_dir.string());
    d.bytes = DirBytes(final_dir);
    DNND_RETURN_IF_ERROR(store_->PutDataset(d));
    unregistered.Keep();
    Log(LogLevel::kInfo, "controller", "dataset registered", {{"name", name}, {"train_samples", d.train_samples}});
    return HttpResponse::Json(201, DatasetJson(d));
  }

  // A [data] section reading `files` from `dir` in `format`.
  static Result<Config> DataConfig(const std::string& format, const std::string& dir, const json::object& files) {
    std::string t = "[data]\nformat = " + TomlQuote(format) + "\n";
    auto path = [&](const char* part) {
      return files.contains(part) ? TomlQuote(dir + "/" + part) : std::string("\"\"");
    };
    if (format == "idx" || format == "npy") {
      t += "train_images = " + path("train-images") + "\ntrain_labels = " + path("train-labels") + "\n";
      t += "test_images = " + path("test-images") + "\ntest_labels = " + path("test-labels") + "\n";
    } else {
      t += "train_file = " + path("train") + "\ntest_file = " + path("test") + "\n";
    }
    return Config::FromString(t, "dataset");
  }

  Result<HttpResponse> ListDatasets(const HttpRequest&) {
    DNND_ASSIGN_OR_RETURN(auto list, store_->ListDatasets());
    json::array a;
    for (const auto& d : list) a.push_back(DatasetJson(d));
    return HttpResponse::Json(200, {{"datasets", a}});
  }

  Result<HttpResponse> GetDataset(const HttpRequest& r) {
    DNND_RETURN_IF_ERROR(CheckName("dataset", r.params.at("name")));
    DNND_ASSIGN_OR_RETURN(auto d, store_->GetDataset(r.params.at("name")));
    return HttpResponse::Json(200, DatasetJson(d));
  }

  Result<HttpResponse> DeleteDataset(const HttpRequest& r) {
    const std::string name = r.params.at("name");
    DNND_RETURN_IF_ERROR(CheckName("dataset", name));
    std::lock_guard lock(dataset_mu_);
    DNND_ASSIGN_OR_RETURN(auto users, store_->DeleteDataset(name));
    if (!users.empty()) {
      std::string ids;
      for (auto id : users) ids += (ids.empty() ? "" : ", ") + std::to_string(id);
      return HttpResponse::Error(409, "in_use", "dataset '" + name + "' is used by queued or running job(s) " + ids);
    }
    {  // its memory goes with it (a new dataset of the name has another key anyway)
      std::lock_guard loaded_lock(loaded_mu_);
      std::erase_if(loaded_, [&](const auto& entry) { return entry.first.rfind(name + "|", 0) == 0; });
    }
    std::error_code ec;
    fs::remove_all(fs::path(dir_) / "datasets" / name, ec);
    return HttpResponse::Json(200, {{"deleted", name}});
  }

  // ---- models -------------------------------------------------------------
  Result<HttpResponse> CreateModel(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(json::object body, JsonObjectBody(r, max_json_));
    JsonFields f{body, ""};
    DNND_RETURN_IF_ERROR(f.RejectUnknown({"name", "spec"}));
    DNND_ASSIGN_OR_RETURN(std::string name, f.String("name", "", true));
    DNND_RETURN_IF_ERROR(CheckName("model", name));
    const json::value* spec_v = body.if_contains("spec");
    if (!spec_v) return InvalidArgument("missing field 'spec' (the model spec: TOML text or a JSON object)");
    std::string toml_text;
    if (spec_v->is_string()) {
      toml_text = std::string(spec_v->get_string());
    } else if (spec_v->is_object()) {
      const json::value* inner = spec_v->get_object().if_contains("model");
      toml_text = "model = " + JsonToToml(inner ? *inner : *spec_v) + "\n";
    } else {
      return InvalidArgument("field 'spec' must be TOML text or a JSON object");
    }
    auto spec = ParseModelSpecText(toml_text, "spec");
    if (!spec.ok()) return InvalidArgument("invalid model spec: " + spec.status().message());
    auto model = BuildModel(*spec, 0, model_limits_);
    if (!model.ok()) return InvalidArgument("invalid model spec: " + model.status().message());
    ModelRecord m{name, ModelSpecToToml(*spec), (*model)->ParameterCount(), UtcNow()};
    DNND_RETURN_IF_ERROR(store_->PutModel(m));
    return HttpResponse::Json(201, ModelJson(m));
  }

  static json::object ModelJson(const ModelRecord& m) {
    json::object o{{"name", m.name}, {"parameters", m.parameters}, {"created", m.created}, {"spec", m.spec}};
    auto spec = ParseModelSpecText(m.spec, m.name);
    if (spec.ok()) o["input"] = ShapeJson(spec->input);
    return o;
  }

  Result<HttpResponse> ListModels(const HttpRequest&) {
    DNND_ASSIGN_OR_RETURN(auto list, store_->ListModels());
    json::array a;
    for (const auto& m : list) a.push_back(ModelJson(m));
    return HttpResponse::Json(200, {{"models", a}});
  }

  Result<HttpResponse> GetModel(const HttpRequest& r) {
    DNND_RETURN_IF_ERROR(CheckName("model", r.params.at("name")));
    DNND_ASSIGN_OR_RETURN(auto m, store_->GetModel(r.params.at("name")));
    return HttpResponse::Json(200, ModelJson(m));
  }

  // The newest succeeded job's trained weights for this model.
  Result<HttpResponse> ModelCheckpoint(const HttpRequest& r) {
    const std::string name = r.params.at("name");
    DNND_RETURN_IF_ERROR(CheckName("model", name));
    DNND_RETURN_IF_ERROR(store_->GetModel(name).status());
    DNND_ASSIGN_OR_RETURN(auto newest, store_->NewestSucceededJob(name));
    if (newest) return Checkpoint(*newest);
    return NotFound("model '" + name + "' has no succeeded job yet");
  }

  // ---- jobs ---------------------------------------------------------------
  Result<HttpResponse> CreateJob(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(json::object body, JsonObjectBody(r, max_json_));
    JsonFields f{body, ""};
    DNND_RETURN_IF_ERROR(f.RejectUnknown(
        {"model", "dataset", "epochs", "batch", "lr", "optimizer", "workers", "servers", "mode",
         "kavg_steps", "seed", "limit_train", "limit_test", "eval_every", "goal_accuracy",
         "lr_schedule", "elastic", "min_workers", "max_workers", "normalize"}));
    DNND_ASSIGN_OR_RETURN(std::string model, f.String("model", "", true));
    DNND_ASSIGN_OR_RETURN(std::string dataset, f.String("dataset", "", true));
    DNND_RETURN_IF_ERROR(CheckName("model", model));
    DNND_RETURN_IF_ERROR(CheckName("dataset", dataset));
    auto m = store_->GetModel(model);
    if (!m.ok()) return InvalidArgument("unknown model '" + model + "'");
    auto d = store_->GetDataset(dataset);
    if (!d.ok()) return InvalidArgument("unknown dataset '" + dataset + "'");
    DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpecText(m->spec, model));
    json::object p;
    const int64_t max_workers = cfg_.GetInt("controller.max_workers");
    DNND_ASSIGN_OR_RETURN(p["epochs"], f.Int("epochs", 5, 1, 100000));
    DNND_ASSIGN_OR_RETURN(p["batch"], f.Int("batch", 64, 1, 1 << 20));
    DNND_ASSIGN_OR_RETURN(p["workers"], f.Int("workers", 2, 1, max_workers));
    // All of a job's workers run at once: more than the pool has would wait forever.
    const int64_t capacity = std::max(pool_.Capacity(), local_workers_);
    if (p["workers"].as_int64() > capacity)
      return InvalidArgument("the job asks for " + std::to_string(p["workers"].as_int64()) +
                             " workers but the pool has " + std::to_string(capacity) +
                             " (GET /api/v1/nodes; start more workers with worker.controller set)");
    // Elastic: the scheduler changes the job's workers between epochs
    // (KubeML's throughput policy, roles/elastic_policy.h) within
    // [min_workers, max_workers]; `workers` is where it starts.
    DNND_ASSIGN_OR_RETURN(const bool elastic, f.Bool("elastic", false));
    if (elastic) {
      p["elastic"] = true;
      DNND_ASSIGN_OR_RETURN(p["min_workers"], f.Int("min_workers", 1, 1, max_workers));
      // By default it may grow into whatever the pool has then (scaling the
      // worker Deployment up is enough), up to controller.max_workers.
      DNND_ASSIGN_OR_RETURN(p["max_workers"], f.Int("max_workers", max_workers, 1, max_workers));
      const int64_t lo = p["min_workers"].as_int64(), hi = p["max_workers"].as_int64(), w = p["workers"].as_int64();
      if (!(lo <= w && w <= hi))
        return InvalidArgument("an elastic job needs min_workers <= workers <= max_workers; got " + std::to_string(lo) +
                               " <= " + std::to_string(w) + " <= " + std::to_string(hi));
    } else if (body.contains("min_workers") || body.contains("max_workers")) {
      return InvalidArgument("fields 'min_workers' and 'max_workers' need \"elastic\": true");
    }
    DNND_ASSIGN_OR_RETURN(p["servers"], f.Int("servers", 1, 1, 16));
    if (ps_ports_ && p["servers"].as_int64() > ps_ports_->second - ps_ports_->first + 1)
      return InvalidArgument("the job asks for " + std::to_string(p["servers"].as_int64()) +
                             " parameter servers but controller.ps_ports has " +
                             std::to_string(ps_ports_->second - ps_ports_->first + 1) + " ports");
    DNND_ASSIGN_OR_RETURN(p["kavg_steps"], f.Int("kavg_steps", 8, 1, 1000000));
    DNND_ASSIGN_OR_RETURN(p["seed"], f.Int("seed", 42, 0, int64_t{1} << 53));
    DNND_ASSIGN_OR_RETURN(p["limit_train"], f.Int("limit_train", 0, 0, int64_t{1} << 40));
    DNND_ASSIGN_OR_RETURN(p["limit_test"], f.Int("limit_test", 0, 0, int64_t{1} << 40));
    DNND_ASSIGN_OR_RETURN(p["eval_every"], f.Int("eval_every", 1, 1, 100000));
    DNND_ASSIGN_OR_RETURN(double goal, f.Number("goal_accuracy", 0));
    if (!(goal >= 0 && goal <= 1))
      return InvalidArgument("field 'goal_accuracy' is a fraction in [0, 1] (0.88 = 88 %), not " + std::to_string(goal));
    if (goal > 0) p["goal_accuracy"] = goal;
    DNND_ASSIGN_OR_RETURN(std::string schedule, f.String("lr_schedule", "cosine"));
    if (schedule != "constant" && schedule != "cosine" && schedule != "step")
      return InvalidArgument("field 'lr_schedule' is '" + schedule + "'; expected constant, cosine or step");
    p["lr_schedule"] = schedule;
    DNND_ASSIGN_OR_RETURN(std::string mode, f.String("mode", "sync"));
    if (mode != "sync" && mode != "async" && mode != "kavg")
      return InvalidArgument("field 'mode' is '" + mode + "'; expected sync, async or kavg");
    p["mode"] = mode;
    DNND_ASSIGN_OR_RETURN(std::string optimizer, f.String("optimizer", spec.optimizer.type));
    if (optimizer != "sgd" && optimizer != "adam" && optimizer != "adamw")
      return InvalidArgument("field 'optimizer' is '" + optimizer + "'; expected sgd, adam or adamw");
    p["optimizer"] = optimizer;
    DNND_ASSIGN_OR_RETURN(double lr, f.Number("lr", spec.optimizer.lr));
    if (!(lr > 0 && lr < 100)) return InvalidArgument("field 'lr' must be in (0, 100)");
    p["lr"] = lr;
    // Fail now, not inside training, when model and data disagree.
    const json::value shape = ParseJsonText(d->sample_shape);
    if (json::serialize(shape) != json::serialize(ShapeJson(spec.input)))
      return InvalidArgument("model '" + model + "' takes samples of shape " + ShapeToString(spec.input) +
                             " but dataset '" + dataset + "' has " + d->sample_shape);
    const int64_t train_n = p["limit_train"].as_int64() > 0 ? std::min(p["limit_train"].as_int64(), d->train_samples)
                                                            : d->train_samples;
    const int64_t most_workers = elastic ? p["max_workers"].as_int64() : p["workers"].as_int64();
    if (train_n < most_workers)
      return InvalidArgument("dataset '" + dataset + "' has " + std::to_string(train_n) + " training samples for " +
                             std::to_string(most_workers) + " workers");
    // Inputs are standardised with the training set's own mean and standard
    // deviation, recorded in the job so predictions use the same ones.
    DNND_ASSIGN_OR_RETURN(const bool normalize, f.Bool("normalize", true));
    if (normalize) {
      DNND_ASSIGN_OR_RETURN(auto loaded, LoadDataset(dataset));
      const auto [mean, stddev] = PixelStats(loaded->train.Take(p["limit_train"].as_int64()));
      p["normalize_mean"] = mean;
      p["normalize_std"] = stddev;
    }
    DNND_ASSIGN_OR_RETURN(int64_t id, store_->CreateJob(model, dataset, json::serialize(p)));
    JobLog(id, "queued: model " + model + ", dataset " + dataset + ", " + SettingsText(p));
    cv_.notify_all();
    DNND_ASSIGN_OR_RETURN(auto job, store_->GetJob(id));
    return HttpResponse::Json(201, JobJson(job));
  }

  json::object JobJson(const JobRecord& j) {
    json::object o{{"id", j.id},          {"model", j.model},       {"dataset", j.dataset},
                   {"state", j.state},    {"reason", j.reason},     {"epoch", j.epoch},
                   {"step", j.step},      {"total_steps", j.total_steps}, {"attempts", j.attempts},
                   {"created", j.created}, {"started", j.started},   {"finished", j.finished},
                   {"params", ParseJsonText(j.params)}};
    int64_t step = j.step, total = j.total_steps;
    json::value eta = nullptr;
    if (std::shared_ptr<LiveProgress> live = j.state == kJobRunning ? Live(j.id) : nullptr) {
      step = std::max(step, live->step.load());
      total = std::max(total, live->total.load());
      const double secs = NowSeconds() - live->start_s.load();
      const int64_t done = live->start_step >= 0 ? step - live->start_step : 0;
      if (done > 0 && total > step) eta = secs / done * static_cast<double>(total - step);
    }
    if (j.state == kJobSucceeded) {
      step = std::max(step, total);
      eta = 0.0;
    }
    o["step"] = step;
    o["total_steps"] = total;
    o["progress"] = total > 0 ? 100.0 * static_cast<double>(step) / static_cast<double>(total) : 0.0;
    o["eta_seconds"] = eta;
    // Workers the job runs on now (an elastic job's current segment).
    if (std::shared_ptr<LiveProgress> live = j.state == kJobRunning ? Live(j.id) : nullptr)
      o["parallelism"] = live->workers.load();
    json::array h;
    for (const auto& e : j.history) {
      json::object x{{"epoch", e.epoch}, {"train_loss", e.train_loss}, {"seconds", e.seconds},
                     {"samples_per_s", e.samples_per_s}};
      if (e.parallelism > 0) x["parallelism"] = e.parallelism;
      if (e.evaluated) {
        x["test_loss"] = e.test_loss;
        x["test_accuracy"] = e.test_accuracy;
      }
      h.push_back(std::move(x));
    }
    o["history"] = std::move(h);
    return o;
  }

  static Result<int64_t> JobId(const HttpRequest& r) {
    const std::string& s = r.params.at("id");
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
      return InvalidArgument("invalid job id '" + s + "': expected a positive integer");
    return std::stoll(s);
  }

  // The list is the dashboard's and every monitoring script's poll. It only
  // changes with a store write or a running job's progress report, so the
  // answer is kept until one happens (a running job's ETA is then as of its
  // last report, at most a heartbeat old) and a poll costs no query.
  Result<HttpResponse> ListJobs(const HttpRequest&) {
    // Read before the query: a change after this point is never cached as older than it.
    const std::pair<uint64_t, uint64_t> version{store_->Generation(), live_version_.load()};
    {
      std::lock_guard lock(jobs_list_mu_);
      if (jobs_list_ && jobs_list_->first == version) return jobs_list_->second;
    }
    DNND_ASSIGN_OR_RETURN(auto list, store_->ListJobs());
    json::array a;
    for (const auto& j : list) a.push_back(JobJson(j));
    HttpResponse answer = HttpResponse::Json(200, {{"jobs", a}});
    std::lock_guard lock(jobs_list_mu_);
    jobs_list_.emplace(version, answer);
    return answer;
  }

  Result<HttpResponse> GetJob(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
    DNND_ASSIGN_OR_RETURN(auto j, store_->GetJob(id));
    return HttpResponse::Json(200, JobJson(j));
  }

  Result<HttpResponse> CancelJob(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
    DNND_ASSIGN_OR_RETURN(auto j, store_->GetJob(id));
    if (j.state != kJobQueued && j.state != kJobRunning)
      return HttpResponse::Error(409, "not_active", "job " + std::to_string(id) + " is already " + j.state);
    DNND_ASSIGN_OR_RETURN(bool was_queued, store_->CancelIfQueued(id));
    if (was_queued) {
      JobLog(id, "cancelled while queued");
    } else {
      std::lock_guard lock(mu_);
      auto it = jobs_.find(id);
      if (it != jobs_.end()) it->second->cancel = true;
      else cancel_waiting_.insert(id);  // running before a restart, waiting for its workers
      cv_.notify_all();
    }
    return HttpResponse::Json(202, {{"id", id}, {"cancelling", true}});
  }

  // ?offset=N: the log from byte N (at most 4 MiB); X-Log-Offset is where
  // the next request continues, X-Job-State lets a follower stop once the
  // job is over and the log drained (`dnnd ctl job logs -f` polls this).
  Result<HttpResponse> JobLogs(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
    DNND_ASSIGN_OR_RETURN(auto job, store_->GetJob(id));
    uint64_t offset = 0;
    if (auto it = r.query.find("offset"); it != r.query.end()) {
      const std::string& s = it->second;
      if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
        return InvalidArgument("query parameter 'offset' is '" + s + "'; expected a byte offset (0, 1, ...)");
      offset = std::stoull(s);
    }
    auto text = ReadFileRange(JobDir(id) + "/job.log", offset, 4 << 20);
    if (!text.ok() && text.status().code() != StatusCode::kNotFound) return text.status();
    std::string bytes = text.ok() ? std::move(text).value() : std::string();
    HttpResponse out = HttpResponse::Text(200, bytes);
    out.headers.push_back({"X-Log-Offset", std::to_string(offset + bytes.size())});
    out.headers.push_back({"X-Job-State", job.state});
    return out;
  }

  // Only a finished job: its store rows and its directory (log, checkpoints, model).
  Result<HttpResponse> DeleteJob(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
    DNND_ASSIGN_OR_RETURN(bool deleted, store_->DeleteFinishedJob(id));
    if (!deleted)
      return HttpResponse::Error(409, "job_active", "job " + std::to_string(id) +
                                                        " is queued or running; cancel it first (POST /api/v1/jobs/" +
                                                        std::to_string(id) + "/cancel)");
    std::error_code ec;
    fs::remove_all(JobDir(id), ec);
    if (ec) Log(LogLevel::kWarn, "controller", "cannot remove a deleted job's files", {{"job", id}, {"error", ec.message()}});
    return HttpResponse::Json(200, {{"deleted", id}});
  }

  Result<HttpResponse> JobCheckpoint(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
    DNND_RETURN_IF_ERROR(store_->GetJob(id).status());
    return Checkpoint(id);
  }

  Result<HttpResponse> Checkpoint(int64_t id) {
    const std::string path = CheckpointPath(id);
    if (!fs::exists(path)) return NotFound("job " + std::to_string(id) + " has no trained checkpoint yet");
    DNND_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
    HttpResponse out = HttpResponse::Text(200, std::move(bytes), "application/octet-stream");
    out.headers.push_back({"Content-Disposition", "attachment; filename=\"job-" + std::to_string(id) +
                                                      ".safetensors\""});
    return out;
  }

  // ---- the pool -----------------------------------------------------------
  Result<HttpResponse> NodeHeartbeat(const HttpRequest& r) {
    const std::string name = r.params.at("name");
    DNND_RETURN_IF_ERROR(CheckName("node", name));
    DNND_ASSIGN_OR_RETURN(json::object body, JsonObjectBody(r, max_json_));
    DNND_ASSIGN_OR_RETURN(pool::NodeReport report, pool::NodeReportFromJson(body));
    pool::NodeOrder order = pool_.Heartbeat(name, r.remote, report);
    if (report.state == pool::TaskState::kSucceeded || report.state == pool::TaskState::kFailed) cv_.notify_all();
    return HttpResponse::Json(200, pool::ToJson(order));
  }

  Result<HttpResponse> ListNodes(const HttpRequest&) {
    json::array a;
    for (const auto& n : pool_.Nodes()) {
      json::object o{{"name", n.name},       {"state", n.state}, {"threads", n.threads},
                     {"address", n.address}, {"last_seen_seconds", n.last_seen_seconds}};
      o["job"] = n.job > 0 ? json::value(n.job) : json::value(nullptr);
      o["index"] = n.index >= 0 ? json::value(n.index) : json::value(nullptr);
      a.push_back(std::move(o));
    }
    return HttpResponse::Json(200, {{"nodes", a}, {"capacity", pool_.Capacity()}, {"idle", pool_.IdleCount()}});
  }

  // The trained model, from the job's reporting worker (only its current
  // attempt: a worker the job has moved on from cannot overwrite it).
  Result<HttpResponse> UploadModel(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
    auto attempt = r.query.find("attempt");
    if (attempt == r.query.end() || !pool_.IsCurrentAttempt(id, attempt->second))
      return HttpResponse::Error(409, "stale_attempt", "job " + std::to_string(id) + " is not running that attempt");
    // Streamed to r.body_file (HandleUpload), like a dataset part.
    if (r.body_file.empty() || r.body_file_bytes == 0) return InvalidArgument("empty model upload");
    std::error_code ec;
    fs::create_directories(JobDir(id) + "/model", ec);
    DNND_RETURN_IF_ERROR(CommitTempFile(r.body_file, JobDir(id) + "/model/model.safetensors"));
    JobLog(id, "trained model received (" + std::to_string(r.body_file_bytes) + " bytes)");
    return HttpResponse::Json(201, {{"job", id}, {"bytes", r.body_file_bytes}});
  }

  WorkerPool::Listener PoolListener() {
    WorkerPool::Listener l;
    l.on_step = [this](int64_t job, int64_t step, int64_t total) {
      std::shared_ptr<LiveProgress> live = Live(job);
      if (!live) return;
      // The rate's origin: the first report (a few steps in). Where the
      // attempt started is logged by StartJob, from its servers.
      if (live->start_step.load() < 0) {
        live->start_s = NowSeconds();
        live->start_step = step;
      }
      live->step = step;
      live->total = total;
      ++live_version_;
    };
    l.on_epoch = [this](int64_t job, const pool::EpochReport& e) {
      std::shared_ptr<LiveProgress> live = Live(job);
      EpochRow row{e.epoch,     e.train_loss, e.evaluated, e.test_loss, e.test_accuracy,
                   e.seconds,   e.samples_per_s, live ? live->workers.load() : 0};
      if (live) {
        std::lock_guard lock(live->mu);
        if (e.epoch >= live->last_epoch.epoch) live->last_epoch = e;
      }
      RecordJobMetrics(job, e);
      Status s = store_->RecordEpoch(job, row, e.step, e.total_steps);
      if (!s.ok()) Log(LogLevel::kError, "controller", "cannot record epoch", {{"job", job}, {"error", s.ToString()}});
      char line[256];
      std::snprintf(line, sizeof line, "epoch %lld: train loss %.4f, %.1f s, %.0f samples/s",
                    static_cast<long long>(e.epoch), e.train_loss, e.seconds, e.samples_per_s);
      std::string text = line;
      if (e.evaluated) {
        std::snprintf(line, sizeof line, ", test loss %.4f, test accuracy %.2f%%", e.test_loss, 100 * e.test_accuracy);
        text += line;
      }
      JobLog(job, text);
    };
    return l;
  }

  // The job series on /metrics (KubeML's history, per job): one set of
  // gauges per job, updated at every epoch.
  static void RecordJobMetrics(int64_t job, const pool::EpochReport& e) {
    MetricsRegistry& m = DefaultMetrics();
    const MetricLabels l = {{"job", std::to_string(job)}};
    m.Gauge("dnnd_job_epoch", "epochs completed by the job", l).Set(static_cast<double>(e.epoch));
    m.Gauge("dnnd_job_train_loss", "mean training loss of the job's last epoch", l).Set(e.train_loss);
    m.Gauge("dnnd_job_epoch_duration_seconds", "wall time of the job's last epoch", l).Set(e.seconds);
    m.Gauge("dnnd_job_samples_per_second", "training throughput of the job's last epoch (per worker)", l)
        .Set(e.samples_per_s);
    if (e.evaluated) {
      m.Gauge("dnnd_job_validation_loss", "test-set loss after the job's last evaluated epoch", l).Set(e.test_loss);
      m.Gauge("dnnd_job_validation_accuracy", "test-set accuracy after the job's last evaluated epoch", l)
          .Set(e.test_accuracy);
    }
  }

  // Jobs by state, the queue, nodes by state (once per scheduler pass).
  void RecordPoolMetrics(const std::vector<JobRecord>& jobs) {
    MetricsRegistry& m = DefaultMetrics();
    std::map<std::string, int64_t> by_state = {{kJobQueued, 0}, {kJobRunning, 0}, {kJobSucceeded, 0},
                                               {kJobFailed, 0}, {kJobCancelled, 0}};
    for (const auto& j : jobs) ++by_state[j.state];
    for (const auto& [state, n] : by_state)
      m.Gauge("dnnd_controller_jobs", "jobs in the store by state", {{"state", state}}).Set(static_cast<double>(n));
    m.Gauge("dnnd_controller_queue_length", "jobs waiting for workers").Set(static_cast<double>(by_state[kJobQueued]));
    queued_ = by_state[kJobQueued];
    std::map<std::string, int64_t> nodes = {{"idle", 0}, {"busy", 0}, {"lost", 0}};
    for (const auto& n : pool_.Nodes()) ++nodes[n.state];
    for (const auto& [state, n] : nodes)
      m.Gauge("dnnd_controller_nodes", "pool workers by state", {{"state", state}}).Set(static_cast<double>(n));
    std::lock_guard lock(mu_);
    for (const auto& [id, run] : jobs_)
      m.Gauge("dnnd_job_parallelism", "workers the job runs on", {{"job", std::to_string(id)}})
          .Set(static_cast<double>(run->workers));
  }

  std::shared_ptr<LiveProgress> Live(int64_t job) {
    std::lock_guard lock(live_mu_);
    auto it = live_.find(job);
    return it == live_.end() ? nullptr : it->second;
  }

  // Pool workers inside this process (controller.local_workers), talking to
  // it through its HTTP API like any other node.
  Status StartLocalWorkers() {
    if (local_workers_ == 0) return Status::Ok();
    if (http_address_.empty()) return InvalidArgument("controller.local_workers needs http.listen");
    // The workers share the cores.
    SetThreads(std::max(1, GetThreads() / static_cast<int>(local_workers_)));
    for (int64_t i = 0; i < local_workers_; ++i) {
      PoolWorkerOptions o;
      o.controller = http_address_;
      o.name = cfg_.GetString("node.name") + "-local-" + std::to_string(i);
      o.api_token = secrets_.api_token;
      o.wire_key = secrets_.wire_key;
      o.heartbeat = std::chrono::milliseconds(std::min<int64_t>(500, cfg_.GetInt("worker.heartbeat_ms")));
      o.threads = GetThreads();
      o.scratch_dir = dir_ + "/local-workers/" + std::to_string(i);
      o.progress = cfg_.GetString("train.progress");  // worker 0's bar on this process's terminal
      DNND_ASSIGN_OR_RETURN(o.rpc, rpc::RpcClientOptions::FromConfig(cfg_, "worker"));
      local_.push_back(std::make_unique<PoolWorker>(std::move(o)));
    }
    for (auto& w : local_) local_threads_.emplace_back([p = w.get()] { (void)p->Run(); });
    return Status::Ok();
  }

  // ---- the shard service (wire protocol) ----------------------------------
  std::string ServiceHost() const {
    std::string listen = cfg_.GetString("controller.wire_listen");
    if (listen.empty()) listen = cfg_.GetString("http.listen");
    const size_t colon = listen.rfind(':');
    return colon == std::string::npos ? listen : listen.substr(0, colon);
  }

  Status StartShardService() {
    std::string listen = cfg_.GetString("controller.wire_listen");
    if (listen.empty()) listen = ServiceHost() + ":0";
    DNND_ASSIGN_OR_RETURN(auto rpc, rpc::RpcServerOptions::FromConfig(cfg_, listen, "controller"));
    rpc.token = secrets_.wire_key;
    shards_ = std::make_unique<rpc::RpcServer>(std::move(rpc));
    shards_->Handle(pool::kShard, "shard",
                    [this](const wire::Message& m, const rpc::PeerInfo&) { return Shard(m); });
    DNND_RETURN_IF_ERROR(shards_->Start());
    Log(LogLevel::kInfo, "controller", "shard service listening", {{"address", shards_->address()}});
    return Status::Ok();
  }

  struct LoadedDataset {
    data::Dataset train;
    std::optional<data::Dataset> test;
  };

  // Loaded datasets are kept for the next request (every worker of a job
  // asks for its part at the same moment); two at most. Keyed by what the
  // name holds now, not by the name: a dataset deleted and registered again
  // under its name is another dataset (new files, new FileVersions).
  Result<std::shared_ptr<const LoadedDataset>> LoadDataset(const std::string& name) {
    DNND_ASSIGN_OR_RETURN(auto rec, store_->GetDataset(name));
    const std::string dir = dir_ + "/datasets/" + name;
    const json::object files = ParseJsonText(rec.files).as_object();
    std::string key = name + "|" + rec.created;
    for (const auto& [part, file] : files) {
      if (!file.is_string()) return Corruption("dataset '" + name + "': the store's file list is not names");
      DNND_ASSIGN_OR_RETURN(std::string version, FileVersion(dir + "/" + std::string(file.get_string())));
      key += "|" + std::string(part) + "=" + version;
    }
    std::lock_guard lock(loaded_mu_);
    for (auto& [k, d] : loaded_)
      if (k == key) return std::shared_ptr<const LoadedDataset>(d);
    DNND_ASSIGN_OR_RETURN(Config dc, DataConfig(rec.format, dir, files));
    auto d = std::make_shared<LoadedDataset>();
    DNND_ASSIGN_OR_RETURN(d->train, data::LoadTrainingSet(dc, dataset_limits_));
    DNND_ASSIGN_OR_RETURN(d->test, data::LoadTestSet(dc, dataset_limits_));
    loaded_.insert(loaded_.begin(), {key, d});
    if (loaded_.size() > 2) loaded_.pop_back();
    return std::shared_ptr<const LoadedDataset>(d);
  }

  Result<wire::Message> Shard(const wire::Message& m) {
    DNND_ASSIGN_OR_RETURN(std::string name, m.fields.GetString("dataset"));
    DNND_RETURN_IF_ERROR(CheckName("dataset", name));
    DNND_ASSIGN_OR_RETURN(std::string split, m.fields.GetString("split"));
    const int64_t index = m.fields.IntOr("index", 0), count = m.fields.IntOr("count", 1), limit = m.fields.IntOr("limit", 0);
    DNND_ASSIGN_OR_RETURN(auto d, LoadDataset(name));
    if (split == "test") {
      if (!d->test) {
        wire::Message none = pool::ShardMessage(d->train.EmptyLike());
        none.fields.SetInt("present", 0);
        return none;
      }
      return pool::ShardMessage(d->test->Take(limit));
    }
    if (split != "train") return InvalidArgument("shard split must be train or test, not '" + split + "'");
    data::Dataset all = d->train.Take(limit);
    if (count < 1 || index < 0 || index >= count || all.size() < count)
      return InvalidArgument("cannot cut " + std::to_string(all.size()) + " samples of '" + name + "' into part " +
                             std::to_string(index) + " of " + std::to_string(count));
    return pool::ShardMessage(all.Part(index, count));
  }

  // ---- running ------------------------------------------------------------
  std::string JobDir(int64_t id) const { return dir_ + "/jobs/" + std::to_string(id); }
  // The trained weights a succeeded job leaves (served by /checkpoint, used by /predict).
  std::string CheckpointPath(int64_t id) const { return JobDir(id) + "/model/model.safetensors"; }

  // Appends a timestamped line to the job's log (one write() per line,
  // O_APPEND: lines from any thread stay whole).
  void JobLog(int64_t id, const std::string& line) {
    std::error_code ec;
    fs::create_directories(JobDir(id), ec);
    const std::string text = UtcNow() + " " + line + "\n";
    int fd = ::open((JobDir(id) + "/job.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    [[maybe_unused]] ssize_t n = ::write(fd, text.data(), text.size());
    ::close(fd);
  }

  static json::object Params(const JobRecord& j) {
    json::value v = ParseJsonText(j.params);
    return v.is_object() ? v.get_object() : json::object{};
  }

  // What every worker of the job runs: the model with the job's optimizer,
  // the training options, and the data options (the data itself comes from
  // the shard service).
  // An elastic job's segment trains one epoch: [segment.epoch, segment.epoch + 1).
  Result<std::string> TaskConfig(const JobRecord& j, const JobSegment* segment) {
    DNND_ASSIGN_OR_RETURN(auto m, store_->GetModel(j.model));
    const json::object p = Params(j);
    if (p.empty()) return Corruption("job " + std::to_string(j.id) + " has unreadable parameters");
    DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpecText(m.spec, j.model));
    spec.optimizer.type = std::string(p.at("optimizer").as_string());
    spec.optimizer.lr = static_cast<float>(p.at("lr").to_number<double>());
    auto i = [&](const char* k, int64_t def = 0) {
      return std::to_string(p.contains(k) ? p.at(k).to_number<int64_t>() : def);
    };
    std::string t;
    auto num = [&](const char* k, double def) {
      std::ostringstream o;
      o.precision(9);
      o << (p.contains(k) ? p.at(k).to_number<double>() : def);
      std::string v = o.str();
      return v.find_first_of(".e") == std::string::npos ? v + ".0" : v;
    };
    t += "[data]\nlimit_train = " + i("limit_train") + "\nlimit_test = " + i("limit_test") +
         "\nnormalize_mean = " + num("normalize_mean", 0) + "\nnormalize_std = " + num("normalize_std", 1) + "\n";
    t += "[train]\nepochs = " + i("epochs") + "\nbatch_size = " + i("batch") + "\nseed = " + i("seed") +
         "\neval_every_epochs = " + i("eval_every", 1) + "\nprogress = \"none\"\nlr_schedule = " +
         TomlQuote(p.contains("lr_schedule") ? std::string(p.at("lr_schedule").as_string()) : "constant") + "\n";
    if (p.contains("goal_accuracy")) t += "goal_accuracy = " + num("goal_accuracy", 0) + "\n";
    if (segment)
      t += "start_epoch = " + std::to_string(segment->epoch) + "\nstart_step = " + std::to_string(segment->step) +
           "\nstop_epoch = " + std::to_string(segment->epoch + 1) + "\n";
    t += ModelSpecToToml(spec);
    return t;
  }

  struct RunningJob {
    JobRecord record;  // as started (no history)
    json::object params;
    std::vector<std::unique_ptr<ParameterServer>> servers;
    std::vector<int64_t> ports;
    int64_t workers = 0;
    bool cancel = false;
    // Elastic jobs run one epoch per segment; between two segments the
    // servers are checkpointed and stopped and the next one is not placed yet.
    bool elastic = false;
    ElasticBounds bounds;
    JobSegment segment;
    bool between = false;
  };

  static bool IsElastic(const json::object& p) {
    const json::value* e = p.if_contains("elastic");
    return e && e->is_bool() && e->get_bool();
  }
  static int64_t ParamInt(const json::object& p, const char* key, int64_t def) {
    return p.contains(key) ? p.at(key).to_number<int64_t>() : def;
  }
  // Workers the job (re)starts on: an elastic job resumed after a restart
  // continues its segment on that segment's workers.
  static int64_t StartWorkers(const JobRecord& j, const json::object& p) {
    if (IsElastic(p) && j.segment.workers > 0) return j.segment.workers;
    return ParamInt(p, "workers", 1);
  }

  // Ports for a job's servers from controller.ps_ports ("first-last"), or 0s
  // (any free port) when unset. Empty when the range is used up.
  std::optional<std::vector<int64_t>> TakePorts(int64_t n) {
    if (!ps_ports_) return std::vector<int64_t>(static_cast<size_t>(n), 0);
    std::vector<int64_t> out;
    for (int64_t p = ps_ports_->first; p <= ps_ports_->second && static_cast<int64_t>(out.size()) < n; ++p)
      if (!used_ports_.count(p)) out.push_back(p);
    if (static_cast<int64_t>(out.size()) < n) return std::nullopt;
    return out;
  }

  // One pass of the scheduler: lost nodes, replacements, finished jobs, and
  // the next queued job if the pool can take all of it.
  void Schedule() {
    for (const auto& name : pool_.Sweep()) Log(LogLevel::kWarn, "controller", "node lost", {{"node", name}});
    for (const auto& line : pool_.Replace()) Log(LogLevel::kInfo, "controller", "part replaced", {{"placement", line}});
    std::vector<std::tuple<int64_t, bool, bool>> active;  // id, cancel, elastic
    std::set<int64_t> cancel_waiting;
    {
      std::lock_guard lock(mu_);
      cancel_waiting.swap(cancel_waiting_);
      for (auto& [id, job] : jobs_) active.push_back({id, job->cancel, job->elastic});
    }
    for (int64_t id : cancel_waiting) {
      JobLog(id, "cancelled while waiting for its workers");
      (void)store_->SetJobState(id, kJobCancelled, "cancelled by request");
    }
    int64_t reserved = 0;  // idle nodes elastic jobs are about to take back
    for (auto [id, cancel, elastic] : active) {
      const WorkerPool::JobProgress p = pool_.Progress(id);
      if (cancel) {
        Finish(id, kJobCancelled, "cancelled by request");
      } else if (!p.failures.empty()) {
        Finish(id, kJobFailed, p.failures.front());
      } else if (elastic) {
        reserved += AdvanceElastic(id, p);
      } else if (p.parts > 0 && (p.succeeded == p.parts || PartZeroDone(id))) {
        // The reporting part (0) has evaluated and uploaded the model; the
        // others end with it (in sync they finish together anyway; with a
        // goal accuracy reached, part 0 ends first).
        Finish(id, kJobSucceeded, "");
      }
    }
    StartNext(reserved);
  }

  bool PartZeroDone(int64_t id) { return pool_.PartSucceeded(id, 0); }

  // Strict FIFO: the oldest waiting job (a job left running by a previous
  // controller first) starts when the pool has an idle node for each of its
  // workers; younger jobs do not overtake it, so a large job is not starved.
  // `reserved` idle nodes are not free: elastic jobs between two epochs hold them.
  void StartNext(int64_t reserved) {
    auto list = store_->ListJobs();
    if (!list.ok()) return;
    RecordPoolMetrics(*list);
    std::optional<JobRecord> next;
    for (auto it = list->rbegin(); it != list->rend(); ++it) {
      {
        std::lock_guard lock(mu_);
        if (jobs_.count(it->id)) continue;
      }
      if (it->state == kJobRunning) {
        next = *it;
        break;
      }
      if (it->state == kJobQueued && !next) next = *it;
    }
    if (!next) return;
    const json::object p = Params(*next);
    const int64_t workers = StartWorkers(*next, p);
    if (pool_.IdleCount() - reserved < workers) return;
    Status s = StartJob(*next, p, workers);
    if (!s.ok()) {
      JobLog(next->id, "failed to start: " + s.ToString());
      (void)store_->SetJobState(next->id, kJobFailed, s.ToString());
      Log(LogLevel::kWarn, "controller", "job failed", {{"job", next->id}, {"reason", s.ToString()}});
    }
  }

  Status StartJob(const JobRecord& job, const json::object& p, int64_t workers) {
    const int64_t id = job.id;
    const bool resumed = job.state == kJobRunning;
    auto ports = TakePorts(ParamInt(p, "servers", 1));
    if (!ports) return Status::Ok();  // the port range is busy: stay queued
    auto run = std::make_unique<RunningJob>();
    run->record = job;
    run->record.history.clear();
    run->params = p;
    run->workers = workers;
    run->elastic = IsElastic(p);
    if (run->elastic) {
      run->bounds = {ParamInt(p, "min_workers", 1), ParamInt(p, "max_workers", workers)};
      run->segment = job.segment.workers > 0 ? job.segment : JobSegment{0, 0, workers, 0};
    }
    DNND_ASSIGN_OR_RETURN(bool placed, LaunchSegment(*run, *ports));
    if (!placed) return Status::Ok();  // a node went away since IdleCount()
    // Where the workers begin: the servers' step (0, or their checkpoint's).
    int64_t from = run->servers.empty() ? 0 : run->servers[0]->version();
    for (const auto& s : run->servers) from = std::min(from, s->version());
    auto live = std::make_shared<LiveProgress>();
    live->job = id;
    live->step = job.step;
    live->total = job.total_steps;
    live->workers = workers;
    if (run->elastic && resumed) {
      // The epoch the job last recorded: if its segment had ended just
      // before the restart, the scheduler decides the next one from it.
      auto full = store_->GetJob(id);
      if (full.ok() && !full->history.empty()) {
        const EpochRow& e = full->history.back();
        live->last_epoch = {e.epoch, e.train_loss, e.seconds, e.samples_per_s, e.evaluated, e.test_loss,
                            e.test_accuracy, full->step, full->total_steps};
      }
    }
    {
      std::lock_guard lock(live_mu_);
      live_[id] = live;
      ++live_version_;
    }
    {
      std::lock_guard lock(mu_);
      jobs_[id] = std::move(run);
    }
    DNND_RETURN_IF_ERROR(store_->SetJobState(id, kJobRunning, ""));
    std::string how = "running on " + std::to_string(workers) + " pool worker(s)";
    if (IsElastic(p))
      how += " (elastic: " + std::to_string(ParamInt(p, "min_workers", 1)) + "-" +
             std::to_string(ParamInt(p, "max_workers", workers)) + ")";
    if (resumed)
      how = "resumed after a controller restart (attempt " + std::to_string(job.attempts + 1) +
            ", from its servers' last checkpoint)";
    JobLog(id, how + ": training from step " + std::to_string(from));
    Log(LogLevel::kInfo, "controller", resumed ? "job resumed" : "job started", {{"job", id}, {"workers", workers}});
    return Status::Ok();
  }

  // Starts the job's parameter servers for run.workers workers (resuming
  // from their checkpoint, if any) on `ports` (0: any free port) and places
  // its parts on idle nodes. False, with nothing started, when the pool no
  // longer has the nodes.
  Result<bool> LaunchSegment(RunningJob& run, const std::vector<int64_t>& ports) {
    const JobRecord& job = run.record;
    const json::object& p = run.params;
    const int64_t id = job.id;
    DNND_ASSIGN_OR_RETURN(std::string text, TaskConfig(job, run.elastic ? &run.segment : nullptr));
    std::error_code ec;
    fs::create_directories(JobDir(id), ec);
    (void)WriteFileAtomic(JobDir(id) + "/task.toml", text);  // for people debugging a job
    const int64_t nservers = static_cast<int64_t>(ports.size());
    std::vector<std::unique_ptr<ParameterServer>> servers;
    std::vector<int64_t> bound;
    auto stop_all = [&] {
      for (auto& started : servers) started->Stop();
    };
    for (int64_t i = 0; i < nservers; ++i) {
      ParameterServerOptions o = ParameterServerOptions::FromConfig(cfg_);
      o.index = static_cast<int>(i);
      o.servers = static_cast<int>(nservers);
      o.mode = std::string(p.at("mode").as_string());
      o.workers = run.workers;
      o.kavg_steps = p.at("kavg_steps").to_number<int64_t>();
      o.checkpoint_dir = JobDir(id) + "/ps";
      o.resume = true;
      o.checkpoint_every_steps = cfg_.GetInt("controller.checkpoint_every_steps");
      auto rpc = rpc::RpcServerOptions::FromConfig(cfg_, ServiceHost() + ":" + std::to_string(ports[i]),
                                                   "parameter-server");
      if (!rpc.ok()) {
        stop_all();
        return rpc.status();
      }
      rpc->token = secrets_.wire_key;
      rpc->self.node = "job-" + std::to_string(id) + "-ps-" + std::to_string(i);
      auto server = std::make_unique<ParameterServer>(std::move(o), std::move(*rpc));
      Status s = server->Start();
      if (!s.ok()) {
        stop_all();
        return s.WithContext("parameter server " + std::to_string(i));
      }
      bound.push_back(server->port());
      servers.push_back(std::move(server));
    }
    std::vector<pool::Task> tasks;
    for (int64_t i = 0; i < run.workers; ++i)
      tasks.push_back({id, "", i, run.workers, job.dataset, text, bound, shards_->port()});
    if (!pool_.Place(std::move(tasks))) {
      stop_all();
      return false;
    }
    for (auto port : run.ports) used_ports_.erase(port);
    for (auto port : bound) used_ports_.insert(port);
    run.ports = std::move(bound);
    std::lock_guard lock(mu_);  // RecordPoolMetrics reads the job's servers and workers
    run.servers = std::move(servers);
    return true;
  }

  // An elastic job between epochs: once every part has finished the
  // segment and its epoch is recorded, the job either ends (last epoch, or
  // goal accuracy reached) or its servers checkpoint and stop, the throughput
  // policy picks the next segment's workers, and the servers restart from
  // the checkpoint for that many workers, each with its new part of the data.
  //
  // Returns how many idle nodes the job holds in reserve for its next epoch
  // (its own, freed by the epoch just finished), so the queue's next job
  // does not take them in the meantime.
  int64_t AdvanceElastic(int64_t id, const WorkerPool::JobProgress& progress) {
    RunningJob* run;  // erased only by Finish, on this (the scheduler's) thread
    {
      std::lock_guard lock(mu_);
      auto it = jobs_.find(id);
      if (it == jobs_.end()) return 0;
      run = it->second.get();
    }
    std::shared_ptr<LiveProgress> live = Live(id);
    if (!live) return 0;
    if (!run->between) {
      // The segment runs; parts that finished it early keep their nodes for the next.
      if (progress.parts == 0 || progress.succeeded < progress.parts) return progress.succeeded;
      pool::EpochReport last;
      {
        std::lock_guard lock(live->mu);
        last = live->last_epoch;
      }
      if (last.epoch < run->segment.epoch + 1) return run->workers;  // its epoch's record is still on its way
      const int64_t epochs = ParamInt(run->params, "epochs", 1);
      const double goal = run->params.contains("goal_accuracy") ? run->params.at("goal_accuracy").to_number<double>() : 0;
      if (last.epoch >= epochs || (goal > 0 && last.evaluated && last.test_accuracy >= goal)) {
        Finish(id, kJobSucceeded, "");
        return 0;
      }
      const int64_t before = run->workers;
      // It does not grow into idle nodes while other jobs wait for them.
      const int64_t idle = pool_.IdleCount();
      const ElasticDecision d = NextParallelism(run->bounds, before, last.seconds, run->segment.reference_seconds,
                                                queued_ > 0 ? std::min(idle, before) : idle);
      // Checkpoint before re-sharding: the servers write their state as they stop.
      std::vector<std::unique_ptr<ParameterServer>> servers;
      {
        std::lock_guard lock(mu_);
        servers.swap(run->servers);
      }
      for (auto& s : servers) s->Stop();
      SetSegment(*run, *live, {last.epoch, last.step, d.workers, d.reference_seconds});
      run->between = true;
      JobLog(id, "elastic: epoch " + std::to_string(last.epoch) + " ran on " + std::to_string(before) +
                     " worker(s); " + d.reason + " -> epoch " + std::to_string(last.epoch + 1) + " on " +
                     std::to_string(d.workers) + " (servers checkpointed at step " + std::to_string(last.step) + ")");
    }
    // Place the next segment, on fewer workers if some went away meanwhile
    // (never fewer than min_workers: then it waits).
    const int64_t idle = pool_.IdleCount();
    if (idle < run->workers) {
      if (idle < run->bounds.min_workers) return 0;  // it waits; the queue may go first
      JobSegment g = run->segment;
      g.workers = idle;
      SetSegment(*run, *live, g);
      JobLog(id, "elastic: only " + std::to_string(idle) + " worker(s) idle; epoch " + std::to_string(g.epoch + 1) +
                     " runs on them");
    }
    std::vector<int64_t> ports = run->ports;
    if (!ps_ports_) std::fill(ports.begin(), ports.end(), 0);
    Result<bool> placed = LaunchSegment(*run, ports);
    if (!placed.ok()) {
      Finish(id, kJobFailed, placed.status().WithContext("re-sharding").ToString());
      return 0;
    }
    if (!*placed) return run->workers;
    run->between = false;
    return 0;
  }

  // The elastic job's new segment, in memory and in the store (a restarted
  // controller continues it).
  void SetSegment(RunningJob& run, LiveProgress& live, const JobSegment& g) {
    {
      std::lock_guard lock(mu_);
      run.workers = g.workers;
    }
    run.segment = g;
    live.workers = g.workers;
    Status w = store_->SetJobSegment(run.record.id, g);
    if (!w.ok())
      Log(LogLevel::kError, "controller", "cannot record the job's segment", {{"job", run.record.id}, {"error", w.ToString()}});
  }

  void Finish(int64_t id, const char* state, const std::string& reason) {
    pool_.Release(id);
    // Let the job's workers stop at a step boundary while their servers
    // still answer (they are told at their next heartbeat); stopping the
    // servers first would leave them retrying a dead address until their
    // request timeout, their node busy all that time.
    const auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (pool_.StillRunning(id) > 0 && std::chrono::steady_clock::now() < grace)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::unique_ptr<RunningJob> run;
    {
      std::lock_guard lock(mu_);
      auto it = jobs_.find(id);
      if (it == jobs_.end()) return;
      run = std::move(it->second);
      jobs_.erase(it);
    }
    for (auto& s : run->servers) s->Stop();  // checkpoints the final state
    for (auto port : run->ports) used_ports_.erase(port);
    std::shared_ptr<LiveProgress> live = Live(id);
    {
      std::lock_guard lock(live_mu_);
      live_.erase(id);
      ++live_version_;
    }
    std::string why = reason;
    const char* final_state = state;
    if (final_state == kJobSucceeded && !fs::exists(JobDir(id) + "/model/model.safetensors")) {
      final_state = kJobFailed;
      why = "the reporting worker finished without uploading the trained model";
    }
    // The progress it reached stays with it, whatever the end (a cancelled
    // job mid-epoch is further than its last recorded epoch).
    if (live) (void)store_->SetProgress(id, live->step.load(), live->total.load());
    JobLog(id, std::string(final_state) + (why.empty() ? "" : ": " + why));
    Status w = store_->SetJobState(id, final_state, why);
    if (!w.ok()) Log(LogLevel::kError, "controller", "store", {{"error", w.ToString()}});
    Log(final_state == kJobSucceeded ? LogLevel::kInfo : LogLevel::kWarn, "controller", std::string("job ") + final_state,
        {{"job", id}, {"reason", why}});
  }

  const Config cfg_;
  const DirLock dir_lock_;  // controller.data_dir is this process's while it lives
  std::unique_ptr<ControllerStore> store_;
  const std::string dir_;
  const size_t max_upload_, max_json_;
  const wire::Secrets secrets_;
  const int64_t local_workers_;
  const std::optional<std::pair<int64_t, int64_t>> ps_ports_ = ParsePortRange(cfg_.GetString("controller.ps_ports")).value();
  std::string http_address_;
  Predictor predictor_;
  std::atomic<bool> running_{false};
  WorkerPool pool_;
  std::unique_ptr<rpc::RpcServer> shards_;
  std::vector<std::unique_ptr<PoolWorker>> local_;
  std::vector<std::thread> local_threads_;
  std::set<int64_t> used_ports_;  // scheduler thread only
  int64_t queued_ = 0;            // jobs waiting, at the last scheduler pass (scheduler thread only)

  std::mutex mu_;  // guards the fields below
  std::condition_variable_any cv_;
  bool stop_ = false;
  std::map<int64_t, std::unique_ptr<RunningJob>> jobs_;
  std::set<int64_t> cancel_waiting_;

  std::mutex live_mu_;
  std::map<int64_t, std::shared_ptr<LiveProgress>> live_;
  std::atomic<uint64_t> live_version_{0};  // bumped by every progress report
  std::mutex jobs_list_mu_;
  std::optional<std::pair<std::pair<uint64_t, uint64_t>, HttpResponse>> jobs_list_;  // GET /api/v1/jobs, and as of when
  std::mutex dataset_mu_;
  std::mutex loaded_mu_;
  const data::DecodeLimits dataset_limits_;  // controller.max_dataset_bytes, controller.max_dataset_members
  const ModelLimits model_limits_;           // controller.max_model_parameters
  // Heavy requests' threads (controller.heavy_threads, controller.heavy_queue).
  const std::shared_ptr<WorkQueue> heavy_;
  std::vector<std::pair<std::string, std::shared_ptr<LoadedDataset>>> loaded_;  // LoadDataset's key, newest first
};

}  // namespace

Result<std::unique_ptr<Role>> MakeControllerRole(const Config& cfg) {
  return MakeControllerRole(cfg, cfg.GetInt("controller.local_workers"));
}

Result<std::unique_ptr<Role>> MakeControllerRole(const Config& cfg, int64_t local_workers) {
  DNND_RETURN_IF_ERROR(ParsePortRange(cfg.GetString("controller.ps_ports")).status());
  if (cfg.GetString("http.listen").empty())
    return InvalidArgument("the controller serves its API on http.listen; set it (e.g. \"127.0.0.1:8080\")");
  const std::string dir = cfg.GetString("controller.data_dir");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError("cannot create controller.data_dir " + dir + ": " + ec.message());
  // Before anything in it is touched: a second controller on the directory
  // would sweep the first one's uploads and write to its store.
  DNND_ASSIGN_OR_RETURN(DirLock dir_lock, DirLock::Acquire(dir, "controller.data_dir"));
  // Uploads stream into temporary files here before moving into place.
  fs::create_directories(dir + "/uploads", ec);
  if (ec) return IoError("cannot create " + dir + "/uploads: " + ec.message());
  // What a killed controller left: temp files of atomic writes anywhere in the
  // data dir, and upload bodies (the HTTP server does not run yet).
  DNND_ASSIGN_OR_RETURN(std::vector<std::string> swept,
                        SweepTempFiles(dir, {.recursive = true, .temp_prefix = "", .upload_prefix = ""}));
  DNND_ASSIGN_OR_RETURN(std::vector<std::string> uploads,
                        SweepTempFiles(dir + "/uploads",
                                       {.recursive = false, .temp_prefix = "", .upload_prefix = kUploadFilePrefix}));
  swept.insert(swept.end(), uploads.begin(), uploads.end());
  if (!swept.empty())
    Log(LogLevel::kWarn, "controller", "removed what interrupted writes left behind",
        {{"files", static_cast<int64_t>(swept.size())}, {"first", swept.front()}});
  // The API's bearer token and the wire key are different secrets.
  DNND_ASSIGN_OR_RETURN(wire::Secrets secrets, wire::LoadSecrets(cfg));
  DNND_ASSIGN_OR_RETURN(auto store, ControllerStore::Open(dir + "/controller.db"));
  // (A loopback-only controller, like the standalone role's, has nobody to hide it from.)
  const std::string listen = cfg.GetString("http.listen");
  DNND_RETURN_IF_ERROR(wire::CheckListenSecurity(cfg, listen, "http.listen", !secrets.api_token.empty()));
  const bool loopback = wire::IsLoopbackListen(listen);
  if (!secrets.wire_key.empty() && !loopback && cfg.GetString("transport.token_file").empty() &&
      cfg.Origin("transport.token").rfind("env ", 0) != 0 && cfg.Origin("transport.token").rfind("--set", 0) != 0)
    Log(LogLevel::kWarn, "controller",
        "transport.token is written in a config file; a committed file is no secret: use transport.token_file "
        "(a mounted Secret) or env DNND_TRANSPORT__TOKEN",
        {{"origin", cfg.Origin("transport.token")}});
  return std::unique_ptr<Role>(new ControllerRole(cfg, std::move(dir_lock), std::move(store),
                                                  std::move(secrets), local_workers));
}

}  // namespace dnnd
