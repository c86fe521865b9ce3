#include "core/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

namespace dnnd {
namespace {

MetricsRegistry Plain() {
  return MetricsRegistry(MetricsRegistryOptions{.process_metrics = false});
}

TEST(MetricsFormat, Values) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(-0.0), "0");
  EXPECT_EQ(FormatMetricValue(3), "3");
  EXPECT_EQ(FormatMetricValue(-17), "-17");
  EXPECT_EQ(FormatMetricValue(123456789012.0), "123456789012");
  EXPECT_EQ(FormatMetricValue(0.005), "0.005");
  EXPECT_EQ(FormatMetricValue(2.5), "2.5");
  EXPECT_EQ(FormatMetricValue(0.1 + 0.2), "0.30000000000000004");  // round-trips
  EXPECT_EQ(FormatMetricValue(1e20), "1e+20");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatMetricValue(std::nan("")), "NaN");
}

TEST(Metrics, CounterWithLabelsExactText) {
  MetricsRegistry reg = Plain();
  reg.Counter("dnnd_rpc_requests_total", "RPC requests handled.",
              {{"type", "push"}, {"code", "ok"}})
      .Inc();
  reg.Counter("dnnd_rpc_requests_total", "ignored", {{"code", "ok"}, {"type", "push"}})
      .Inc(2);  // same child
  reg.Counter("dnnd_rpc_requests_total", "", {{"type", "pull"}, {"code", "error"}}).Inc(0.5);
  EXPECT_EQ(reg.RenderPrometheusText(),
            "# HELP dnnd_rpc_requests_total RPC requests handled.\n"
            "# TYPE dnnd_rpc_requests_total counter\n"
            "dnnd_rpc_requests_total{type=\"pull\",code=\"error\"} 0.5\n"
            "dnnd_rpc_requests_total{type=\"push\",code=\"ok\"} 3\n");
}

TEST(Metrics, ReferencesAreStableAndShared) {
  MetricsRegistry reg = Plain();
  Counter& a = reg.Counter("c_total", "h", {{"k", "v"}});
  for (int i = 0; i < 100; ++i) reg.Counter("c_total", "h", {{"k", std::to_string(i)}});
  Counter& b = reg.Counter("c_total", "h", {{"k", "v"}});
  EXPECT_EQ(&a, &b);
  a.Inc(-5);  // ignored: counters only go up
  a.Inc(std::nan(""));
  EXPECT_EQ(b.Value(), 0);
}

TEST(Metrics, GaugeExactText) {
  MetricsRegistry reg = Plain();
  Gauge& g = reg.Gauge("dnnd_queue_depth", "Items waiting.");
  g.Set(10);
  g.Add(-2.5);
  g.Inc();
  g.Dec();
  EXPECT_EQ(g.Value(), 7.5);
  reg.Gauge("a_gauge", "First by name.").Set(-1);
  EXPECT_EQ(reg.RenderPrometheusText(),
            "# HELP a_gauge First by name.\n"
            "# TYPE a_gauge gauge\n"
            "a_gauge -1\n"
            "# HELP dnnd_queue_depth Items waiting.\n"
            "# TYPE dnnd_queue_depth gauge\n"
            "dnnd_queue_depth 7.5\n");
}

TEST(Metrics, HistogramExactText) {
  MetricsRegistry reg = Plain();
  Histogram& h =
      reg.Histogram("dnnd_step_seconds", "Step time.", {{"role", "worker"}}, {0.1, 1, 2.5});
  for (double v : {0.05, 0.1, 0.5, 3.0, 100.0}) h.Observe(v);
  h.Observe(std::nan(""));  // ignored
  EXPECT_EQ(h.Count(), 5u);
  EXPECT_EQ(reg.RenderPrometheusText(),
            "# HELP dnnd_step_seconds Step time.\n"
            "# TYPE dnnd_step_seconds histogram\n"
            "dnnd_step_seconds_bucket{role=\"worker\",le=\"0.1\"} 2\n"
            "dnnd_step_seconds_bucket{role=\"worker\",le=\"1\"} 3\n"
            "dnnd_step_seconds_bucket{role=\"worker\",le=\"2.5\"} 3\n"
            "dnnd_step_seconds_bucket{role=\"worker\",le=\"+Inf\"} 5\n"
            "dnnd_step_seconds_sum{role=\"worker\"} 103.65\n"
            "dnnd_step_seconds_count{role=\"worker\"} 5\n");
}

TEST(Metrics, HistogramDefaultBucketsWithoutLabels) {
  MetricsRegistry reg = Plain();
  Histogram& h = reg.Histogram("lat_seconds", "Latency.");
  h.Observe(0.003);
  h.Observe(7);
  const std::string text = reg.RenderPrometheusText();
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"0.005\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"5\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"10\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_sum 7.003\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_count 2\n"), std::string::npos) << text;
  EXPECT_EQ(h.CumulativeCounts().size(), DefaultHistogramBuckets().size() + 1);
}

