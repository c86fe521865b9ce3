#include "roles/controller/models.h"

#include <toml++/toml.h>

#include <boost/json.hpp>
#include <filesystem>
#include <memory>
#include <sstream>

#include "core/files.h"
#include "core/json_fields.h"
#include "core/work_queue.h"
#include "tensor/checkpoint.h"
#include "tensor/onnx/onnx_import.h"
#include "tensor/safetensors.h"

namespace dnnd {
namespace json = boost::json;

namespace {

// A JSON value as the TOML node it stands for; `at` names it in errors
// ("model.nodes[2].out").
Result<std::unique_ptr<toml::node>> JsonToToml(const json::value& v, const std::string& at) {
  switch (v.kind()) {
    case json::kind::object: {
      auto t = std::make_unique<toml::table>();
      for (const auto& [k, x] : v.get_object()) {
        DNND_ASSIGN_OR_RETURN(auto n, JsonToToml(x, at + "." + std::string(k)));
        t->insert_or_assign(std::string(k), std::move(*n));
      }
      return std::unique_ptr<toml::node>(std::move(t));
    }
    case json::kind::array: {
      auto a = std::make_unique<toml::array>();
      for (size_t i = 0; i < v.get_array().size(); ++i) {
        DNND_ASSIGN_OR_RETURN(auto n,
                              JsonToToml(v.get_array()[i], at + "[" + std::to_string(i) + "]"));
        a->push_back(std::move(*n));
      }
      return std::unique_ptr<toml::node>(std::move(a));
    }
    case json::kind::string:
      return std::unique_ptr<toml::node>(
          std::make_unique<toml::value<std::string>>(std::string(v.get_string())));
    case json::kind::bool_:
      return std::unique_ptr<toml::node>(std::make_unique<toml::value<bool>>(v.get_bool()));
    case json::kind::int64:
      return std::unique_ptr<toml::node>(std::make_unique<toml::value<int64_t>>(v.get_int64()));
    case json::kind::uint64:
      return InvalidArgument(at + ": " + std::to_string(v.get_uint64()) +
                             " is too large (TOML integers are 64-bit signed)");
    case json::kind::double_:
      return std::unique_ptr<toml::node>(std::make_unique<toml::value<double>>(v.get_double()));
    case json::kind::null:
      return InvalidArgument(at + ": null is not a value (leave the key out for its default)");
  }
  return InvalidArgument(at + ": not a value");
}

// A JSON model spec ({"model": {...}} or the table itself) as TOML text: the
// table built with toml++ and serialised, so one parser (ParseModelSpecText)
// validates both forms, list or graph ("nodes", "blocks", "inputs" are just
// more keys).
Result<std::string> JsonSpecToToml(const json::object& spec) {
  const json::value* inner = spec.if_contains("model");
  const json::value& model = inner ? *inner : json::value(spec);
  if (!model.is_object()) return InvalidArgument("field 'spec.model' must be a JSON object");
  DNND_ASSIGN_OR_RETURN(auto table, JsonToToml(model, "model"));
  toml::table root;
  root.insert_or_assign("model", std::move(*table));
  std::ostringstream out;
  out << toml::toml_formatter{root};
  return out.str() + "\n";
}

json::object ModelJson(const ControllerContext& ctx, const ModelRecord& m) {
  json::object o{
      {"name", m.name}, {"parameters", m.parameters}, {"created", m.created}, {"spec", m.spec}};
  auto spec = ParseModelSpecText(m.spec, m.name);
  if (spec.ok()) o["input"] = ShapeJson(spec->input);
  std::error_code ec;
  o["initial_weights"] = std::filesystem::exists(ctx.InitialWeightsPath(m.name), ec);
  return o;
}

// A model's initial weights at `path` (its directory created), saying where
// they came from; `model` names the buffers stored as int64.
Status SaveInitialWeights(const std::string& path, const nn::NamedTensors& weights,
                          const std::string& source, const std::string& name,
                          const nn::Module& model) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return IoError("cannot create " + path + ": " + ec.message());
  return SaveSafetensors(path, weights, {{"dnnd.source", source}, {"dnnd.model", name}},
                         model.IntegerBufferNames());
}

}  // namespace

ModelsApi::ModelsApi(const ControllerContext& ctx, ModelLimits limits)
    : ctx_(ctx), limits_(limits) {}

