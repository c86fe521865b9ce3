// Prometheus metrics: a thread-safe registry of counter, gauge and histogram
// families, rendered in the text exposition format 0.0.4 for GET /metrics.
//
//   Counter& pushes = DefaultMetrics().Counter(
//       "dnnd_rpc_requests_total", "RPC requests handled.", {{"type", "push"}, {"code", "ok"}});
//   pushes.Inc();                                  // lock-free
//   Histogram& step = DefaultMetrics().Histogram("dnnd_step_seconds", "Time per step.");
//   step.Observe(0.42);
//
// Why this shape:
//  - Get-or-create by (name, label set) takes a mutex, but the returned
//    reference stays valid for the registry's lifetime (children are never
//    removed), so hot paths look a child up once and then only touch atomics.
//  - A family's type, label names and histogram buckets are fixed by its first
//    registration; a later registration that disagrees is a programming bug
//    (two call sites meaning different things by one name) and throws
//    std::logic_error rather than silently splitting or merging series.
//  - Label values are free-form, so callers must keep them bounded (a route
//    pattern, a status code), never a raw path or an id.
//  - Process metrics (memory, CPU, fds, start time) are read from /proc/self at
//    render time, like the official clients do, so nothing has to poll them.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dnnd {

// Label name/value pairs, in any order: {{"type", "push"}, {"code", "ok"}}.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

namespace metrics_internal {
// A double updated with compare-and-swap on its bit pattern: std::atomic<double>
// arithmetic is not guaranteed lock-free everywhere, a 64-bit integer is.
class AtomicDouble {
 public:
  void Add(double delta);
  void Store(double v);
  double Load() const;

 private:
  std::atomic<uint64_t> bits_{0};  // bit pattern of +0.0
};
}  // namespace metrics_internal

// Monotonically increasing value. Integral increments (the common case) go to
// an integer fetch_add, which stays exact past 2^53 and is cheaper under
// contention than a CAS loop; fractional ones to a separate double.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Inc() { ints_.fetch_add(1, std::memory_order_relaxed); }
  // Negative or NaN increments are ignored: a counter never goes down.
  void Inc(double delta);
  double Value() const;

 private:
  std::atomic<uint64_t> ints_{0};
  metrics_internal::AtomicDouble fraction_;
};

// A value that goes up and down (queue depth, bytes in flight, last loss).
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.Store(v); }
  void Add(double delta) { value_.Add(delta); }
  void Inc() { Add(1); }
  void Dec() { Add(-1); }
  double Value() const { return value_.Load(); }

 private:
  metrics_internal::AtomicDouble value_;
};

// Distribution over fixed upper bounds ("le", inclusive). Buckets are stored
// non-cumulatively and summed at render time, so Observe is one lock-free
// increment plus a CAS on the sum; _count is the sum of the buckets, so it
// always equals the +Inf bucket in the output.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // sorted, finite, no +Inf
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // NaN is ignored (it would poison _sum forever).
  void Observe(double v);

  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Cumulative counts, one per upper bound plus the final +Inf bucket.
  std::vector<uint64_t> CumulativeCounts() const;
  uint64_t Count() const;
  double Sum() const { return sum_.Load(); }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 (+Inf)
  metrics_internal::AtomicDouble sum_;
};

// Prometheus' default buckets, in seconds (5 ms .. 10 s): suited to request
// latencies.
const std::vector<double>& DefaultHistogramBuckets();

struct MetricsRegistryOptions {
  // Render process_* metrics from /proc/self and dnnd_build_info. Off only in
  // tests that compare the exposition text exactly.
  bool process_metrics = true;
};

class MetricsRegistry {
 public:
  MetricsRegistry() : MetricsRegistry(MetricsRegistryOptions{}) {}
  explicit MetricsRegistry(MetricsRegistryOptions options);
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Get-or-create the child of family `name` for `labels`. `help` is taken
  // from the first registration. Throws std::logic_error on an invalid name,
  // a duplicate or invalid label name, or a clash with the family's existing
  // type / label names / buckets. The reference is valid for the registry's
  // lifetime. (Return types are qualified because the member names shadow the
  // class names inside this class.)
  ::dnnd::Counter& Counter(std::string_view name, std::string_view help,
                           const MetricLabels& labels = {});
  ::dnnd::Gauge& Gauge(std::string_view name, std::string_view help,
                       const MetricLabels& labels = {});
  // An empty `buckets` means DefaultHistogramBuckets(). A trailing +Inf is
  // implied (and accepted if given). "le" is reserved as a label name.
  ::dnnd::Histogram& Histogram(std::string_view name, std::string_view help,
                               const MetricLabels& labels = {}, std::vector<double> buckets = {});

  // Text exposition format 0.0.4: families sorted by name, each with # HELP
  // and # TYPE, children sorted by label values.
  std::string RenderPrometheusText() const;

 private:
  struct Family;
  Family& GetFamily(std::string_view name, std::string_view help, int type,
                    const MetricLabels& labels, const std::vector<double>* buckets,
                    std::vector<std::string>* values);

  const MetricsRegistryOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_;
};

// The process-wide registry (with process metrics). Never destroyed, so
// references taken from it stay valid during static destruction too.
MetricsRegistry& DefaultMetrics();

// Formats a sample value as Prometheus expects: integers without exponent or
// fraction ("3", "-1"), other values in the shortest form that round-trips
// ("0.005", "1e+20"), and "+Inf", "-Inf", "NaN".
std::string FormatMetricValue(double v);

}  // namespace dnnd
