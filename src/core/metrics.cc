#include "core/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#ifndef DNND_VERSION
#define DNND_VERSION "unknown"
#endif

namespace dnnd {

// ---------------------------------------------------------------------------
// Atomics
// ---------------------------------------------------------------------------
namespace metrics_internal {

void AtomicDouble::Add(double delta) {
  uint64_t old = bits_.load(std::memory_order_relaxed);
  while (!bits_.compare_exchange_weak(old,
                                      std::bit_cast<uint64_t>(std::bit_cast<double>(old) + delta),
                                      std::memory_order_relaxed)) {
  }
}
void AtomicDouble::Store(double v) {
  bits_.store(std::bit_cast<uint64_t>(v), std::memory_order_relaxed);
}
double AtomicDouble::Load() const {
  return std::bit_cast<double>(bits_.load(std::memory_order_relaxed));
}

}  // namespace metrics_internal

void Counter::Inc(double delta) {
  if (!(delta > 0)) return;  // also drops NaN
  // Whole increments below 2^53 are exact as integers; keep them on the fast path.
  if (delta <= 9007199254740992.0 && delta == std::floor(delta)) {
    ints_.fetch_add(static_cast<uint64_t>(delta), std::memory_order_relaxed);
  } else {
    fraction_.Add(delta);
  }
}

double Counter::Value() const {
  return static_cast<double>(ints_.load(std::memory_order_relaxed)) + fraction_.Load();
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) return;
  // "le" is inclusive: the first bound >= v.
  const size_t i =
      static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.Add(v);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

uint64_t Histogram::Count() const { return CumulativeCounts().back(); }

const std::vector<double>& DefaultHistogramBuckets() {
  static const std::vector<double> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                               0.5,   1,    2.5,   5,    10};
  return kBuckets;
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------
std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round-trip form
  return std::string(buf, end);
}

namespace {

enum MetricType { kCounterType = 0, kGaugeType = 1, kHistogramType = 2 };

const char* TypeName(int type) {
  switch (type) {
    case kCounterType:
      return "counter";
    case kGaugeType:
      return "gauge";
    default:
      return "histogram";
  }
}

// HELP text: backslash and line feed.
std::string EscapeHelp(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// Label values: backslash, double quote and line feed.
std::string EscapeLabelValue(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

bool IsMetricName(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsLabelName(std::string_view s) {
  if (s.empty() || s.starts_with("__")) return false;  // "__" is reserved for Prometheus itself
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// `{a="x",b="y"}` (or "" without labels); `extra` is appended last (histogram "le").
std::string LabelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     const std::string& extra = {}) {
  if (names.empty() && extra.empty()) return {};
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    out += names[i];
    out += "=\"";
    out += EscapeLabelValue(values[i]);
    out += '"';
  }
  if (!extra.empty()) {
    if (!names.empty()) out += ',';
    out += extra;
  }
  out += '}';
  return out;
}

void AppendHeader(std::string& out, std::string_view name, std::string_view help,
                  const char* type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += EscapeHelp(help);
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void AppendSample(std::string& out, std::string_view name, const std::string& labels,
                  double value) {
  out += name;
  out += labels;
  out += ' ';
  out += FormatMetricValue(value);
  out += '\n';
}

// ---------------------------------------------------------------------------
// Process metrics from /proc
// ---------------------------------------------------------------------------
const char* const kProcessMetricNames[] = {
    "process_cpu_seconds_total",
    "process_max_fds",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_virtual_memory_bytes",
    "dnnd_build_info",
};

struct ProcStat {
  double utime_ticks = 0, stime_ticks = 0, start_ticks = 0, vsize = 0, rss_pages = 0;
};

// /proc/self/stat: fields after the parenthesised command name (which may
// itself contain spaces and parentheses, hence the last ')').
bool ReadProcStat(ProcStat* st) {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(line.substr(close + 1));
  std::vector<std::string> f;
  for (std::string s; fields >> s;) f.push_back(s);
  // f[0] is field 3 (state); field N is f[N - 3].
  if (f.size() < 22) return false;
  try {
    st->utime_ticks = std::stod(f[14 - 3]);
    st->stime_ticks = std::stod(f[15 - 3]);
    st->start_ticks = std::stod(f[22 - 3]);
    st->vsize = std::stod(f[23 - 3]);
    st->rss_pages = std::stod(f[24 - 3]);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

// Seconds since the epoch at boot, from /proc/stat's "btime".
bool ReadBootTime(double* btime) {
  std::ifstream in("/proc/stat");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("btime ", 0) == 0) {
      try {
        *btime = std::stod(line.substr(6));
        return true;
      } catch (const std::exception&) {
        return false;
      }
    }
  }
  return false;
}

// Entries of /proc/self/fd, not counting the descriptor used to list them.
bool CountOpenFds(double* n) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return false;
  int count = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++count;
  }
  closedir(dir);
  *n = count > 0 ? count - 1 : 0;
  return true;
}

struct RenderedFamily {
  std::string name;
  std::string text;
};

void AppendProcessFamilies(std::vector<RenderedFamily>* out) {
  auto add = [&](const char* name, const char* help, const char* type, double value,
                 const std::string& labels = {}) {
    RenderedFamily f{name, {}};
    AppendHeader(f.text, name, help, type);
    AppendSample(f.text, name, labels, value);
    out->push_back(std::move(f));
  };
  ProcStat st;
  if (ReadProcStat(&st)) {
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    if (ticks > 0) {
      add("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
          "counter", (st.utime_ticks + st.stime_ticks) / ticks);
      double btime = 0;
      if (ReadBootTime(&btime))
        add("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
            "gauge", btime + st.start_ticks / ticks);
    }
    add("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", st.vsize);
    if (page > 0)
      add("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
          st.rss_pages * page);
  }
  double fds = 0;
  if (CountOpenFds(&fds)) add("process_open_fds", "Number of open file descriptors.", "gauge", fds);
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0)
    add("process_max_fds", "Maximum number of open file descriptors.", "gauge",
        lim.rlim_cur == RLIM_INFINITY ? std::numeric_limits<double>::infinity()
                                      : static_cast<double>(lim.rlim_cur));
  add("dnnd_build_info", "A metric with a constant '1' value labeled by the dnnd version.", "gauge",
      1, "{version=\"" + EscapeLabelValue(DNND_VERSION) + "\"}");
}

}  // namespace

