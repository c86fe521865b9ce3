#include "roles/controller/datasets.h"

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>

#include "core/files.h"
#include "core/json_fields.h"
#include "core/log.h"
#include "core/work_queue.h"
#include "tensor/prediction_meta.h"

namespace dnnd {
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

// The staged parts each format needs: {train parts}, {test parts}.
std::pair<std::vector<std::string>, std::vector<std::string>> PartsFor(const std::string& format) {
  if (format == "idx" || format == "npy")
    return {{"train-images", "train-labels"}, {"test-images", "test-labels"}};
  return {{"train"}, {"test"}};
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
          {"classes", ParseJsonText(d.classes.empty() ? "[]" : d.classes)},
          {"created", d.created}};
}

// The body's "classes": absent is unnamed; else an array of strings.
Result<std::vector<std::string>> ClassNames(const json::object& body) {
  std::vector<std::string> out;
  const json::value* c = body.if_contains("classes");
  if (!c) return out;
  if (!c->is_array())
    return InvalidArgument("field 'classes' must be an array of strings (the class names)");
  for (const auto& name : c->get_array()) {
    if (!name.is_string())
      return InvalidArgument("field 'classes' must be an array of strings (the class names)");
    out.emplace_back(name.get_string());
  }
  return out;
}

}  // namespace

DatasetsApi::DatasetsApi(const ControllerContext& ctx, data::DecodeLimits limits)
    : ctx_(ctx), limits_(std::move(limits)) {}

void DatasetsApi::AddRoutes(HttpRouter& r, std::shared_ptr<WorkQueue> heavy) {
  r.HandleUpload("PUT", "/api/v1/datasets/{name}/files/{part}",
                 {.dir = ctx_.dir + "/uploads",
                  .max_bytes = static_cast<size_t>(ctx_.cfg.GetInt("controller.max_upload_bytes")),
                  .limit_name = "controller.max_upload_bytes"},
                 ApiHandler([this](const HttpRequest& q) { return StageFile(q); }));
  r.HandleOffloaded("POST", "/api/v1/datasets", std::move(heavy),
                    ApiHandler([this](const HttpRequest& q) { return Create(q); }));
  r.Handle("GET", "/api/v1/datasets", ApiHandler([this](const HttpRequest& q) { return List(q); }));
  r.Handle("GET", "/api/v1/datasets/{name}",
           ApiHandler([this](const HttpRequest& q) { return Get(q); }));
  r.Handle("DELETE", "/api/v1/datasets/{name}",
           ApiHandler([this](const HttpRequest& q) { return Delete(q); }));
}

Result<HttpResponse> DatasetsApi::StageFile(const HttpRequest& r) {
  const std::string name = r.params.at("name"), part = r.params.at("part");
  DNND_RETURN_IF_ERROR(CheckName("dataset", name));
  static const std::vector<std::string> parts = {"train-images", "train-labels", "test-images",
                                                 "test-labels",  "train",        "test"};
  if (std::find(parts.begin(), parts.end(), part) == parts.end())
    return InvalidArgument(
        "unknown file part '" + part +
        "'; expected train-images, train-labels, test-images, test-labels (idx, npy) or "
        "train, test (npz, csv)");
  // The server streamed the body to r.body_file (HandleUpload), under max_upload_.
  if (r.body_file.empty()) return Internal("upload route called without a streamed body");
  if (r.body_file_bytes == 0) return InvalidArgument("empty upload for " + name + "/" + part);
  if (ctx_.store.GetDataset(name).ok())
    return AlreadyExists("dataset '" + name + "' already exists");
  const fs::path stage = fs::path(ctx_.dir) / "uploads" / name;
  std::error_code ec;
  fs::create_directories(stage, ec);
  if (ec) return IoError("cannot create " + stage.string() + ": " + ec.message());
  DNND_RETURN_IF_ERROR(CommitTempFile(r.body_file, (stage / part).string()));
  return HttpResponse::Json(201, {{"dataset", name}, {"part", part}, {"bytes", r.body_file_bytes}});
}

Result<HttpResponse> DatasetsApi::Create(const HttpRequest& r) {
  DNND_ASSIGN_OR_RETURN(json::object body, JsonObjectBody(r, ctx_.max_json));
  JsonFields f{body, ""};
  DNND_RETURN_IF_ERROR(f.RejectUnknown({"name", "format", "classes"}));
  DNND_ASSIGN_OR_RETURN(std::string name, f.String("name", "", true));
  DNND_RETURN_IF_ERROR(CheckName("dataset", name));
  DNND_ASSIGN_OR_RETURN(std::string format, f.String("format", "", true));
  if (format != "idx" && format != "npy" && format != "npz" && format != "csv" &&
      format != "cifar10")
    return InvalidArgument("unknown dataset format '" + format +
                           "'; expected idx, npy, npz, csv or cifar10");
  DNND_ASSIGN_OR_RETURN(std::vector<std::string> classes, ClassNames(body));
  if (ctx_.store.GetDataset(name).ok())
    return AlreadyExists("dataset '" + name + "' already exists");
  MutexLock lock(registration_mu_);  // one registration at a time: the rename below
  const fs::path stage = fs::path(ctx_.dir) / "uploads" / name,
                 final_dir = fs::path(ctx_.dir) / "datasets" / name;
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
  auto train = data::LoadTrainingSet(data_cfg, limits_);
  if (!train.ok())
    return InvalidArgument("invalid dataset '" + name + "': " + train.status().message());
  auto test = data::LoadTestSet(data_cfg, limits_);
  if (!test.ok())
    return InvalidArgument("invalid dataset '" + name + "': " + test.status().message());
  if (train->labels.empty())
    return InvalidArgument("invalid dataset '" + name + "': labels must be class indices");
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
  if (Status named =
          CheckClassNames(classes, d.num_classes, "field 'classes'",
                          "the dataset's labels are 0.." + std::to_string(d.num_classes - 1) +
                              ", so its classes are");
      !named.ok())
    return InvalidArgument("invalid dataset '" + name + "': " + named.message());
  json::array names;
  for (const auto& c : classes) names.push_back(json::value(c));
  d.classes = json::serialize(names);
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
  if (ec)
    return IoError("cannot move " + stage.string() + " to " + final_dir.string() + ": " +
                   ec.message());
  staged.Keep();  // moved: a new upload of the name may stage there again
  RemoveUnlessKept unregistered(final_dir.string());
  d.bytes = DirBytes(final_dir);
  DNND_RETURN_IF_ERROR(ctx_.store.PutDataset(d));
  unregistered.Keep();
  Log(LogLevel::kInfo, "controller", "dataset registered",
      {{"name", name}, {"train_samples", d.train_samples}});
  return HttpResponse::Json(201, DatasetJson(d));
}

