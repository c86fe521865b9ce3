#include "tensor/parallel.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
}

namespace dnnd {
namespace {

// A fixed pool of helper threads; the calling thread does the first chunk.
// Helpers spin briefly before sleeping: a training step opens a parallel
// region every few hundred microseconds, and on the target VMs a futex
// wake-up costs tens of microseconds (12% of an MLP step was kernel time).
class Pool {
 public:
  ~Pool() { Resize(0); }

  void Resize(int helpers) {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
    stop_ = false;
    // The generation is read here, not by the new thread: a region started
    // right after Resize (before a helper first runs) must still be seen as
    // new, or its chunk is never run and Run() spins forever.
    const uint64_t start = generation_.load();
    for (int i = 0; i < helpers; ++i) threads_.emplace_back([this, i, start] { Loop(i, start); });
  }

  int helpers() const { return static_cast<int>(threads_.size()); }

  void Run(int chunks, const std::function<void(int)>& chunk_fn) {
    std::lock_guard run_lock(run_mu_);  // one parallel region at a time
    fn_ = &chunk_fn;
    chunks_ = chunks;
    pending_.store(chunks - 1);
    generation_.fetch_add(1);  // publishes fn_/chunks_ (seq_cst)
    if (sleepers_.load() > 0) {
      std::lock_guard lock(mu_);
      cv_.notify_all();
    }
    chunk_fn(0);
    for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins)
      if (spins > 1000) std::this_thread::yield();
  }

 private:
  static void CpuRelax() {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }

  void Loop(int index, uint64_t seen) {  // regions up to `seen` ran before this thread existed
    for (;;) {
      // Spin ~50 us for the next region, then sleep.
      bool ready = false;
      for (int i = 0; i < 20000 && !ready; ++i) {
        ready = generation_.load(std::memory_order_acquire) != seen || stop_.load();
        if (!ready) CpuRelax();
      }
      if (!ready) {
        std::unique_lock lock(mu_);
        sleepers_.fetch_add(1);
        cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
        sleepers_.fetch_sub(1);
      }
      if (stop_.load()) return;
      seen = generation_.load();
      const int chunk = index + 1;
      if (chunk >= chunks_) continue;
      (*fn_)(chunk);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  const std::function<void(int)>* fn_ = nullptr;
  int chunks_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

Pool& GetPool() {
  static Pool* pool = new Pool;  // leaked: helpers must outlive static tensors
  return *pool;
}

int threads = 1;
// True on a thread while it runs a ParallelFor chunk: nested regions run inline
// instead of deadlocking on the single pool.
thread_local bool inside_region = false;
std::once_flag init_once;

void InitDefault() {
  std::call_once(init_once, [] {
    // OpenBLAS always runs single-threaded in the calling thread; dnnd splits
    // large GEMMs across its own pool (kernels::Gemm). One pool, so BLAS
    // threads never spin on a core our helpers need.
    openblas_set_num_threads(1);
  });
}

}  // namespace

void SetThreads(int n) {
  InitDefault();
  n = std::max(1, n);
  threads = n;
  GetPool().Resize(n - 1);
}

int GetThreads() {
  InitDefault();
  return threads;
}

std::string BlasCoreName() { return openblas_get_corename(); }
std::string BlasConfig() { return openblas_get_config(); }

void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(1, grain));
  int chunks = static_cast<int>(std::min<int64_t>(GetThreads(), max_chunks));
  if (chunks <= 1 || inside_region || GetPool().helpers() < chunks - 1) {
    fn(0, n);
    return;
  }
  int64_t per = (n + chunks - 1) / chunks;
  GetPool().Run(chunks, [&](int c) {
    int64_t b = c * per, e = std::min(n, b + per);
    inside_region = true;
    if (b < e) fn(b, e);
    inside_region = false;
  });
}

void ParallelWorkers(int64_t n, const std::function<void(WorkItems& items)>& body) {
  if (n <= 0) return;
  WorkItems items(n);
  const int workers = static_cast<int>(std::min<int64_t>(GetThreads(), n));
  if (workers <= 1 || inside_region || GetPool().helpers() < workers - 1) {
    body(items);
    return;
  }
  GetPool().Run(workers, [&](int) {
    inside_region = true;
    body(items);
    inside_region = false;
  });
}

}  // namespace dnnd