void ModelsApi::AddRoutes(HttpRouter& r, std::shared_ptr<WorkQueue> heavy) {
  r.HandleOffloaded("POST", "/api/v1/models", heavy,
                    ApiHandler([this](const HttpRequest& q) { return Create(q); }));
  r.Handle("GET", "/api/v1/models", ApiHandler([this](const HttpRequest& q) { return List(q); }));
  r.Handle("GET", "/api/v1/models/{name}",
           ApiHandler([this](const HttpRequest& q) { return Get(q); }));
  r.Handle("GET", "/api/v1/models/{name}/checkpoint",
           ApiHandler([this](const HttpRequest& q) { return Checkpoint(q); }));
  const HttpUploadOptions upload{
      .dir = ctx_.dir + "/uploads",
      .max_bytes = static_cast<size_t>(ctx_.cfg.GetInt("controller.max_upload_bytes")),
      .limit_name = "controller.max_upload_bytes"};
  // Importing or checking weights builds the model: on `heavy`, like POST.
  r.HandleUpload("PUT", "/api/v1/models/{name}/onnx", upload,
                 ApiHandler([this](const HttpRequest& q) { return CreateFromOnnx(q); }), heavy);
  r.HandleUpload("PUT", "/api/v1/models/{name}/initial", upload,
                 ApiHandler([this](const HttpRequest& q) { return SetInitial(q); }), heavy);
  r.Handle("GET", "/api/v1/models/{name}/initial",
           ApiHandler([this](const HttpRequest& q) { return Initial(q); }));
}

Result<HttpResponse> ModelsApi::Create(const HttpRequest& r) {
  DNND_ASSIGN_OR_RETURN(json::object body, JsonObjectBody(r, ctx_.max_json));
  JsonFields f{body, ""};
  DNND_RETURN_IF_ERROR(f.RejectUnknown({"name", "spec"}));
  DNND_ASSIGN_OR_RETURN(std::string name, f.String("name", "", true));
  DNND_RETURN_IF_ERROR(CheckName("model", name));
  const json::value* spec_v = body.if_contains("spec");
  if (!spec_v)
    return InvalidArgument("missing field 'spec' (the model spec: TOML text or a JSON object)");
  std::string toml_text;
  if (spec_v->is_string()) {
    toml_text = std::string(spec_v->get_string());
  } else if (spec_v->is_object()) {
    auto text = JsonSpecToToml(spec_v->get_object());
    if (!text.ok()) return InvalidArgument("invalid model spec: " + text.status().message());
    toml_text = std::move(text).value();
  } else {
    return InvalidArgument("field 'spec' must be TOML text or a JSON object");
  }
  auto spec = ParseModelSpecText(toml_text, "spec");
  if (!spec.ok()) return InvalidArgument("invalid model spec: " + spec.status().message());
  auto model = BuildModel(*spec, 0, limits_);
  if (!model.ok()) return InvalidArgument("invalid model spec: " + model.status().message());
  ModelRecord m{name, ModelSpecToToml(*spec), (*model)->ParameterCount(), UtcNow()};
  DNND_RETURN_IF_ERROR(ctx_.store.PutModel(m));
  return HttpResponse::Json(201, ModelJson(ctx_, m));
}

Result<HttpResponse> ModelsApi::CreateFromOnnx(const HttpRequest& r) {
  const std::string name = r.params.at("name");
  DNND_RETURN_IF_ERROR(CheckName("model", name));
  // The server streamed the body to r.body_file, under max_upload_bytes.
  if (r.body_file.empty()) return Internal("upload route called without a streamed body");
  if (r.body_file_bytes == 0) return InvalidArgument("empty ONNX upload for model '" + name + "'");
  if (ctx_.store.GetModel(name).ok()) return AlreadyExists("model '" + name + "' already exists");
  DNND_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(r.body_file, onnx::kMaxOnnxBytes));
  std::error_code ec;
  std::filesystem::remove(r.body_file, ec);
  auto imported = onnx::ImportOnnx(bytes, name + ".onnx", limits_);
  if (!imported.ok()) {
    if (imported.status().code() == StatusCode::kResourceExhausted) return imported.status();
    return InvalidArgument("invalid ONNX model: " + imported.status().message());
  }
  bytes.clear();
  DNND_ASSIGN_OR_RETURN(auto model, BuildModel(imported->spec, 0, limits_));
  // The weights first: a model record never names weights that are not there.
  const std::string path = ctx_.InitialWeightsPath(name);
  DNND_RETURN_IF_ERROR(SaveInitialWeights(path, imported->weights, "onnx", name, *model));
  ModelRecord m{name, ModelSpecToToml(imported->spec), model->ParameterCount(), UtcNow()};
  Status put = ctx_.store.PutModel(m);
  if (!put.ok()) {
    std::filesystem::remove(path, ec);
    return put;
  }
  json::object out = ModelJson(ctx_, m);
  json::array renamed;
  for (const auto& x : imported->renamed) renamed.push_back(json::value(x));
  out["renamed"] = std::move(renamed);
  return HttpResponse::Json(201, std::move(out));
}

