#include "tensor/storage.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace dnnd {
namespace {

// Exact-size buckets: training reuses identical shapes, so exact matching has
// a near-perfect hit rate without the fragmentation of power-of-two classes.
class BufferPool {
 public:
  void* Get(size_t bytes) {
    {
      std::lock_guard lock(mu_);
      ++stats_.allocations;
      stats_.live_bytes += bytes;
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.cached_bytes -= bytes;
        ++stats_.reuses;
        return p;
      }
    }
    void* p = std::aligned_alloc(kTensorAlignment, bytes);
    if (p == nullptr) {
      std::lock_guard lock(mu_);
      stats_.live_bytes -= bytes;
      throw std::bad_alloc();
    }
    return p;
  }

  void Put(void* p, size_t bytes) {
    {
      std::lock_guard lock(mu_);
      stats_.live_bytes -= bytes;
      if (stats_.cached_bytes + bytes <= limit_) {
        free_[bytes].push_back(p);
        stats_.cached_bytes += bytes;
        return;
      }
    }
    std::free(p);
  }

  void Trim() {
    std::unordered_map<size_t, std::vector<void*>> drop;
    {
      std::lock_guard lock(mu_);
      drop.swap(free_);
      stats_.cached_bytes = 0;
    }
    for (auto& [size, ptrs] : drop)
      for (void* p : ptrs) std::free(p);
  }

  BufferPoolStats Stats() {
    std::lock_guard lock(mu_);
    return stats_;
  }
  void SetLimit(size_t bytes) {
    {
      std::lock_guard lock(mu_);
      limit_ = bytes;
    }
    Trim();
  }

 private:
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  BufferPoolStats stats_;
  size_t limit_ = size_t{1} << 30;
};

BufferPool& Pool() {
  // Leaked on purpose: tensors in static objects may die after the pool would.
  static BufferPool* pool = new BufferPool;
  return *pool;
}

size_t RoundUp(size_t bytes) {
  size_t r = (bytes + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
  return r == 0 ? kTensorAlignment : r;
}

}  // namespace

// make_shared needs a public constructor; this keeps Storage's private while
// putting object and control block in one allocation (one malloc per tensor
// and per received frame instead of two).
struct Storage::Shared : Storage {
  Shared(void* data, size_t bytes, bool owned, std::shared_ptr<const void> keep_alive)
      : Storage(data, bytes, owned, std::move(keep_alive)) {}
};

std::shared_ptr<Storage> Storage::Allocate(size_t bytes) {
  size_t size = RoundUp(bytes);
  void* p = Pool().Get(size);
  return std::make_shared<Shared>(p, size, true, nullptr);
}

std::shared_ptr<Storage> Storage::Wrap(void* data, size_t bytes,
                                       std::shared_ptr<const void> keep_alive) {
  return std::make_shared<Shared>(data, bytes, false, std::move(keep_alive));
}

Storage::~Storage() {
  if (owned_) Pool().Put(data_, bytes_);
}

BufferPoolStats GetBufferPoolStats() { return Pool().Stats(); }
void SetBufferPoolCacheLimit(size_t bytes) { Pool().SetLimit(bytes); }
void TrimBufferPool() { Pool().Trim(); }

}  // namespace dnnd
