#include "roles/train/infer.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <filesystem>

#include "core/files.h"
#include "core/json_text.h"
#include "tensor/checkpoint.h"
#include "tensor/data/dataset.h"
#include "tensor/data/npy.h"
#include "tensor/ops.h"
#include "tensor/safetensors.h"

namespace dnnd {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

// A checkpoint directory means its model.safetensors.
std::string ModelFile(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) ? (fs::path(path) / "model.safetensors").string() : path;
}

// All of `set` as one batch, through the DataLoader: the very code that
// scales and standardises training batches.
Result<Tensor> AsTrainingBatch(const data::Dataset& set, const std::vector<float>& mean,
                               const std::vector<float>& stdev) {
  const data::LoaderOptions options{
      .batch_size = set.size(), .shuffle = false, .mean = mean, .std = stdev};
  DNND_RETURN_IF_ERROR(
      data::CheckLoaderOptions(set.sample_shape, options, "normalize_mean", "normalize_std"));
  data::DataLoader loader(set, options);
  return loader.GetBatch(0, 0).x;
}

}  // namespace

Result<TrainedModel> LoadTrainedModel(const std::string& model_path, const std::string& spec_path) {
  DNND_ASSIGN_OR_RETURN(SafetensorsFile mf, LoadSafetensors(model_path));
  TrainedModel out;
  if (!spec_path.empty()) {
    DNND_ASSIGN_OR_RETURN(std::string text, ReadFileToString(spec_path, 16 << 20));
    DNND_ASSIGN_OR_RETURN(out.spec, ParseModelSpecText(text, spec_path));
  } else {
    auto spec_text = mf.metadata.find("dnnd.model_spec");
    if (spec_text == mf.metadata.end())
      return InvalidArgument(model_path +
                             ": no dnnd.model_spec in its metadata; cannot rebuild the model (a "
                             "plain state dict: give its architecture with --spec model.toml)");
    DNND_ASSIGN_OR_RETURN(out.spec,
                          ParseModelSpecText(spec_text->second, model_path + " (dnnd.model_spec)"));
  }
  DNND_ASSIGN_OR_RETURN(out.meta, ReadPredictionMeta(mf.metadata, model_path));
  DNND_ASSIGN_OR_RETURN(out.model, BuildModel(out.spec, 0));
  DNND_RETURN_IF_ERROR(LoadParameters(*out.model, mf.tensors).WithContext(model_path));
  out.model->Eval();
  return out;
}

Result<ImageGeometry> ImageSize(const Shape& input) {
  auto dim = [](int64_t d) { return static_cast<int>(d); };
  if (input.size() == 2) return ImageGeometry{1, dim(input[0]), dim(input[1])};
  if (input.size() == 3 && (input[0] == 1 || input[0] == 3))
    return ImageGeometry{dim(input[0]), dim(input[1]), dim(input[2])};
  if (input.size() == 1) {
    const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(input[0]))));
    if (side * side == input[0]) return ImageGeometry{1, dim(side), dim(side)};
  }
  return InvalidArgument(
      "the model takes " + ShapeToString(input) +
      ", which is not one grayscale or colour image ([h, w], [1, h, w], a "
      "square [n], or [3, h, w]); give the samples as arrays (JSON inputs, .npy) instead");
}

Result<Tensor> ImageInputBatch(const std::string& bytes, const Shape& input,
                               const std::vector<float>& mean, const std::vector<float>& stdev,
                               const std::string& invert, const ImageLimits& limits,
                               bool* inverted) {
  DNND_ASSIGN_OR_RETURN(ImageGeometry g, ImageSize(input));
  DNND_ASSIGN_OR_RETURN(Image image, DecodeImage(bytes, g.channels, limits));
  *inverted = invert == "true" || (invert == "auto" && g.channels == 1 && HasLightBorder(image));
  if (*inverted) Invert(image);
  Image sized = ResizeImage(image, g.width, g.height);
  data::Dataset set;
  set.sample_shape = input;
  set.type = data::SampleType::kUint8;
  set.u8 = g.channels == 1 ? std::move(sized.pixels) : ChannelMajor(sized);
  return AsTrainingBatch(set, mean, stdev);
}

Result<Tensor> ArrayInputBatch(const Shape& shape, const std::vector<uint8_t>* u8,
                               const std::vector<float>* f32, const Shape& input,
                               const std::vector<float>& mean, const std::vector<float>& stdev,
                               const std::string& what) {
  const int64_t per = ShapeNumel(input), total = ShapeNumel(shape);
  const Shape tail = shape.empty() ? Shape{} : Shape(shape.begin() + 1, shape.end());
  const bool one = shape == input || shape == Shape{per};
  const bool batch = !shape.empty() && shape[0] > 0 && (tail == input || tail == Shape{per});
  if (!one && !batch)
    return InvalidArgument(
        what + " holds an array of shape " + ShapeToString(shape) +
        "; the model takes samples of " + ShapeToString(input) + ": give one sample (" +
        ShapeToString(input) + " or [" + std::to_string(per) + "]) or a batch ([n, " +
        ShapeToString(input).substr(1) + " or [n, " + std::to_string(per) + "])");
  data::Dataset set;
  set.sample_shape = input;
  if (u8) {
    set.type = data::SampleType::kUint8;
    set.u8.assign(u8->begin(), u8->begin() + total);
  } else {
    set.type = data::SampleType::kFloat32;
    set.f32.assign(f32->begin(), f32->begin() + total);
  }
  return AsTrainingBatch(set, mean, stdev);
}