// ---------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------
struct MetricsRegistry::Family {
  std::string name;
  std::string help;
  int type = kCounterType;
  std::vector<std::string> label_names;  // in first-registration order
  std::vector<double> buckets;           // histograms only
  // Keyed by label values in label_names order; std::map keeps the output
  // sorted and never moves the children.
  std::map<std::vector<std::string>, std::unique_ptr<::dnnd::Counter>> counters;
  std::map<std::vector<std::string>, std::unique_ptr<::dnnd::Gauge>> gauges;
  std::map<std::vector<std::string>, std::unique_ptr<::dnnd::Histogram>> histograms;
};

MetricsRegistry::MetricsRegistry(MetricsRegistryOptions options) : options_(options) {}
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Family& MetricsRegistry::GetFamily(std::string_view name, std::string_view help,
                                                    int type, const MetricLabels& labels,
                                                    const std::vector<double>* buckets,
                                                    std::vector<std::string>* values) {
  const std::string where = "metric '" + std::string(name) + "': ";
  if (!IsMetricName(name)) throw std::logic_error(where + "invalid metric name");
  for (size_t i = 0; i < labels.size(); ++i) {
    if (!IsLabelName(labels[i].first))
      throw std::logic_error(where + "invalid label name '" + labels[i].first + "'");
    if (type == kHistogramType && labels[i].first == "le")
      throw std::logic_error(where + "'le' is reserved for histogram buckets");
    for (size_t j = 0; j < i; ++j)
      if (labels[j].first == labels[i].first)
        throw std::logic_error(where + "duplicate label name '" + labels[i].first + "'");
  }
  if (options_.process_metrics) {
    for (const char* reserved : kProcessMetricNames)
      if (name == reserved)
        throw std::logic_error(where + "name is reserved for the built-in process metrics");
  }

  auto it = families_.find(name);
  if (it == families_.end()) {
    auto f = std::make_unique<Family>();
    f->name = std::string(name);
    f->help = std::string(help);
    f->type = type;
    for (const auto& [k, v] : labels) f->label_names.push_back(k);
    if (buckets) f->buckets = *buckets;
    it = families_.emplace(f->name, std::move(f)).first;
  }
  Family& f = *it->second;
  if (f.type != type)
    throw std::logic_error(where + "registered as " + TypeName(f.type) + ", requested as " +
                           TypeName(type));
  if (buckets && f.buckets != *buckets)
    throw std::logic_error(where + "registered with different buckets");

  // Same set of label names, any order; values come out in the family's order.
  auto names_of = [](const std::vector<std::string>& names) {
    std::string s = "{";
    for (size_t i = 0; i < names.size(); ++i) s += (i ? "," : "") + names[i];
    return s + "}";
  };
  std::vector<std::string> given;
  for (const auto& [k, v] : labels) given.push_back(k);
  values->assign(f.label_names.size(), {});
  bool match = labels.size() == f.label_names.size();
  for (size_t i = 0; match && i < f.label_names.size(); ++i) {
    auto l = std::find_if(labels.begin(), labels.end(),
                          [&](const auto& p) { return p.first == f.label_names[i]; });
    if (l == labels.end())
      match = false;
    else
      (*values)[i] = l->second;
  }
  if (!match)
    throw std::logic_error(where + "registered with labels " + names_of(f.label_names) +
                           ", requested with " + names_of(given));
  return f;
}

