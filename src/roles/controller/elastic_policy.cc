#include "roles/controller/elastic_policy.h"

#include <algorithm>
#include <cstdio>

namespace dnnd {

ElasticDecision NextParallelism(const ElasticBounds& bounds, int64_t current, double epoch_seconds,
                                double reference, int64_t available) {
  ElasticDecision d;
  char why[160];
  int64_t want = current;
  if (reference <= 0) {
    want = current + 1;
    d.reference_seconds = epoch_seconds;
    std::snprintf(why, sizeof why, "first epoch %.2f s: scale up", epoch_seconds);
  } else if (epoch_seconds <= reference * kScaleUpThreshold) {
    want = current + 1;
    d.reference_seconds = epoch_seconds;
    std::snprintf(why, sizeof why, "epoch %.2f s <= %.2f x %.2f s: scale up", epoch_seconds,
                  kScaleUpThreshold, reference);
  } else if (epoch_seconds >= reference * kScaleDownThreshold) {
    want = current - 1;
    d.reference_seconds = epoch_seconds;
    std::snprintf(why, sizeof why, "epoch %.2f s >= %.2f x %.2f s: scale down", epoch_seconds,
                  kScaleDownThreshold, reference);
  } else {
    d.reference_seconds = reference;
    std::snprintf(why, sizeof why, "epoch %.2f s within [%.2f, %.2f] x %.2f s: keep", epoch_seconds,
                  kScaleUpThreshold, kScaleDownThreshold, reference);
  }
  d.reason = why;
  const int64_t upper = std::min(bounds.max_workers, available);
  int64_t got =
      std::clamp(want, bounds.min_workers, std::max(bounds.min_workers, bounds.max_workers));
  if (got > upper) {
    got = std::max(upper, bounds.min_workers);
    if (got != want) d.reason += "; " + std::to_string(available) + " worker(s) available";
  } else if (got != want) {
    d.reason += "; bounded to [" + std::to_string(bounds.min_workers) + ", " +
                std::to_string(bounds.max_workers) + "]";
  }
  d.workers = got;
  return d;
}

}  // namespace dnnd