bool ClassifierModel(const ModelSpec& spec) { return spec.loss == nn::LossKind::kCrossEntropy; }

std::vector<ClassScores> Classify(const ModelSpec& spec, const Tensor& y) {
  const int64_t n = y.size(0), k = y.numel() / std::max<int64_t>(1, y.size(0));
  const bool softmax_last = !spec.layers.empty() && spec.layers.back().type == "softmax";
  const Tensor p = softmax_last ? y : ops::Softmax(y.Reshape({n, k}));
  std::vector<ClassScores> out;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = p.data() + i * k;
    out.push_back({std::max_element(row, row + k) - row, std::vector<float>(row, row + k)});
  }
  return out;
}

namespace {

// Tensor mode: x as given in, y out.
Status RunTensorMode(const TrainedModel& m, const std::string& input_path,
                     const std::string& output_path) {
  DNND_ASSIGN_OR_RETURN(SafetensorsFile in, LoadSafetensors(input_path));
  Tensor x;
  for (auto& [name, t] : in.tensors)
    if (name == "x") x = t;
  if (!x.defined()) return InvalidArgument(input_path + ": no tensor named \"x\"");
  Shape expect = {x.ndim() > 0 ? x.size(0) : 0};
  expect.insert(expect.end(), m.spec.input.begin(), m.spec.input.end());
  if (x.shape() != expect)
    return InvalidArgument(input_path + ": x is " + ShapeToString(x.shape()) +
                           " but the model takes [n, " + ShapeToString(m.spec.input).substr(1));
  NoGradGuard no_grad;
  Tensor y = m.model->Forward(x);
  return SaveSafetensors(output_path, {{"y", y}});
}

// One raw input file as a batch, scaled as training batches were.
Result<Tensor> ReadInput(const std::string& path, const Shape& input,
                         const std::vector<float>& mean, const std::vector<float>& stdev,
                         const std::string& invert, bool* inverted) {
  *inverted = false;
  DNND_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path, size_t{1} << 32));
  if (SniffImageFormat(bytes) != ImageFormat::kUnknown) {
    ImageLimits limits;
    limits.pixels_setting = limits.scans_setting = "dnnd infer's image limit";
    auto batch = ImageInputBatch(bytes, input, mean, stdev, invert, limits, inverted);
    if (!batch.ok()) return batch.status().WithContext(path);
    return batch;
  }
  if (bytes.rfind("\x93NUMPY", 0) == 0) {
    DNND_ASSIGN_OR_RETURN(
        data::NdArray a,
        data::DecodeNpy(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path));
    if (a.dtype == "u1")
      return ArrayInputBatch(a.shape, &a.bytes, nullptr, input, mean, stdev, path);
    const std::vector<float> f = data::ToFloat(a);
    return ArrayInputBatch(a.shape, nullptr, &f, input, mean, stdev, path);
  }
  if (fs::path(path).extension() == ".safetensors") {
    DNND_ASSIGN_OR_RETURN(SafetensorsFile f, DecodeSafetensors(bytes, path));
    const std::pair<std::string, Tensor>* picked = nullptr;
    for (const auto& t : f.tensors)
      if (t.first == "x") picked = &t;
    if (!picked && f.tensors.size() == 1) picked = &f.tensors[0];
    if (!picked)
      return InvalidArgument(path +
                             ": no tensor named \"x\" (and more than one tensor to choose from)");
    const std::vector<float> values = picked->second.ToVector();
    if (f.uint8_names.count(picked->first)) {
      std::vector<uint8_t> u8(values.begin(), values.end());
      return ArrayInputBatch(picked->second.shape(), &u8, nullptr, input, mean, stdev, path);
    }
    return ArrayInputBatch(picked->second.shape(), nullptr, &values, input, mean, stdev, path);
  }
  return InvalidArgument(path +
                         ": not a PNG or JPEG image (by its first bytes), an .npy array or a "
                         ".safetensors file");
}

json::array JsonFloats(const std::vector<float>& v) {
  json::array a;
  for (float x : v) a.push_back(std::isfinite(x) ? DecimalOf(x) : static_cast<double>(x));
  return a;
}

std::string FloatsText(const float* p, int64_t n) {
  std::string s = "[";
  for (int64_t i = 0; i < n; ++i) s += (i ? ", " : "") + ShortestText(p[i]);
  return s + "]";
}

}  // namespace

