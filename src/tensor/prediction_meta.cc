#include "tensor/prediction_meta.h"

#include <boost/json.hpp>
#include <cmath>

#include "core/json_text.h"

namespace dnnd {
namespace {

namespace json = boost::json;

std::string FloatsJson(const std::vector<float>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + ShortestText(v[i]);
  return out + "]";
}

Result<json::array> ArrayOf(const std::map<std::string, std::string>& meta, const char* key,
                            const std::string& what) {
  boost::system::error_code ec;
  const json::value v = json::parse(meta.at(key), ec);
  if (ec || !v.is_array())
    return InvalidArgument(what + ": metadata " + key + " is not a JSON array: " + meta.at(key));
  return v.get_array();
}

Result<std::vector<float>> Floats(const std::map<std::string, std::string>& meta, const char* key,
                                  const std::string& what) {
  DNND_ASSIGN_OR_RETURN(json::array a, ArrayOf(meta, key, what));
  std::vector<float> out;
  for (const auto& x : a) {
    if (!x.is_number() || !std::isfinite(x.to_number<double>()))
      return InvalidArgument(what + ": metadata " + key + " holds a non-number: " + meta.at(key));
    out.push_back(static_cast<float>(x.to_number<double>()));
  }
  if (out.empty()) return InvalidArgument(what + ": metadata " + key + " is empty");
  return out;
}

}  // namespace

void AddPredictionMeta(const PredictionMeta& p, std::map<std::string, std::string>& meta) {
  if (!p.input.empty()) {
    json::array shape;
    for (auto d : p.input) shape.push_back(d);
    meta[kMetaInputShape] = json::serialize(shape);
  }
  meta[kMetaChannelOrder] = json::serialize(json::value(p.channel_order));
  meta[kMetaNormalizeMean] = FloatsJson(p.normalize_mean);
  meta[kMetaNormalizeStd] = FloatsJson(p.normalize_std);
  if (!p.classes.empty()) {
    json::array names;
    for (const auto& c : p.classes) names.push_back(json::value(c));
    meta[kMetaClasses] = json::serialize(names);
  }
}

Result<PredictionMeta> ReadPredictionMeta(const std::map<std::string, std::string>& meta,
                                          const std::string& what) {
  PredictionMeta p;
  if (meta.count(kMetaInputShape)) {
    DNND_ASSIGN_OR_RETURN(json::array a, ArrayOf(meta, kMetaInputShape, what));
    for (const auto& d : a) {
      if (!d.is_int64() || d.as_int64() <= 0)
        return InvalidArgument(
            what + ": metadata " + kMetaInputShape +
            " holds a non-positive or non-integer size: " + meta.at(kMetaInputShape));
      p.input.push_back(d.as_int64());
    }
  }
  if (auto it = meta.find(kMetaChannelOrder); it != meta.end()) {
    boost::system::error_code ec;
    const json::value v = json::parse(it->second, ec);
    if (ec || !v.is_string() || v.get_string() != "chw")
      return InvalidArgument(what + ": metadata " + kMetaChannelOrder + " is " + it->second +
                             "; dnnd reads only \"chw\" (channel-major samples)");
  }
  const bool has_mean = meta.count(kMetaNormalizeMean) > 0,
             has_std = meta.count(kMetaNormalizeStd) > 0;
  if (has_mean != has_std)
    return InvalidArgument(what + ": metadata has " +
                           (has_mean ? kMetaNormalizeMean : kMetaNormalizeStd) + " but not " +
                           (has_mean ? kMetaNormalizeStd : kMetaNormalizeMean));
  if (has_mean) {
    DNND_ASSIGN_OR_RETURN(p.normalize_mean, Floats(meta, kMetaNormalizeMean, what));
    DNND_ASSIGN_OR_RETURN(p.normalize_std, Floats(meta, kMetaNormalizeStd, what));
    p.has_normalization = true;
  }
  if (meta.count(kMetaClasses)) {
    DNND_ASSIGN_OR_RETURN(json::array a, ArrayOf(meta, kMetaClasses, what));
    for (const auto& c : a) {
      if (!c.is_string())
        return InvalidArgument(what + ": metadata " + kMetaClasses +
                               " must be an array of strings: " + meta.at(kMetaClasses));
      p.classes.emplace_back(c.get_string());
    }
  }
  return p;
}

void CopyPredictionMeta(const std::map<std::string, std::string>& from,
                        std::map<std::string, std::string>& to) {
  for (const char* key :
       {kMetaInputShape, kMetaChannelOrder, kMetaNormalizeMean, kMetaNormalizeStd, kMetaClasses})
    if (auto it = from.find(key); it != from.end()) to[key] = it->second;
}

Status CheckClassNames(const std::vector<std::string>& classes, int64_t count,
                       const std::string& setting, const std::string& of) {
  if (classes.empty()) return Status::Ok();
  for (size_t i = 0; i < classes.size(); ++i)
    if (classes[i].empty())
      return InvalidArgument(setting + ": name " + std::to_string(i) + " is empty");
  if (static_cast<int64_t>(classes.size()) != count)
    return InvalidArgument(setting + " lists " + std::to_string(classes.size()) +
                           " class names but " + of + " " + std::to_string(count) +
                           "; give one name per class, in label order");
  return Status::Ok();
}

}  // namespace dnnd
