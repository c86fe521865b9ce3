#include "roles/ctl/tables.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstdio>

#include "core/json_text.h"

namespace dnnd::ctl {

namespace json = boost::json;

std::string Num(const json::value& v) {
  if (v.is_null()) return "-";
  if (v.is_int64()) return std::to_string(v.as_int64());
  if (v.is_uint64()) return std::to_string(v.as_uint64());
  if (v.is_double()) {
    const double d = v.as_double();
    char b[48];
    std::snprintf(b, sizeof b, std::fabs(d) >= 1000 && std::fabs(d) < 1e15 ? "%.0f" : "%.4g", d);
    return b;
  }
  if (v.is_string()) return std::string(v.as_string());
  return json::serialize(v);
}

void Table(const std::vector<std::string>& header,
           const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    w[c] = header[c].size();
    for (const auto& r : rows) w[c] = std::max(w[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (size_t c = 0; c < r.size(); ++c)
      s += r[c] + (c + 1 < r.size() ? std::string(w[c] - r[c].size() + 2, ' ') : "");
    std::printf("%s\n", s.c_str());
  };
  line(header);
  for (const auto& r : rows) line(r);
}

void PrintDatasets(const json::value& v) {
  const json::object* one = v.as_object().contains("datasets") ? nullptr : &v.as_object();
  std::vector<std::vector<std::string>> rows;
  auto row = [&](const json::value& d) {
    rows.push_back({Num(d.at("name")), Num(d.at("format")), Num(d.at("train_samples")),
                    Num(d.at("test_samples")), Num(d.at("num_classes")),
                    json::serialize(d.at("sample_shape")), Num(d.at("bytes")),
                    json::serialize(d.at("class_histogram"))});
  };
  if (one)
    row(v);
  else
    for (const auto& d : v.at("datasets").as_array()) row(d);
  Table({"NAME", "FORMAT", "TRAIN", "TEST", "CLASSES", "SHAPE", "BYTES", "HISTOGRAM"}, rows);
  if (one && v.as_object().contains("classes") && v.at("classes").is_array() &&
      !v.at("classes").as_array().empty()) {
    std::string names;
    for (const auto& c : v.at("classes").as_array()) names += (names.empty() ? "" : ", ") + Num(c);
    std::printf("class names: %s\n", names.c_str());
  }
}

void PrintModels(const json::value& v) {
  const bool one = !v.as_object().contains("models");
  std::vector<std::vector<std::string>> rows;
  auto row = [&](const json::value& m) {
    rows.push_back({Num(m.at("name")), Num(m.at("parameters")),
                    m.as_object().contains("input") ? json::serialize(m.at("input")) : "-",
                    Num(m.at("created"))});
  };
  if (one)
    row(v);
  else
    for (const auto& m : v.at("models").as_array()) row(m);
  Table({"NAME", "PARAMETERS", "INPUT", "CREATED"}, rows);
  if (one && v.as_object().contains("spec")) std::printf("\n%s", Num(v.at("spec")).c_str());
}

void PrintJobs(const json::value& v) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& j : v.at("jobs").as_array()) {
    char progress[16];
    std::snprintf(progress, sizeof progress, "%.0f%%", j.at("progress").to_number<double>());
    rows.push_back({Num(j.at("id")), Num(j.at("state")), Num(j.at("model")), Num(j.at("dataset")),
                    Num(j.at("epoch")) + "/" + Num(j.at("params").at("epochs")), progress,
                    Num(j.at("eta_seconds")), Num(j.at("reason"))});
  }
  Table({"ID", "STATE", "MODEL", "DATASET", "EPOCH", "PROGRESS", "ETA_S", "REASON"}, rows);
}

void PrintNodes(const json::value& v) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : v.at("nodes").as_array()) {
    char seen[32];
    std::snprintf(seen, sizeof seen, "%.1fs", n.at("last_seen_seconds").to_number<double>());
    rows.push_back({Num(n.at("name")), Num(n.at("state")), Num(n.at("job")), Num(n.at("index")),
                    Num(n.at("threads")), Num(n.at("address")), seen});
  }
  Table({"NAME", "STATE", "JOB", "PART", "THREADS", "ADDRESS", "LAST_SEEN"}, rows);
}

void PrintJob(const json::value& j) {
  std::printf("job %s: %s%s%s\n", Num(j.at("id")).c_str(), Num(j.at("state")).c_str(),
              j.at("reason").as_string().empty() ? "" : " -- ", Num(j.at("reason")).c_str());
  std::printf(
      "model %s, dataset %s\n%s\n", Num(j.at("model")).c_str(), Num(j.at("dataset")).c_str(),
      (j.at("params").is_object() ? SettingsText(j.at("params").as_object()) : "-").c_str());
  std::printf("step %s/%s (%.1f%%), eta %s s, attempts %s\n", Num(j.at("step")).c_str(),
              Num(j.at("total_steps")).c_str(), j.at("progress").to_number<double>(),
              Num(j.at("eta_seconds")).c_str(), Num(j.at("attempts")).c_str());
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : j.at("history").as_array()) {
    const auto& o = e.as_object();
    auto opt = [&](const char* k) { return o.contains(k) ? Num(o.at(k)) : "-"; };
    rows.push_back({Num(e.at("epoch")), Num(e.at("train_loss")), opt("test_loss"),
                    opt("test_accuracy"), Num(e.at("seconds")), Num(e.at("samples_per_s")),
                    opt("parallelism")});
  }
  if (!rows.empty())
    Table({"EPOCH", "TRAIN_LOSS", "TEST_LOSS", "TEST_ACC", "SECONDS", "SAMPLES/S", "WORKERS"},
          rows);
}

void PrintCancel(const json::value& v) {
  Table({"ID", "STATE"}, {{Num(v.at("id")), "cancelling"}});
}

std::string TopClasses(const json::array& probabilities, size_t k) {
  std::vector<std::pair<double, size_t>> p;
  for (size_t i = 0; i < probabilities.size(); ++i)
    p.push_back({probabilities[i].to_number<double>(), i});
  k = std::min(k, p.size());
  std::partial_sort(p.begin(), p.begin() + static_cast<long>(k), p.end(),
                    [](auto& a, auto& b) { return a.first > b.first; });
  std::string out;
  for (size_t i = 0; i < k; ++i) {
    char b[48];
    std::snprintf(b, sizeof b, "%s%zu (%.3f)", i ? "  " : "", p[i].second, p[i].first);
    out += b;
  }
  return out;
}

}  // namespace dnnd::ctl
