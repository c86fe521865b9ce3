// An exclusive, advisory lock on a directory for as long as the object lives
// (normally the process's lifetime): flock(2) on `<dir>/dnnd.lock`, which
// also holds the owner's PID for the error a second owner gets.
//
// Why flock: the kernel drops it when the process dies, SIGKILL included, so
// a crashed owner never leaves a stale lock to clean up by hand; the file
// itself stays (removing it would let two processes lock two different
// inodes). Its descriptor is close-on-exec: a child the owner execs does not
// inherit the lock.
//
// Not thread-safe to share; move it into its owner. Acquire() does not create
// `dir`.
#pragma once

#include <string>

#include "core/status.h"

namespace dnnd {

class DirLock {
 public:
  // Locks `dir` without waiting. `what` names the setting that chose the
  // directory (e.g. "controller.data_dir") for the errors. Unavailable, with
  // the holder's PID when it recorded one, if another open file description
  // (another process, or another DirLock in this one) holds it; IoError if
  // the lock file cannot be opened.
  static Result<DirLock> Acquire(const std::string& dir, const std::string& what);

  DirLock() = default;
  DirLock(DirLock&& other) noexcept;
  DirLock& operator=(DirLock&& other) noexcept;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  ~DirLock();  // releases it

  bool held() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }  // the lock file

 private:
  DirLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

}  // namespace dnnd
