// Locks as contracts: Clang's thread-safety attributes, and a mutex that
// carries them.
//
// A class with a lock says, in its header, which members each lock guards
// (GUARDED_BY), which private functions expect a lock to be held (REQUIRES)
// and in which order its locks are taken (ACQUIRED_BEFORE / a comment). Clang
// checks these at compile time with -Wthread-safety; GCC, which builds the
// binary, ignores them (the macros expand to nothing), so the check runs as
// its own step: tests/lint/thread_safety.sh (ctest label `lint`) compiles the
// annotated files with `clang++ -fsyntax-only -Werror=thread-safety`.
//
// std::mutex and std::lock_guard carry no attributes in libstdc++, so the
// analysis cannot see them: guarded state uses dnnd::Mutex with MutexLock
// (scoped, re-lockable) and CondVar. They cost what std::mutex costs; debug
// builds (!NDEBUG) also record the owning thread, so Mutex::AssertHeld()
// aborts when a function that needs the lock runs without it — the run-time
// half of the contract, for paths the static analysis cannot follow
// (callbacks, lambdas handed to other threads).
//
// The macro names are Clang's documented ones
// (clang.llvm.org/docs/ThreadSafetyAnalysis.html).
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>

#ifndef NDEBUG
#include <atomic>
#include <cstdio>
#include <cstdlib>
#endif

#if defined(__clang__)
#define DNND_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define DNND_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) DNND_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY DNND_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) DNND_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) DNND_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) DNND_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) DNND_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) DNND_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) DNND_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) DNND_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) DNND_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) DNND_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) DNND_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) DNND_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS DNND_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace dnnd {

class CondVar;

// std::mutex with the capability attribute. Not recursive.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() {
    mu_.lock();
    SetOwner();
  }
  void unlock() RELEASE() {
    ClearOwner();
    mu_.unlock();
  }
  bool try_lock() TRY_ACQUIRE(true) {
    if (!mu_.try_lock()) return false;
    SetOwner();
    return true;
  }

  // Debug builds: aborts unless the calling thread holds this mutex. Release
  // builds: nothing. Either way, tells the static analysis it is held.
  void AssertHeld() const ASSERT_CAPABILITY(this) {
#ifndef NDEBUG
    if (owner_.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
      std::fprintf(stderr, "dnnd: Mutex::AssertHeld() failed: lock not held by this thread\n");
      std::abort();
    }
#endif
  }

 private:
  friend class CondVar;
#ifndef NDEBUG
  void SetOwner() { owner_.store(std::this_thread::get_id(), std::memory_order_relaxed); }
  void ClearOwner() { owner_.store(std::thread::id(), std::memory_order_relaxed); }
  std::atomic<std::thread::id> owner_{};
#else
  void SetOwner() {}
  void ClearOwner() {}
#endif
  std::mutex mu_;
};

// Holds a Mutex for its scope; Unlock()/Lock() release and retake it early
// (the analysis follows both).
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() RELEASE() {
    if (held_) mu_.unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void Unlock() RELEASE() {
    held_ = false;
    mu_.unlock();
  }
  void Lock() ACQUIRE() {
    mu_.lock();
    held_ = true;
  }

 private:
  friend class CondVar;
  Mutex& mu_;
  bool held_ = true;
};

// A condition variable for Mutex: waits release the lock and retake it
// before returning, like std::condition_variable.
class CondVar {
 public:
  void Wait(MutexLock& lock) {
    Wait(lock, [] { return true; });
  }
  template <typename Predicate>
  void Wait(MutexLock& lock, Predicate done) {
    std::unique_lock native(lock.mu_.mu_, std::adopt_lock);
    lock.mu_.ClearOwner();
    cv_.wait(native, done);
    lock.mu_.SetOwner();
    native.release();  // `lock` still owns it
  }
  // False if `deadline` passed with `done()` still false.
  template <typename Clock, typename Duration, typename Predicate>
  bool WaitUntil(MutexLock& lock, const std::chrono::time_point<Clock, Duration>& deadline,
                 Predicate done) {
    std::unique_lock native(lock.mu_.mu_, std::adopt_lock);
    lock.mu_.ClearOwner();
    const bool ok = cv_.wait_until(native, deadline, done);
    lock.mu_.SetOwner();
    native.release();
    return ok;
  }
  void NotifyOne() { cv_.notify_one(); }
  void NotifyAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace dnnd