Result<HttpResponse> ModelsApi::SetInitial(const HttpRequest& r) {
  const std::string name = r.params.at("name");
  DNND_RETURN_IF_ERROR(CheckName("model", name));
  if (r.body_file.empty()) return Internal("upload route called without a streamed body");
  DNND_ASSIGN_OR_RETURN(ModelRecord m, ctx_.store.GetModel(name));
  auto file = LoadSafetensors(r.body_file);
  if (!file.ok()) {
    if (file.status().code() == StatusCode::kResourceExhausted) return file.status();
    return InvalidArgument("invalid initial weights for model '" + name +
                           "': " + file.status().message());
  }
  // The spec's own model takes them, or the job's workers would refuse them
  // later: every missing, unexpected and mis-shaped name is listed now.
  DNND_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelSpecText(m.spec, name));
  DNND_ASSIGN_OR_RETURN(auto model, BuildModel(spec, 0, limits_));
  if (Status s = LoadParameters(*model, file->tensors); !s.ok())
    return InvalidArgument("the initial weights do not fit model '" + name + "': " + s.message());
  // A model's start never changes under its jobs (a data-parallel job's
  // workers fetch it one by one): set once; another start is another model.
  std::lock_guard lock(initial_mu_);
  const std::string path = ctx_.InitialWeightsPath(name);
  std::error_code ec;
  if (std::filesystem::exists(path, ec))
    return AlreadyExists("model '" + name +
                         "' already has initial weights; register the spec under another name "
                         "for another start");
  // Re-encoded from the model: the model's names and dtypes, not the upload's metadata.
  DNND_RETURN_IF_ERROR(SaveInitialWeights(path, model->NamedState(), "upload", name, *model));
  return HttpResponse::Json(200, ModelJson(ctx_, m));
}

Result<HttpResponse> ModelsApi::Initial(const HttpRequest& r) {
  const std::string name = r.params.at("name");
  DNND_RETURN_IF_ERROR(CheckName("model", name));
  DNND_RETURN_IF_ERROR(ctx_.store.GetModel(name).status());
  const std::string path = ctx_.InitialWeightsPath(name);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return NotFound("model '" + name + "' starts from its seed; it has no initial weights");
  DNND_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  return HttpResponse::Text(200, std::move(bytes), "application/octet-stream");
}

Result<HttpResponse> ModelsApi::List(const HttpRequest&) {
  DNND_ASSIGN_OR_RETURN(auto list, ctx_.store.ListModels());
  json::array a;
  for (const auto& m : list) a.push_back(ModelJson(ctx_, m));
  return HttpResponse::Json(200, {{"models", a}});
}

Result<HttpResponse> ModelsApi::Get(const HttpRequest& r) {
  DNND_RETURN_IF_ERROR(CheckName("model", r.params.at("name")));
  DNND_ASSIGN_OR_RETURN(auto m, ctx_.store.GetModel(r.params.at("name")));
  return HttpResponse::Json(200, ModelJson(ctx_, m));
}

// The newest succeeded job's trained weights for this model.
Result<HttpResponse> ModelsApi::Checkpoint(const HttpRequest& r) {
  const std::string name = r.params.at("name");
  DNND_RETURN_IF_ERROR(CheckName("model", name));
  DNND_RETURN_IF_ERROR(ctx_.store.GetModel(name).status());
  DNND_ASSIGN_OR_RETURN(auto newest, ctx_.store.NewestSucceededJob(name));
  if (newest) return ctx_.Checkpoint(*newest);
  return NotFound("model '" + name + "' has no succeeded job yet");
}

}  // namespace dnnd
