#include "roles/train/infer.h"

#include "tensor/checkpoint.h"
#include "tensor/safetensors.h"

namespace dnnd {

Result<TrainedModel> LoadTrainedModel(const std::string& model_path) {
  DNND_ASSIGN_OR_RETURN(SafetensorsFile mf, LoadSafetensors(model_path));
  auto spec_text = mf.metadata.find("dnnd.model_spec");
  if (spec_text == mf.metadata.end())
    return InvalidArgument(model_path +
                           ": no dnnd.model_spec in its metadata; cannot rebuild the model");
  TrainedModel out;
  DNND_ASSIGN_OR_RETURN(out.spec,
                        ParseModelSpecText(spec_text->second, model_path + " (dnnd.model_spec)"));
  DNND_ASSIGN_OR_RETURN(out.model, BuildModel(out.spec, 0));
  DNND_RETURN_IF_ERROR(LoadParameters(*out.model, mf.tensors).WithContext(model_path));
  out.model->Eval();
  return out;
}

Status RunInference(const std::string& model_dir, const std::string& input_path,
                    const std::string& output_path) {
  DNND_ASSIGN_OR_RETURN(TrainedModel m, LoadTrainedModel(model_dir + "/model.safetensors"));
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

}  // namespace dnnd
