#include "roles/controller/models.h"

#include <boost/json.hpp>
#include <sstream>

#include "core/json_fields.h"
#include "core/work_queue.h"

namespace dnnd {
namespace json = boost::json;

namespace {

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
    case json::kind::string:
      return TomlQuote(std::string(v.get_string()));
    case json::kind::bool_:
      return v.get_bool() ? "true" : "false";
    case json::kind::int64:
      return std::to_string(v.get_int64());
    case json::kind::uint64:
      return std::to_string(v.get_uint64());
    case json::kind::double_: {
      std::ostringstream o;
      o.precision(17);
      o << v.get_double();
      std::string s = o.str();
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      return s;
    }
    case json::kind::null:
      return "\"\"";
  }
  return "\"\"";
}

json::object ModelJson(const ModelRecord& m) {
  json::object o{
      {"name", m.name}, {"parameters", m.parameters}, {"created", m.created}, {"spec", m.spec}};
  auto spec = ParseModelSpecText(m.spec, m.name);
  if (spec.ok()) o["input"] = ShapeJson(spec->input);
  return o;
}

}  // namespace

ModelsApi::ModelsApi(const ControllerContext& ctx, ModelLimits limits)
    : ctx_(ctx), limits_(limits) {}

void ModelsApi::AddRoutes(HttpRouter& r, std::shared_ptr<WorkQueue> heavy) {
  r.HandleOffloaded("POST", "/api/v1/models", std::move(heavy),
                    ApiHandler([this](const HttpRequest& q) { return Create(q); }));
  r.Handle("GET", "/api/v1/models", ApiHandler([this](const HttpRequest& q) { return List(q); }));
  r.Handle("GET", "/api/v1/models/{name}",
           ApiHandler([this](const HttpRequest& q) { return Get(q); }));
  r.Handle("GET", "/api/v1/models/{name}/checkpoint",
           ApiHandler([this](const HttpRequest& q) { return Checkpoint(q); }));
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
    const json::value* inner = spec_v->get_object().if_contains("model");
    toml_text = "model = " + JsonToToml(inner ? *inner : *spec_v) + "\n";
  } else {
    return InvalidArgument("field 'spec' must be TOML text or a JSON object");
  }
  auto spec = ParseModelSpecText(toml_text, "spec");
  if (!spec.ok()) return InvalidArgument("invalid model spec: " + spec.status().message());
  auto model = BuildModel(*spec, 0, limits_);
  if (!model.ok()) return InvalidArgument("invalid model spec: " + model.status().message());
  ModelRecord m{name, ModelSpecToToml(*spec), (*model)->ParameterCount(), UtcNow()};
  DNND_RETURN_IF_ERROR(ctx_.store.PutModel(m));
  return HttpResponse::Json(201, ModelJson(m));
}

Result<HttpResponse> ModelsApi::List(const HttpRequest&) {
  DNND_ASSIGN_OR_RETURN(auto list, ctx_.store.ListModels());
  json::array a;
  for (const auto& m : list) a.push_back(ModelJson(m));
  return HttpResponse::Json(200, {{"models", a}});
}

Result<HttpResponse> ModelsApi::Get(const HttpRequest& r) {
  DNND_RETURN_IF_ERROR(CheckName("model", r.params.at("name")));
  DNND_ASSIGN_OR_RETURN(auto m, ctx_.store.GetModel(r.params.at("name")));
  return HttpResponse::Json(200, ModelJson(m));
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