// A [data] section reading `files` from `dir` in `format`.
Result<Config> DatasetsApi::DataConfig(const std::string& format, const std::string& dir,
                                       const json::object& files) {
  std::string t = "[data]\nformat = " + TomlQuote(format) + "\n";
  auto path = [&](const char* part) {
    return files.contains(part) ? TomlQuote(dir + "/" + part) : std::string("\"\"");
  };
  if (format == "idx" || format == "npy") {
    t += "train_images = " + path("train-images") + "\ntrain_labels = " + path("train-labels") +
         "\n";
    t += "test_images = " + path("test-images") + "\ntest_labels = " + path("test-labels") + "\n";
  } else if (format == "cifar10") {
    // One file per part: CIFAR-10 batch files concatenate into one.
    auto list = [&](const char* part) {
      return files.contains(part) ? "[" + path(part) + "]" : std::string("[]");
    };
    t += "train_files = " + list("train") + "\ntest_files = " + list("test") + "\n";
  } else {
    t += "train_file = " + path("train") + "\ntest_file = " + path("test") + "\n";
  }
  return Config::FromString(t, "dataset");
}

Result<HttpResponse> DatasetsApi::List(const HttpRequest&) {
  DNND_ASSIGN_OR_RETURN(auto list, ctx_.store.ListDatasets());
  json::array a;
  for (const auto& d : list) a.push_back(DatasetJson(d));
  return HttpResponse::Json(200, {{"datasets", a}});
}

Result<HttpResponse> DatasetsApi::Get(const HttpRequest& r) {
  DNND_RETURN_IF_ERROR(CheckName("dataset", r.params.at("name")));
  DNND_ASSIGN_OR_RETURN(auto d, ctx_.store.GetDataset(r.params.at("name")));
  return HttpResponse::Json(200, DatasetJson(d));
}

Result<HttpResponse> DatasetsApi::Delete(const HttpRequest& r) {
  const std::string name = r.params.at("name");
  DNND_RETURN_IF_ERROR(CheckName("dataset", name));
  MutexLock lock(registration_mu_);
  DNND_ASSIGN_OR_RETURN(auto users, ctx_.store.DeleteDataset(name));
  if (!users.empty()) {
    std::string ids;
    for (auto id : users) ids += (ids.empty() ? "" : ", ") + std::to_string(id);
    return HttpResponse::Error(409, "in_use",
                               "dataset '" + name + "' is used by queued or running job(s) " + ids);
  }
  {  // its memory goes with it (a new dataset of the name has another key anyway)
    MutexLock loaded_lock(loaded_mu_);
    std::erase_if(loaded_,
                  [&](const auto& entry) { return entry.first.rfind(name + "|", 0) == 0; });
  }
  std::error_code ec;
  fs::remove_all(fs::path(ctx_.dir) / "datasets" / name, ec);
  return HttpResponse::Json(200, {{"deleted", name}});
}
Result<std::shared_ptr<const LoadedDataset>> DatasetsApi::Load(const std::string& name) {
  DNND_ASSIGN_OR_RETURN(auto rec, ctx_.store.GetDataset(name));
  const std::string dir = ctx_.dir + "/datasets/" + name;
  const json::object files = ParseJsonText(rec.files).as_object();
  std::string key = name + "|" + rec.created;
  for (const auto& [part, file] : files) {
    if (!file.is_string())
      return Corruption("dataset '" + name + "': the store's file list is not names");
    DNND_ASSIGN_OR_RETURN(std::string version,
                          FileVersion(dir + "/" + std::string(file.get_string())));
    key += "|" + std::string(part) + "=" + version;
  }
  MutexLock lock(loaded_mu_);
  for (auto& [k, d] : loaded_)
    if (k == key) return std::shared_ptr<const LoadedDataset>(d);
  DNND_ASSIGN_OR_RETURN(Config dc, DataConfig(rec.format, dir, files));
  auto d = std::make_shared<LoadedDataset>();
  DNND_ASSIGN_OR_RETURN(d->train, data::LoadTrainingSet(dc, limits_));
  DNND_ASSIGN_OR_RETURN(d->test, data::LoadTestSet(dc, limits_));
  loaded_.insert(loaded_.begin(), {key, d});
  if (loaded_.size() > 2) loaded_.pop_back();
  return std::shared_ptr<const LoadedDataset>(d);
}

}  // namespace dnnd
