#include "roles/controller/predictor.h"

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <cmath>
#include <optional>

#include "core/files.h"
#include "core/image.h"
#include "core/json_fields.h"
#include "roles/controller/controller.h"
#include "roles/controller/store.h"
#include "roles/train/job_spec.h"
#include "tensor/data/dataset.h"
#include "tensor/ops.h"

namespace dnnd {
namespace {

namespace json = boost::json;

// How the job's training data was scaled: (x - mean) / std after uint8 -> [0, 1]
// (the job's normalize_mean / normalize_std; 0 and 1 when it has none).
struct Scaling {
  float mean = 0.0f, std = 1.0f;  // every channel alike
};

Scaling JobScaling(const JobRecord& job) {
  boost::system::error_code ec;
  const json::value p = json::parse(job.params, ec);
  if (ec || !p.is_object()) return {};
  auto spec = JobSpec::FromJson(p.get_object(), JobSpec::Stored());
  if (!spec.ok()) return {};
  return {static_cast<float>(spec->normalize_mean), static_cast<float>(spec->normalize_std)};
}

// Appends `v`'s numbers to `values`, recording the nesting as `shape`
// (checked to be rectangular). `where` names the sample in errors.
Status FlattenSample(const json::value& v, size_t depth, Shape& shape, std::vector<float>& values,
                     const std::string& where) {
  if (v.is_number()) {
    if (depth != shape.size())
      return InvalidArgument(where + " is ragged: a number where an array was expected");
    values.push_back(static_cast<float>(v.to_number<double>()));
    return Status::Ok();
  }
  if (!v.is_array()) return InvalidArgument(where + " must hold only numbers and arrays");
  const json::array& a = v.get_array();
  if (depth == shape.size()) {
    if (!values.empty() || depth > 8)
      return InvalidArgument(where + " is ragged or nested too deeply");
    shape.push_back(static_cast<int64_t>(a.size()));
  } else if (shape[depth] != static_cast<int64_t>(a.size())) {
    return InvalidArgument(where + " is ragged: arrays of " + std::to_string(shape[depth]) +
                           " and " + std::to_string(a.size()) + " elements at depth " +
                           std::to_string(depth));
  }
  for (const auto& x : a) DNND_RETURN_IF_ERROR(FlattenSample(x, depth + 1, shape, values, where));
  return Status::Ok();
}

// Events of Boost.JSON's parser for the common body, {"inputs": [[n, ...], ...]}
// with every sample flat and `per` numbers long: the numbers go straight into
// `values` (converted as json::value::to_number<double> then float would),
// with no document built. Anything else (shaped samples, other keys, a wrong
// size, invalid JSON) stops the parser; the caller then takes the general
// path, which accepts what it accepts and words the errors.
class FlatInputs {
 public:
  static constexpr std::size_t max_array_size = -1, max_object_size = -1, max_string_size = -1,
                               max_key_size = -1;
  FlatInputs(int64_t per, std::vector<float>* values) : per_(per), values_(values) {}
  bool Complete() const { return depth_ == 0 && samples_ > 0; }

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code& ec) { return Step(depth_ == 0 && samples_ == 0, 1, ec); }
  bool on_object_end(std::size_t, json::error_code& ec) {
    return Step(depth_ == 1 && samples_ > 0, 0, ec);
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code& ec) { return Key(s, ec); }
  bool on_key(json::string_view s, std::size_t, json::error_code& ec) {
    if (!Key(s, ec)) return false;
    const bool inputs = key_ == "inputs";
    key_.clear();
    return Step(inputs && samples_ == 0, 1, ec);
  }
  bool on_array_begin(json::error_code& ec) {
    if (values_->empty()) values_->reserve(static_cast<size_t>(per_));
    count_ = 0;
    return Step(depth_ == 1 || depth_ == 2, depth_ + 1, ec);
  }
  bool on_array_end(std::size_t, json::error_code& ec) {
    if (depth_ != 3) return Step(depth_ == 2 && samples_ > 0, 1, ec);
    if (count_ != per_) return Fail(ec);
    ++samples_;
    return Step(true, 2, ec);
  }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(int64_t i, json::string_view, json::error_code& ec) {
    return Number(static_cast<double>(i), ec);
  }
  bool on_uint64(uint64_t u, json::string_view, json::error_code& ec) {
    return Number(static_cast<double>(u), ec);
  }
  bool on_double(double d, json::string_view, json::error_code& ec) { return Number(d, ec); }
  bool on_string_part(json::string_view, std::size_t, json::error_code& ec) { return Fail(ec); }
  bool on_string(json::string_view, std::size_t, json::error_code& ec) { return Fail(ec); }
  bool on_bool(bool, json::error_code& ec) { return Fail(ec); }
  bool on_null(json::error_code& ec) { return Fail(ec); }
  bool on_comment_part(json::string_view, json::error_code& ec) { return Fail(ec); }
  bool on_comment(json::string_view, json::error_code& ec) { return Fail(ec); }

