// The process's one thread budget, shared by OpenBLAS and dnnd's own kernels.
//
// Stacking two pools (BLAS threads inside our threads) oversubscribes the
// cores: on a 2-core machine PyTorch with both pools at 2 threads runs 3-4x
// slower than with 1, and OpenBLAS's idle threads spin on the cores our own
// helpers need. So there is one pool: OpenBLAS is pinned to one thread (the
// caller's) and kernels::Gemm splits large products across ParallelFor.
// `SetThreads(n)` sizes that one pool.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

namespace dnnd {

// Sets the number of threads for BLAS and ParallelFor (n >= 1).
void SetThreads(int n);
int GetThreads();

// OpenBLAS's kernel name ("Haswell", "SkylakeX"...) and build configuration,
// printed by benchmarks so a reader knows which code ran.
std::string BlasCoreName();
std::string BlasConfig();

// Runs fn(begin, end) over [0, n) split into at most GetThreads() contiguous
// chunks of at least `grain` items; runs inline when one chunk suffices.
// A ParallelFor inside a chunk runs inline (no nested parallelism).
void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Runs `body` once on each of up to min(GetThreads(), n) threads
// (the caller's included; inline as one worker inside another region) and
// hands out the items [0, n) one at a time, in order, to whichever worker
// asks first: body calls Next(i) until it returns false. For items of uneven
// cost, or cores that are not all ours (a VM's other tenants, a colocated
// server): a static split leaves the fast thread waiting for the slow one.
// Which worker runs an item is not fixed, so results must not depend on it
// (write disjoint outputs, or reduce per fixed group of items).
class WorkItems {
 public:
  explicit WorkItems(int64_t n) : n_(n) {}
  bool Next(int64_t& i) {
    i = next_.fetch_add(1, std::memory_order_relaxed);
    return i < n_;
  }

 private:
  const int64_t n_;
  std::atomic<int64_t> next_{0};
};
void ParallelWorkers(int64_t n, const std::function<void(WorkItems& items)>& body);

}  // namespace dnnd