Status RunInference(const InferOptions& o, std::FILE* out) {
  const std::string model_path = ModelFile(o.model);
  DNND_ASSIGN_OR_RETURN(TrainedModel m, LoadTrainedModel(model_path, o.spec));
  if (!o.output.empty()) {
    if (o.inputs.size() != 1)
      return InvalidArgument("--output writes the outputs of one --input x.safetensors");
    return RunTensorMode(m, o.inputs[0], o.output);
  }
  if (o.inputs.empty()) return InvalidArgument("no inputs: give image or array files");
  if (o.invert != "auto" && o.invert != "true" && o.invert != "false")
    return InvalidArgument("--invert is '" + o.invert + "'; expected auto, true or false");
  // The normalisation: the flags', else the file's.
  std::vector<float> mean = m.meta.normalize_mean, stdev = m.meta.normalize_std;
  if (o.normalize_mean) mean = *o.normalize_mean;
  if (o.normalize_std) stdev = *o.normalize_std;
  if (!m.meta.has_normalization && !(o.normalize_mean && o.normalize_std))
    std::fprintf(stderr,
                 "dnnd: infer: warning: %s records no normalisation (dnnd.normalize_mean/std); "
                 "inputs are only scaled (uint8 / 255): pass --normalize-mean and "
                 "--normalize-std if the model was trained with them\n",
                 model_path.c_str());
  DNND_RETURN_IF_ERROR(data::CheckLoaderOptions(
      m.spec.input, {.mean = mean, .std = stdev},
      o.normalize_mean ? "--normalize-mean" : model_path + " (dnnd.normalize_mean)",
      o.normalize_std ? "--normalize-std" : model_path + " (dnnd.normalize_std)"));
  const bool classifier = ClassifierModel(m.spec);
  std::vector<std::string> classes = o.classes ? *o.classes : m.meta.classes;
  auto out_shape = m.model->OutputShape(m.spec.input);
  if (!classes.empty()) {
    const std::string setting = o.classes ? "--classes" : model_path + " (dnnd.classes)";
    if (!classifier || !out_shape.ok() || out_shape->size() != 1)
      return InvalidArgument(setting + " names classes, but the model is not a classifier (" +
                             (out_shape.ok() ? ShapeToString(*out_shape) : std::string("?")) +
                             " outputs, not cross-entropy)");
    DNND_RETURN_IF_ERROR(
        CheckClassNames(classes, (*out_shape)[0], setting, "the model's output size is"));
  }

  json::array predictions;
  for (const std::string& path : o.inputs) {
    bool inverted = false;
    DNND_ASSIGN_OR_RETURN(Tensor x,
                          ReadInput(path, m.spec.input, mean, stdev, o.invert, &inverted));
    Tensor y;
    {
      NoGradGuard no_grad;
      y = m.model->Forward(x);
    }
    const int64_t n = y.size(0), k = y.numel() / std::max<int64_t>(1, n);
    std::vector<ClassScores> scores;
    if (classifier) scores = Classify(m.spec, y);
    for (int64_t i = 0; i < n; ++i) {
      const std::string name = n == 1 ? path : path + "[" + std::to_string(i) + "]";
      const float* logits = y.data() + i * k;
      json::object p{{"input", path}, {"index", i}};
      std::string line = name + ":";
      if (classifier) {
        const ClassScores& s = scores[static_cast<size_t>(i)];
        const float prob = s.probabilities[static_cast<size_t>(s.cls)];
        p["class"] = s.cls;
        line += " class " + std::to_string(s.cls);
        if (!classes.empty()) {
          p["class_name"] = classes[static_cast<size_t>(s.cls)];
          line += " (" + classes[static_cast<size_t>(s.cls)] + ")";
        }
        p["probability"] = DecimalOf(prob);
        p["probabilities"] = JsonFloats(s.probabilities);
        char buf[32];
        std::snprintf(buf, sizeof buf, " p=%.4f", static_cast<double>(prob));
        line += buf;
      }
      if (o.logits || !classifier) {
        p[classifier ? "logits" : "outputs"] = JsonFloats(std::vector<float>(logits, logits + k));
        line += std::string(classifier ? " logits " : " outputs ") + FloatsText(logits, k);
      }
      if (inverted) {
        p["inverted"] = true;
        line += " (inverted)";
      }
      if (o.json)
        predictions.push_back(std::move(p));
      else
        std::fprintf(out, "%s\n", line.c_str());
    }
  }
  if (o.json) {
    json::array input_shape, names;
    for (auto d : m.spec.input) input_shape.push_back(d);
    for (const auto& c : classes) names.push_back(json::value(c));
    json::object doc{{"model", model_path},
                     {"input", std::move(input_shape)},
                     {"normalize_mean", JsonFloats(mean)},
                     {"normalize_std", JsonFloats(stdev)},
                     {"classes", std::move(names)},
                     {"predictions", std::move(predictions)}};
    std::fprintf(out, "%s", PrettyJson(doc).c_str());
  }
  return Status::Ok();
}

}  // namespace dnnd
