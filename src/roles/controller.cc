#include "roles/controller.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/data/from_config.h"
#include "core/files.h"
#include "core/log.h"
#include "roles/controller_store.h"
#include "roles/predictor.h"
#include "roles/standalone.h"
#include "tensor/model_spec.h"
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

std::string TomlString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// A JSON model spec ({"model": {...}} or the table itself) as TOML text, so
// one parser (ParseModelSpecText) validates both forms.
std::string JsonToToml(const json::value& v) {
  switch (v.kind()) {
    case json::kind::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, x] : v.get_object()) {
        out += (first ? "" : ", ") + TomlString(std::string(k)) + " = " + JsonToToml(x);
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
    case json::kind::string: return TomlString(std::string(v.get_string()));
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

// Typed fields of a request object, with errors naming the field.
struct Fields {
  const json::object& o;
  Result<std::string> String(const char* key, std::string def, bool required = false) const {
    const json::value* v = o.if_contains(key);
    if (!v) {
      if (required) return InvalidArgument(std::string("missing field '") + key + "'");
      return def;
    }
    if (!v->is_string()) return InvalidArgument(std::string("field '") + key + "' must be a string");
    return std::string(v->get_string());
  }
  Result<int64_t> Int(const char* key, int64_t def, int64_t lo, int64_t hi) const {
    const json::value* v = o.if_contains(key);
    if (!v) return def;
    int64_t x;
    if (v->is_int64()) x = v->get_int64();
    else if (v->is_uint64() && v->get_uint64() < (1ull << 62)) x = static_cast<int64_t>(v->get_uint64());
    else return InvalidArgument(std::string("field '") + key + "' must be an integer");
    if (x < lo || x > hi)
      return InvalidArgument(std::string("field '") + key + "' is " + std::to_string(x) + "; expected " +
                             std::to_string(lo) + ".." + std::to_string(hi));
    return x;
  }
  Result<double> Number(const char* key, double def) const {
    const json::value* v = o.if_contains(key);
    if (!v) return def;
    if (v->is_double()) return v->get_double();
    if (v->is_int64()) return static_cast<double>(v->get_int64());
    return InvalidArgument(std::string("field '") + key + "' must be a number");
  }
};

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

struct LiveProgress {
  int64_t job = 0;
  std::atomic<int64_t> step{0}, total{0};
  // First step of this attempt and when it was seen (for the rate); atomics:
  // written by the training thread, read by HTTP threads.
  std::atomic<int64_t> start_step{-1};
  std::atomic<double> start_s{0};
};

class ControllerRole : public Role {
 public:
  ControllerRole(const Config& cfg, std::unique_ptr<ControllerStore> store)
      : cfg_(cfg),
        store_(std::move(store)),
        dir_(cfg.GetString("controller.data_dir")),
        max_upload_(static_cast<size_t>(cfg.GetInt("controller.max_upload_bytes"))),
        max_json_(static_cast<size_t>(cfg.GetInt("http.max_body_bytes"))),
        predictor_(*store_, {.checkpoint_path = [this](int64_t id) { return CheckpointPath(id); },
                             .max_body_bytes = max_json_}) {}

  size_t MaxRequestBytes() const override { return max_upload_; }

  std::pair<bool, std::string> Readiness() const override {
    if (!running_.load()) return {false, "controller starting"};
    return {true, ""};
  }

  Status Run() override {
    Log(LogLevel::kInfo, "controller", "store open",
        {{"data_dir", dir_}, {"schema_version", store_->SchemaVersion()}});
    running_ = true;
    while (true) {
      std::optional<int64_t> next;
      {
        std::unique_lock lock(mu_);
        if (stop_) break;
        auto n = store_->NextRunnable();
        if (!n.ok()) {
          Log(LogLevel::kError, "controller", "store", {{"error", n.status().ToString()}});
        } else {
          next = *n;
        }
        if (!next) {
          cv_.wait_for(lock, std::chrono::seconds(1));
          continue;
        }
      }
      RunJob(*next);
    }
    return Cancelled("controller stopped");
  }

  void Stop() override {
    std::lock_guard lock(mu_);
    stop_ = true;
    if (cluster_) cluster_->Stop();
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
    r.Handle("PUT", "/api/v1/datasets/{name}/files/{part}", wrap(&ControllerRole::StageFile));
    r.Handle("POST", "/api/v1/datasets", wrap(&ControllerRole::CreateDataset));
    r.Handle("GET", "/api/v1/datasets", wrap(&ControllerRole::ListDatasets));
    r.Handle("GET", "/api/v1/datasets/{name}", wrap(&ControllerRole::GetDataset));
    r.Handle("DELETE", "/api/v1/datasets/{name}", wrap(&ControllerRole::DeleteDataset));
    r.Handle("POST", "/api/v1/models", wrap(&ControllerRole::CreateModel));
    r.Handle("GET", "/api/v1/models", wrap(&ControllerRole::ListModels));
    r.Handle("GET", "/api/v1/models/{name}", wrap(&ControllerRole::GetModel));
    r.Handle("GET", "/api/v1/models/{name}/checkpoint", wrap(&ControllerRole::ModelCheckpoint));
    r.Handle("POST", "/api/v1/models/{name}/predict", [this](const HttpRequest& q) { return predictor_.Predict(q); });
    r.Handle("POST", "/api/v1/jobs", wrap(&ControllerRole::CreateJob));
    r.Handle("GET", "/api/v1/jobs", wrap(&ControllerRole::ListJobs));
    r.Handle("GET", "/api/v1/jobs/{id}", wrap(&ControllerRole::GetJob));
    r.Handle("POST", "/api/v1/jobs/{id}/cancel", wrap(&ControllerRole::CancelJob));
    r.Handle("GET", "/api/v1/jobs/{id}/logs", wrap(&ControllerRole::JobLogs));
    r.Handle("GET", "/api/v1/jobs/{id}/checkpoint", wrap(&ControllerRole::JobCheckpoint));
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
    if (r.body.size() > max_upload_)
      return HttpResponse::Error(413, "payload_too_large",
                                 "upload is " + std::to_string(r.body.size()) + " bytes; the limit is " +
                                     std::to_string(max_upload_) + " (controller.max_upload_bytes)");
    if (r.body.empty()) return InvalidArgument("empty upload for " + name + "/" + part);
    if (store_->GetDataset(name).ok()) return AlreadyExists("dataset '" + name + "' already exists");
    const fs::path stage = fs::path(dir_) / "uploads" / name;
    std::error_code ec;
    fs::create_directories(stage, ec);
    if (ec) return IoError("cannot create " + stage.string() + ": " + ec.message());
    DNND_RETURN_IF_ERROR(WriteFileAtomic((stage / part).string(), r.body));
    return HttpResponse::Json(201, {{"dataset", name}, {"part", part}, {"bytes", r.body.size()}});
  }

  Result<HttpResponse> CreateDataset(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(json::object body, JsonObjectBody(r, max_json_));
    Fields f{body};
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
    bool has_test = true;
    for (const auto& p : test_parts) has_test &= fs::exists(stage / p);
    if (has_test)
      for (const auto& p : test_parts) files[p] = p;
    // Validate with exactly the readers a job will use, through a [data] section.
    DNND_ASSIGN_OR_RETURN(Config data_cfg, DataConfig(format, stage.string(), files));
    auto train = data::LoadTrainingSet(data_cfg);
    if (!train.ok()) return InvalidArgument("invalid dataset '" + name + "': " + train.status().message());
    auto test = data::LoadTestSet(data_cfg);
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
    d.bytes = DirBytes(final_dir);
    DNND_RETURN_IF_ERROR(store_->PutDataset(d));
    Log(LogLevel::kInfo, "controller", "dataset registered", {{"name", name}, {"train_samples", d.train_samples}});
    return HttpResponse::Json(201, DatasetJson(d));
  }

  // A [data] section reading `files` from `dir` in `format`.
  static Result<Config> DataConfig(const std::string& format, const std::string& dir, const json::object& files) {
    std::string t = "[data]\nformat = " + TomlString(format) + "\n";
    auto path = [&](const char* part) {
      return files.contains(part) ? TomlString(dir + "/" + part) : std::string("\"\"");
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
    std::error_code ec;
    fs::remove_all(fs::path(dir_) / "datasets" / name, ec);
    return HttpResponse::Json(200, {{"deleted", name}});
  }

  // ---- models -------------------------------------------------------------
  Result<HttpResponse> CreateModel(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(json::object body, JsonObjectBody(r, max_json_));
    Fields f{body};
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
    auto model = BuildModel(*spec, 0);
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
    Fields f{body};
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
    DNND_ASSIGN_OR_RETURN(p["servers"], f.Int("servers", 1, 1, 16));
    DNND_ASSIGN_OR_RETURN(p["kavg_steps"], f.Int("kavg_steps", 8, 1, 1000000));
    DNND_ASSIGN_OR_RETURN(p["seed"], f.Int("seed", 42, 0, int64_t{1} << 53));
    DNND_ASSIGN_OR_RETURN(p["limit_train"], f.Int("limit_train", 0, 0, int64_t{1} << 40));
    DNND_ASSIGN_OR_RETURN(p["limit_test"], f.Int("limit_test", 0, 0, int64_t{1} << 40));
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
    if (train_n < p["workers"].as_int64())
      return InvalidArgument("dataset '" + dataset + "' has " + std::to_string(train_n) + " training samples for " +
                             std::to_string(p["workers"].as_int64()) + " workers");
    DNND_ASSIGN_OR_RETURN(int64_t id, store_->CreateJob(model, dataset, json::serialize(p)));
    JobLog(id, "queued: model " + model + ", dataset " + dataset + ", " + json::serialize(p));
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
    {
      std::lock_guard lock(live_mu_);
      if (live_ && live_->job == j.id && j.state == kJobRunning) {
        step = live_->step.load();
        total = live_->total.load();
        const double secs = NowSeconds() - live_->start_s.load();
        const int64_t done = live_->start_step >= 0 ? step - live_->start_step : 0;
        if (done > 0 && total > step) eta = secs / done * static_cast<double>(total - step);
      }
    }
    if (j.state == kJobSucceeded) {
      step = std::max(step, total);
      eta = 0.0;
    }
    o["step"] = step;
    o["total_steps"] = total;
    o["progress"] = total > 0 ? 100.0 * static_cast<double>(step) / static_cast<double>(total) : 0.0;
    o["eta_seconds"] = eta;
    json::array h;
    for (const auto& e : j.history) {
      json::object x{{"epoch", e.epoch}, {"train_loss", e.train_loss}, {"seconds", e.seconds},
                     {"samples_per_s", e.samples_per_s}};
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

  Result<HttpResponse> ListJobs(const HttpRequest&) {
    DNND_ASSIGN_OR_RETURN(auto list, store_->ListJobs());
    json::array a;
    for (const auto& j : list) a.push_back(JobJson(j));
    return HttpResponse::Json(200, {{"jobs", a}});
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
      if (running_job_ == id) {
        cancel_requested_ = true;
        if (cluster_) cluster_->Stop();
      }
    }
    return HttpResponse::Json(202, {{"id", id}, {"cancelling", true}});
  }

  Result<HttpResponse> JobLogs(const HttpRequest& r) {
    DNND_ASSIGN_OR_RETURN(int64_t id, JobId(r));
    DNND_RETURN_IF_ERROR(store_->GetJob(id).status());
    const std::string path = JobDir(id) + "/job.log";
    if (!fs::exists(path)) return HttpResponse::Text(200, "");
    DNND_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path, 64 << 20));
    return HttpResponse::Text(200, std::move(text));
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

  // The job's cluster configuration: the standalone role's keys, with the
  // data from the dataset's directory and checkpoints in the job's.
  Result<std::string> JobConfig(const JobRecord& j) {
    DNND_ASSIGN_OR_RETURN(auto m, store_->GetModel(j.model));
    DNND_ASSIGN_OR_RETURN(auto d, store_->GetDataset(j.dataset));
    json::value pv = ParseJsonText(j.params);
    if (!pv.is_object()) return Corruption("job " + std::to_string(j.id) + " has unreadable parameters");
    const json::object& p = pv.get_object();
    DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpecText(m.spec, j.model));
    spec.optimizer.type = std::string(p.at("optimizer").as_string());
    spec.optimizer.lr = static_cast<float>(p.at("lr").to_number<double>());
    auto i = [&](const char* k) { return std::to_string(p.at(k).to_number<int64_t>()); };
    const std::string dir = JobDir(j.id);
    DNND_ASSIGN_OR_RETURN(Config data, DataConfig(d.format, dir_ + "/datasets/" + d.name,
                                                  ParseJsonText(d.files).as_object()));
    std::string t;
    t += "[node]\nname = " + TomlString("job-" + std::to_string(j.id)) + "\nthreads = " +
         std::to_string(cfg_.GetInt("node.threads")) + "\n";
    t += "[standalone]\nservers = " + i("servers") + "\nworkers = " + i("workers") + "\n";
    t += "[ps]\nmode = " + TomlString(std::string(p.at("mode").as_string())) + "\nkavg_steps = " + i("kavg_steps") +
         "\ncheckpoint_dir = " + TomlString(dir + "/ps") + "\ncheckpoint_every_steps = " +
         std::to_string(cfg_.GetInt("controller.checkpoint_every_steps")) + "\nresume = true\n";
    t += "[transport]\ntoken = " + TomlString(transport_token_) + "\n";
    t += "[data]\nformat = " + TomlString(d.format) + "\n";
    for (const char* k : {"train_images", "train_labels", "test_images", "test_labels", "train_file", "test_file"})
      t += std::string(k) + " = " + TomlString(data.GetString(std::string("data.") + k)) + "\n";
    t += "limit_train = " + i("limit_train") + "\nlimit_test = " + i("limit_test") + "\n";
    t += "[train]\nepochs = " + i("epochs") + "\nbatch_size = " + i("batch") + "\nseed = " + i("seed") +
         "\ncheckpoint_dir = " + TomlString(dir + "/model") + "\nprogress = \"none\"\n";
    t += ModelSpecToToml(spec);
    return t;
  }

  void RunJob(int64_t id) {
    auto job = store_->GetJob(id);
    if (!job.ok()) {
      Log(LogLevel::kError, "controller", "cannot read job", {{"job", id}, {"error", job.status().ToString()}});
      std::this_thread::sleep_for(std::chrono::seconds(1));
      return;
    }
    const bool resumed = job->state == kJobRunning;
    auto fail = [&](const Status& s) {
      JobLog(id, "failed: " + s.ToString());
      Status w = store_->SetJobState(id, kJobFailed, s.ToString());
      if (!w.ok()) Log(LogLevel::kError, "controller", "store", {{"error", w.ToString()}});
      Log(LogLevel::kWarn, "controller", "job failed", {{"job", id}, {"reason", s.ToString()}});
    };
    auto text = JobConfig(*job);
    if (!text.ok()) return fail(text.status());
    std::error_code ec;
    fs::create_directories(JobDir(id), ec);
    (void)WriteFileAtomic(JobDir(id) + "/job.toml", *text);  // for people debugging a job
    auto cfg = Config::FromString(*text, JobDir(id) + "/job.toml");
    if (!cfg.ok()) return fail(cfg.status());
    auto live = std::make_shared<LiveProgress>();
    live->job = id;
    live->step = job->step;
    live->total = job->total_steps;
    TrainHooks hooks;
    hooks.on_step = [this, id, live](int64_t step, int64_t total) {
      if (live->start_step.load() < 0) {
        live->start_s = NowSeconds();
        live->start_step = step - 1;
        // Where this attempt started: > 0 after a resume from a checkpoint.
        JobLog(id, "training from step " + std::to_string(step - 1) + " of " + std::to_string(total));
      }
      live->step = step;
      live->total = total;
    };
    hooks.on_epoch = [this, id](const EpochRecord& e, int64_t step, int64_t total) {
      EpochRow row{e.epoch, e.train_loss, e.evaluated, e.eval.loss, e.eval.accuracy, e.seconds, e.samples_per_s};
      Status s = store_->RecordEpoch(id, row, step, total);
      if (!s.ok()) Log(LogLevel::kError, "controller", "cannot record epoch", {{"job", id}, {"error", s.ToString()}});
      char line[256];
      std::snprintf(line, sizeof line, "epoch %lld: train loss %.4f, %.1f s, %.0f samples/s",
                    static_cast<long long>(e.epoch), e.train_loss, e.seconds, e.samples_per_s);
      std::string l = line;
      if (e.evaluated) {
        std::snprintf(line, sizeof line, ", test loss %.4f, test accuracy %.2f%%", e.eval.loss,
                      100 * e.eval.accuracy);
        l += line;
      }
      JobLog(id, l);
    };
    auto cluster = MakeStandaloneCluster(*cfg, hooks);
    if (!cluster.ok()) return fail(cluster.status());
    {
      std::lock_guard lock(mu_);
      if (stop_) return;  // shutting down: the job stays as it is
      cluster_ = cluster->get();
      running_job_ = id;
      cancel_requested_ = false;
    }
    {
      std::lock_guard lock(live_mu_);
      live_ = live;
    }
    Status st = store_->SetJobState(id, kJobRunning, "");
    JobLog(id, resumed ? "resumed after a controller restart (attempt " + std::to_string(job->attempts + 1) +
                             ", from step " + std::to_string(job->step) + " or the last checkpoint)"
                       : "running");
    Log(LogLevel::kInfo, "controller", resumed ? "job resumed" : "job started", {{"job", id}});
    Status s = st.ok() ? (*cluster)->Run() : st;
    bool cancelled, stopping;
    {
      std::lock_guard lock(mu_);
      cluster_ = nullptr;
      running_job_ = 0;
      cancelled = cancel_requested_;
      stopping = stop_;
    }
    {
      std::lock_guard lock(live_mu_);
      live_.reset();
    }
    if (s.ok()) {
      (void)store_->SetTotalSteps(id, live->total.load());
      JobLog(id, "succeeded");
      Status w = store_->SetJobState(id, kJobSucceeded, "");
      if (!w.ok()) Log(LogLevel::kError, "controller", "store", {{"error", w.ToString()}});
      Log(LogLevel::kInfo, "controller", "job succeeded", {{"job", id}});
    } else if (cancelled) {
      JobLog(id, "cancelled at step " + std::to_string(live->step.load()));
      (void)store_->SetJobState(id, kJobCancelled, "cancelled by request");
    } else if (stopping) {
      // The controller is shutting down: the job stays `running` and resumes
      // from its checkpoint at the next start. Whatever the cluster returned
      // (Cancelled, or a worker's Unavailable as its servers went away) is a
      // consequence of the shutdown, not a verdict on the job.
      JobLog(id, "controller stopping (" + s.ToString() + "); the job resumes at the next start");
    } else {
      fail(s);
    }
  }

  const Config cfg_;
  std::unique_ptr<ControllerStore> store_;
  const std::string dir_;
  const size_t max_upload_, max_json_;
  Predictor predictor_;
  std::string transport_token_ = "controller-loopback";  // the jobs' servers listen on 127.0.0.1 only
  std::atomic<bool> running_{false};

  std::mutex mu_;  // guards the fields below
  std::condition_variable_any cv_;
  bool stop_ = false;
  Role* cluster_ = nullptr;
  int64_t running_job_ = 0;
  bool cancel_requested_ = false;

  std::mutex live_mu_;
  std::shared_ptr<LiveProgress> live_;
  std::mutex dataset_mu_;
};

}  // namespace

Result<std::unique_ptr<Role>> MakeControllerRole(const Config& cfg) {
  if (cfg.GetString("http.listen").empty())
    return InvalidArgument("the controller serves its API on http.listen; set it (e.g. \"127.0.0.1:8080\")");
  const std::string dir = cfg.GetString("controller.data_dir");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError("cannot create controller.data_dir " + dir + ": " + ec.message());
  DNND_ASSIGN_OR_RETURN(auto store, ControllerStore::Open(dir + "/controller.db"));
  return std::unique_ptr<Role>(new ControllerRole(cfg, std::move(store)));
}

}  // namespace dnnd