::dnnd::Counter& MetricsRegistry::Counter(std::string_view name, std::string_view help,
                                          const MetricLabels& labels) {
  std::lock_guard lock(mu_);
  std::vector<std::string> values;
  Family& f = GetFamily(name, help, kCounterType, labels, nullptr, &values);
  auto& child = f.counters[values];
  if (!child) child = std::make_unique<::dnnd::Counter>();
  return *child;
}

::dnnd::Gauge& MetricsRegistry::Gauge(std::string_view name, std::string_view help,
                                      const MetricLabels& labels) {
  std::lock_guard lock(mu_);
  std::vector<std::string> values;
  Family& f = GetFamily(name, help, kGaugeType, labels, nullptr, &values);
  auto& child = f.gauges[values];
  if (!child) child = std::make_unique<::dnnd::Gauge>();
  return *child;
}

::dnnd::Histogram& MetricsRegistry::Histogram(std::string_view name, std::string_view help,
                                              const MetricLabels& labels,
                                              std::vector<double> buckets) {
  if (buckets.empty()) buckets = DefaultHistogramBuckets();
  if (std::isinf(buckets.back()) && buckets.back() > 0) buckets.pop_back();  // +Inf is implied
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (!std::isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
      throw std::logic_error("metric '" + std::string(name) +
                             "': buckets must be finite and strictly increasing");
  }
  std::lock_guard lock(mu_);
  std::vector<std::string> values;
  Family& f = GetFamily(name, help, kHistogramType, labels, &buckets, &values);
  auto& child = f.histograms[values];
  if (!child) child = std::make_unique<::dnnd::Histogram>(f.buckets);
  return *child;
}

std::string MetricsRegistry::RenderPrometheusText() const {
  std::vector<RenderedFamily> rendered;
  {
    std::lock_guard lock(mu_);
    rendered.reserve(families_.size() + 8);
    for (const auto& [name, fp] : families_) {
      const Family& f = *fp;
      RenderedFamily r{f.name, {}};
      AppendHeader(r.text, f.name, f.help, TypeName(f.type));
      for (const auto& [values, c] : f.counters)
        AppendSample(r.text, f.name, LabelSet(f.label_names, values), c->Value());
      for (const auto& [values, g] : f.gauges)
        AppendSample(r.text, f.name, LabelSet(f.label_names, values), g->Value());
      for (const auto& [values, h] : f.histograms) {
        const std::vector<uint64_t> cumulative = h->CumulativeCounts();
        const std::string bucket = f.name + "_bucket";
        for (size_t i = 0; i < cumulative.size(); ++i) {
          const std::string le =
              i < f.buckets.size() ? FormatMetricValue(f.buckets[i]) : std::string("+Inf");
          AppendSample(r.text, bucket, LabelSet(f.label_names, values, "le=\"" + le + "\""),
                       static_cast<double>(cumulative[i]));
        }
        AppendSample(r.text, f.name + "_sum", LabelSet(f.label_names, values), h->Sum());
        AppendSample(r.text, f.name + "_count", LabelSet(f.label_names, values),
                     static_cast<double>(cumulative.back()));
      }
      rendered.push_back(std::move(r));
    }
  }
  if (options_.process_metrics) AppendProcessFamilies(&rendered);
  std::sort(rendered.begin(), rendered.end(),
            [](const RenderedFamily& a, const RenderedFamily& b) { return a.name < b.name; });
  std::string out;
  for (const auto& r : rendered) out += r.text;
  return out;
}

MetricsRegistry& DefaultMetrics() {
  static MetricsRegistry* registry = new MetricsRegistry();  // leaked on purpose: see the header
  return *registry;
}

}  // namespace dnnd