 private:
  static bool Fail(json::error_code& ec) {
    ec = json::make_error_code(json::error::syntax);
    return false;
  }
  // depth_: 0 outside, 1 in the object, 2 in "inputs", 3 in a sample.
  bool Step(bool ok, int depth, json::error_code& ec) {
    if (!ok) return Fail(ec);
    depth_ = depth;
    return true;
  }
  bool Key(json::string_view s, json::error_code& ec) {
    if (depth_ != 1 || key_.size() + s.size() > 6) return Fail(ec);
    key_.append(s.data(), s.size());
    return true;
  }
  bool Number(double d, json::error_code& ec) {
    if (depth_ != 3 || count_ == per_) return Fail(ec);
    values_->push_back(static_cast<float>(d));
    ++count_;
    return true;
  }

  const int64_t per_;
  std::vector<float>* values_;
  std::string key_;
  int depth_ = 0;
  int64_t count_ = 0;    // numbers in the current sample
  int64_t samples_ = 0;  // complete samples
};

// The body's samples if it is the common form FlatInputs takes, else nullopt.
std::optional<std::vector<float>> ParseFlatInputs(const std::string& body, int64_t per) {
  std::vector<float> values;
  json::basic_parser<FlatInputs> parser(json::parse_options{}, per, &values);
  json::error_code ec;
  const size_t n = parser.write_some(false, body.data(), body.size(), ec);
  if (ec || n != body.size() || !parser.done() || !parser.handler().Complete()) return std::nullopt;
  return values;
}

// The samples of {"inputs": [sample, ...]}, flat, each sample flat or shaped
// like `input`, in the dataset's scale (pixels in [0, 1]).
Result<std::vector<float>> JsonSamples(const HttpRequest& r, const Shape& input) {
  const int64_t per = ShapeNumel(input);
  if (auto flat = ParseFlatInputs(r.body, per)) return std::move(*flat);
  DNND_ASSIGN_OR_RETURN(json::value v, ParseJsonBody(r));
  if (v.is_object())
    DNND_RETURN_IF_ERROR((JsonFields{v.get_object(), ""}.RejectUnknown({"inputs"})));
  const json::value* inputs = v.is_object() ? v.get_object().if_contains("inputs") : nullptr;
  if (!inputs || !inputs->is_array() || inputs->get_array().empty())
    return InvalidArgument(
        "the JSON body must be {\"inputs\": [sample, ...]} with at least one sample");
  std::vector<float> values;
  const json::array& samples = inputs->get_array();
  values.reserve(samples.size() * static_cast<size_t>(per));
  for (size_t i = 0; i < samples.size(); ++i) {
    const std::string where = "inputs[" + std::to_string(i) + "]";
    Shape shape;
    std::vector<float> one;
    DNND_RETURN_IF_ERROR(FlattenSample(samples[i], 0, shape, one, where));
    if (shape != input && shape != Shape{per})
      return InvalidArgument(where + " has shape " + ShapeToString(shape) + " (" +
                             std::to_string(one.size()) + " values); the model takes " +
                             ShapeToString(input) + " (" + std::to_string(per) +
                             " values), flat or shaped");
    values.insert(values.end(), one.begin(), one.end());
  }
  return values;
}

// The JSON body's samples as a batch, standardised as training batches are.
Result<Tensor> JsonInput(const HttpRequest& r, const Shape& input, Scaling scaling) {
  DNND_ASSIGN_OR_RETURN(std::vector<float> values, JsonSamples(r, input));
  const int64_t per = ShapeNumel(input);
  return ArrayInputBatch({static_cast<int64_t>(values.size()) / per, per}, nullptr, &values, input,
                         {scaling.mean}, {scaling.std}, "the JSON body");
}

// "image/png; charset=x" -> "image/png".
std::string MediaType(const HttpRequest& r) {
  std::string t = r.header("Content-Type");
  t = t.substr(0, t.find(';'));
  while (!t.empty() && t.back() == ' ') t.pop_back();
  for (auto& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

json::array Floats(const float* p, int64_t n) {
  json::array a;
  a.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) a.push_back(static_cast<double>(p[i]));
  return a;
}

// One prediction object per row of the model's output `y` ([n, k]), with
// "class_name" when the model file names its classes.
json::array Predictions(const TrainedModel& m, const Tensor& y) {
  const int64_t n = y.size(0), k = y.numel() / std::max<int64_t>(1, y.size(0));
  json::array out;
  if (!ClassifierModel(m.spec)) {
    for (int64_t i = 0; i < n; ++i)
      out.push_back(json::object{{"outputs", Floats(y.data() + i * k, k)}});
    return out;
  }
  const std::vector<std::string>& names = m.meta.classes;
  for (const ClassScores& s : Classify(m.spec, y)) {
    json::object o{{"class", s.cls},
                   {"probabilities",
                    Floats(s.probabilities.data(), static_cast<int64_t>(s.probabilities.size()))}};
    if (s.cls < static_cast<int64_t>(names.size()))
      o["class_name"] = names[static_cast<size_t>(s.cls)];
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace

Predictor::Predictor(ControllerStore& store, Options options)
    : store_(store), options_(std::move(options)) {}

HttpResponse Predictor::Predict(const HttpRequest& request) {
  Result<HttpResponse> r = Answer(request);
  if (r.ok()) return std::move(r).value();
  if (r.status().code() == StatusCode::kResourceExhausted)
    return HttpResponse::Error(413, "payload_too_large", r.status().message());
  return HttpResponse::FromStatus(r.status());
}

Result<HttpResponse> Predictor::Answer(const HttpRequest& r) {
  const std::string name = r.params.at("name");
  if (!IsValidName(name)) return InvalidArgument("invalid model name '" + name + "'");
  if (r.body.size() > options_.max_body_bytes)
    return ResourceExhausted("request body is " + std::to_string(r.body.size()) +
                             " bytes; the limit is " + std::to_string(options_.max_body_bytes) +
                             " (http.max_body_bytes)");
  const std::string media = MediaType(r);
  const bool is_image = media.rfind("image/", 0) == 0;
  if (!is_image && media != "application/json")
    return HttpResponse::Error(415, "unsupported_media_type",
                               "Content-Type '" + media +
                                   "': send an image (image/png, image/jpeg) or "
                                   "application/json {\"inputs\": [...]}");
  if (is_image && SniffImageFormat(r.body) == ImageFormat::kUnknown)
    return HttpResponse::Error(
        415, "unsupported_media_type",
        "only PNG and JPEG images are accepted (recognised by their first bytes), or "
        "application/json {\"inputs\": [...]}");
  auto q = r.query.find("invert");
  const std::string invert = q == r.query.end() ? "auto" : q->second;
  if (invert != "auto" && invert != "true" && invert != "false")
    return InvalidArgument("invert is '" + invert + "'; expected auto, true or false");
  auto resolved = Resolve(name, r);
  if (auto* refusal = std::get_if<HttpResponse>(&resolved)) return std::move(*refusal);
  const Resolved& job = std::get<Resolved>(resolved);
  const int64_t id = job.job;
  DNND_ASSIGN_OR_RETURN(std::shared_ptr<const TrainedModel> m, Load(id));
  const Scaling scaling{job.mean, job.std};
  bool inverted = false;
  DNND_ASSIGN_OR_RETURN(
      Tensor x, is_image ? ImageInputBatch(r.body, m->spec.input, {scaling.mean}, {scaling.std},
                                           invert, options_.image, &inverted)
                         : JsonInput(r, m->spec.input, scaling));
  json::array predictions;
  {
    NoGradGuard no_grad;  // evaluation only: nothing recorded for backward
    predictions = Predictions(*m, m->model->Forward(x));
  }
  if (is_image) predictions[0].as_object()["inverted"] = inverted;
  json::array input;
  for (auto d : m->spec.input) input.push_back(d);
  json::object answer{{"model", name},
                      {"job", id},
                      {"input", std::move(input)},
                      {"predictions", std::move(predictions)}};
  if (!m->meta.classes.empty()) {  // the names of the dataset the job trained on
    json::array names;
    for (const auto& c : m->meta.classes) names.push_back(json::value(c));
    answer["classes"] = std::move(names);
  }
  return HttpResponse::Json(200, std::move(answer));
}

std::variant<Predictor::Resolved, HttpResponse> Predictor::Resolve(const std::string& model,
                                                                   const HttpRequest& r) {
  auto q = r.query.find("job");
  std::string key = model;
  key.push_back('\0');
  if (q != r.query.end()) key += q->second;
  // Read before the queries: a write after this point changes the generation,
  // so what they return is never kept under a generation newer than it.
  const uint64_t generation = store_.Generation();
  {
    MutexLock lock(cache_mu_);
    auto it = resolved_.find(key);
    if (it != resolved_.end() && it->second.generation == generation) return it->second;
  }
  if (auto m = store_.GetModel(model); !m.ok()) return HttpResponse::FromStatus(m.status());
  auto job = ResolveJob(model, r);
  if (auto* refusal = std::get_if<HttpResponse>(&job)) return std::move(*refusal);
  const Scaling scaling = JobScaling(std::get<JobRecord>(job));
  const Resolved out{generation, std::get<JobRecord>(job).id, scaling.mean, scaling.std};
  MutexLock lock(cache_mu_);
  if (resolved_.size() >= kCachedResolutions) resolved_.clear();
  resolved_[key] = out;
  return out;
}

std::variant<JobRecord, HttpResponse> Predictor::ResolveJob(const std::string& model,
                                                            const HttpRequest& r) {
  auto q = r.query.find("job");
  if (q == r.query.end()) {
    auto newest = store_.NewestSucceededJob(model);
    if (!newest.ok()) return HttpResponse::FromStatus(newest.status());
    if (!*newest)
      return HttpResponse::Error(409, "not_trained",
                                 "model '" + model +
                                     "' has no succeeded job yet: train it first "
                                     "(POST /api/v1/jobs), then predict");
    auto j = store_.GetJob(**newest);
    if (!j.ok()) return HttpResponse::FromStatus(j.status());
    return std::move(j).value();
  }
  const std::string& s = q->second;
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
    return HttpResponse::Error(400, "invalid_argument",
                               "invalid job id '" + s + "': expected a positive integer");
  auto j = store_.GetJob(std::stoll(s));
  if (!j.ok()) return HttpResponse::FromStatus(j.status());
  if (j->model != model)
    return HttpResponse::Error(
        400, "invalid_argument",
        "job " + s + " trained model '" + j->model + "', not '" + model + "'");
  if (j->state != kJobSucceeded)
    return HttpResponse::Error(
        409, "not_trained", "job " + s + " is " + j->state + "; predictions need a succeeded job");
  return std::move(j).value();
}

Result<std::shared_ptr<const TrainedModel>> Predictor::Load(int64_t job) {
  const std::string path = options_.checkpoint_path(job);
  auto version = FileVersion(path);
  if (!version.ok())
    return NotFound("job " + std::to_string(job) + " succeeded but its checkpoint " + path +
                    " is missing");
  // A replaced or rewritten file (same path) is a different model: its inode, size and mtime are in
  // the key.
  const std::string key = path + "|" + *version;
  {
    MutexLock lock(cache_mu_);
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      if (it->key != key) continue;
      cache_.splice(cache_.begin(), cache_, it);  // most recently used first
      return cache_.front().model;
    }
  }
  // Loaded outside the lock: other models keep answering meanwhile. Two
  // first calls may both load; the first inserted wins, the other is dropped.
  auto loaded = LoadTrainedModel(path);
  if (!loaded.ok())  // the controller's own file: a server-side fault, not the caller's
    return Status(StatusCode::kInternal, "cannot load the checkpoint of job " +
                                             std::to_string(job) + ": " +
                                             loaded.status().message());
  auto model = std::make_shared<const TrainedModel>(std::move(loaded).value());
  MutexLock lock(cache_mu_);
  for (const auto& c : cache_)
    if (c.key == key) return c.model;
  cache_.push_front({key, model});
  if (cache_.size() > kCachedModels) cache_.pop_back();
  return model;
}

}  // namespace dnnd