TEST(Metrics, Escaping) {
  MetricsRegistry reg = Plain();
  reg.Counter("esc_total", "Back\\slash and\nnewline \"quoted\".", {{"path", "a\\b\"c\nd"}}).Inc();
  EXPECT_EQ(reg.RenderPrometheusText(),
            "# HELP esc_total Back\\\\slash and\\nnewline \"quoted\".\n"
            "# TYPE esc_total counter\n"
            "esc_total{path=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(Metrics, ClashesThrow) {
  MetricsRegistry reg = Plain();
  reg.Counter("x_total", "h", {{"a", "1"}});
  EXPECT_THROW(reg.Gauge("x_total", "h", {{"a", "1"}}), std::logic_error);
  EXPECT_THROW(reg.Histogram("x_total", "h", {{"a", "1"}}), std::logic_error);
  EXPECT_THROW(reg.Counter("x_total", "h", {{"b", "1"}}), std::logic_error);
  EXPECT_THROW(reg.Counter("x_total", "h", {}), std::logic_error);
  EXPECT_THROW(reg.Counter("x_total", "h", {{"a", "1"}, {"b", "2"}}), std::logic_error);
  EXPECT_THROW(reg.Counter("bad-name", "h"), std::logic_error);
  EXPECT_THROW(reg.Counter("y_total", "h", {{"a", "1"}, {"a", "2"}}), std::logic_error);
  EXPECT_THROW(reg.Counter("y_total", "h", {{"__a", "1"}}), std::logic_error);
  EXPECT_THROW(reg.Histogram("h_seconds", "h", {{"le", "1"}}), std::logic_error);
  EXPECT_THROW(reg.Histogram("h_seconds", "h", {}, {1, 0.5}), std::logic_error);
  reg.Histogram("h2_seconds", "h", {}, {1, 2});
  EXPECT_THROW(reg.Histogram("h2_seconds", "h", {}, {1, 3}), std::logic_error);
  EXPECT_NO_THROW(
      reg.Histogram("h2_seconds", "h", {}, {1, 2, std::numeric_limits<double>::infinity()}));
  // The family is unchanged by the failed registrations.
  EXPECT_EQ(reg.Counter("x_total", "h", {{"a", "1"}}).Value(), 0);
}

TEST(Metrics, ConcurrentIncrementsSum) {
  MetricsRegistry reg = Plain();
  constexpr int kThreads = 8, kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&reg, t] {
      // Each thread looks the children up itself (get-or-create races too).
      Counter& c = reg.Counter("conc_total", "h", {{"k", "shared"}});
      Gauge& g = reg.Gauge("conc_gauge", "h");
      Histogram& h = reg.Histogram("conc_seconds", "h", {}, {0.5});
      Counter& frac = reg.Counter("conc_frac_total", "h");
      for (int i = 0; i < kIters; ++i) {
        c.Inc();
        g.Add(1);
        h.Observe((i + t) % 2 ? 1.0 : 0.25);
        frac.Inc(0.5);
      }
    });
  }
  for (auto& t : threads) t.join();
  const double total = double(kThreads) * kIters;
  EXPECT_EQ(reg.Counter("conc_total", "h", {{"k", "shared"}}).Value(), total);
  EXPECT_EQ(reg.Gauge("conc_gauge", "h").Value(), total);
  EXPECT_EQ(reg.Counter("conc_frac_total", "h").Value(), total / 2);
  Histogram& h = reg.Histogram("conc_seconds", "h", {}, {0.5});
  EXPECT_EQ(h.Count(), uint64_t(total));
  EXPECT_EQ(h.CumulativeCounts()[0], uint64_t(total / 2));
  EXPECT_EQ(h.Sum(), total / 2 * 1.25);
}

TEST(Metrics, ProcessMetricsPresent) {
  MetricsRegistry reg;
  reg.Counter("zzz_total", "last").Inc();
  reg.Counter("aaa_total", "first").Inc();
  const std::string text = reg.RenderPrometheusText();
  for (const char* name : {"process_resident_memory_bytes", "process_virtual_memory_bytes",
                           "process_cpu_seconds_total", "process_start_time_seconds",
                           "process_open_fds", "process_max_fds"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + name + " "), std::string::npos) << name;
    EXPECT_NE(text.find(std::string("\n") + name + " "), std::string::npos) << name;
  }
  EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);
  EXPECT_NE(text.find(std::string("dnnd_build_info{version=\"") + DNND_VERSION + "\"} 1\n"),
            std::string::npos)
      << text;
  // Families stay sorted by name, the built-in ones included.
  EXPECT_LT(text.find("aaa_total"), text.find("dnnd_build_info"));
  EXPECT_LT(text.find("dnnd_build_info"), text.find("process_cpu_seconds_total"));
  EXPECT_LT(text.find("process_virtual_memory_bytes"), text.find("zzz_total"));
  // Plausible values: resident memory above 1 MiB, a start time after 2020.
  auto value_of = [&](const std::string& name) {
    const size_t at = text.find("\n" + name + " ");
    return std::stod(text.substr(at + name.size() + 2));
  };
  EXPECT_GT(value_of("process_resident_memory_bytes"), 1 << 20);
  EXPECT_GT(value_of("process_start_time_seconds"), 1.5e9);
  EXPECT_GE(value_of("process_open_fds"), 3);
  EXPECT_THROW(reg.Gauge("process_open_fds", "mine"), std::logic_error);
}

TEST(Metrics, DefaultRegistryIsShared) {
  EXPECT_EQ(&DefaultMetrics(), &DefaultMetrics());
  EXPECT_NE(DefaultMetrics().RenderPrometheusText().find("process_open_fds"), std::string::npos);
}

}  // namespace
}  // namespace dnnd
