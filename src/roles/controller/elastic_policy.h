// How many workers an elastic job trains its next epoch on: KubeML's
// throughput policy, bounded by the job's min/max and by the pool.
//
// After every epoch the job's epoch time T is compared with a reference time
// R (the time of the epoch at which the parallelism last changed):
//   - no reference yet (the first epoch):  one worker more, R = T;
//   - T <= R * 1.05 (as fast, or faster):  one worker more, R = T;
//   - T >= R * 1.2  (clearly slower):      one worker fewer, R = T;
//   - in between:                          unchanged, R kept.
// More workers cut an epoch's steps but add gradient traffic and barrier
// waits; the policy climbs while that pays and backs off once it does not.
// The answer is then clamped to [min_workers, max_workers] and to the
// workers available now (the job's own, just released, plus idle ones; the
// controller counts only the job's own while other jobs are queued, so an
// elastic job does not grow into nodes a waiting job needs).
#pragma once

#include <cstdint>
#include <string>

namespace dnnd {

struct ElasticBounds {
  int64_t min_workers = 1, max_workers = 1;
};

struct ElasticDecision {
  int64_t workers = 1;           // for the next epoch
  double reference_seconds = 0;  // R for the epoch after it
  std::string reason;            // for the job's log: "epoch 3.1 s <= 1.05 x 3.4 s: scale up"
};

inline constexpr double kScaleUpThreshold = 1.05;
inline constexpr double kScaleDownThreshold = 1.2;

// `current` workers ran the epoch that took `epoch_seconds`; `reference` is
// R (0: none yet); `available` is how many workers could run the next one.
ElasticDecision NextParallelism(const ElasticBounds& bounds, int64_t current, double epoch_seconds,
                                double reference, int64_t available);

}  // namespace dnnd
