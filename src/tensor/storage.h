// Refcounted, 64-byte-aligned byte buffers for tensors.
//
// Owned buffers come from a process-wide caching pool: when the last Storage
// referencing a buffer dies, the buffer goes back to the pool and the next
// request of the same size reuses it. A training step allocates the same sizes
// every step, so after the first step no page is touched fresh (a fresh page
// costs ~10 us on the target VMs, which would dominate small layers).
//
// A Storage can also wrap memory it does not own (a received wire frame, an
// mmapped file); `keep_alive` holds that memory's owner for as long as any
// tensor views it. Wrapped memory is never returned to the pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace dnnd {

inline constexpr size_t kTensorAlignment = 64;

class Storage {
 public:
  // Uninitialised buffer of at least `bytes` bytes, 64-byte aligned.
  // Throws std::bad_alloc if the system is out of memory.
  static std::shared_ptr<Storage> Allocate(size_t bytes);
  // Non-owning view; `keep_alive` (may be null) is released with the Storage.
  static std::shared_ptr<Storage> Wrap(void* data, size_t bytes,
                                       std::shared_ptr<const void> keep_alive);

  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  bool owned() const { return owned_; }

 private:
  struct Shared;
  Storage(void* data, size_t bytes, bool owned, std::shared_ptr<const void> keep_alive)
      : data_(data), bytes_(bytes), owned_(owned), keep_alive_(std::move(keep_alive)) {}

  void* data_;
  size_t bytes_;
  bool owned_;
  std::shared_ptr<const void> keep_alive_;
};

// Statistics and limits of the caching pool (for metrics and tests).
struct BufferPoolStats {
  uint64_t allocations = 0;  // requests served
  uint64_t reuses = 0;       // requests served from the cache
  size_t cached_bytes = 0;   // bytes held idle in the cache
  size_t live_bytes = 0;     // bytes handed out and not yet returned
};
BufferPoolStats GetBufferPoolStats();
// Idle bytes above this are freed instead of cached (default 1 GiB).
void SetBufferPoolCacheLimit(size_t bytes);
// Frees every idle cached buffer.
void TrimBufferPool();

}  // namespace dnnd
