#include "core/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace dnnd {
namespace {

// The PID the holder wrote into the lock file, or "" (an older or foreign
// holder, or one that crashed before writing it).
std::string HolderPid(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return "";
  std::string pid(buf, static_cast<size_t>(n));
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) return "";
  return pid;
}

}  // namespace

Result<DirLock> DirLock::Acquire(const std::string& dir, const std::string& what) {
  std::string path = dir + "/dnnd.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return IoError("cannot open " + path + " (the lock of " + what + " " + dir +
                   "): " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string pid = HolderPid(fd);
    ::close(fd);
    if (err != EWOULDBLOCK)
      return IoError("cannot lock " + path + " (" + what + " " + dir + "): " + std::strerror(err));
    return Unavailable(
        what + " " + dir + " is in use by another process" +
        (pid.empty() ? std::string() : " (pid " + pid + ")") +
        ": one directory serves one process at a time; stop that one or choose another " + what);
  }
  // Ours now: record who holds it (best effort; the lock itself is the flock).
  const std::string pid = std::to_string(::getpid()) + "\n";
  [[maybe_unused]] const bool recorded =
      ::ftruncate(fd, 0) == 0 &&
      ::pwrite(fd, pid.data(), pid.size(), 0) == static_cast<ssize_t>(pid.size());
  return DirLock(fd, std::move(path));
}

DirLock::DirLock(DirLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

DirLock& DirLock::operator=(DirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
}

}  // namespace dnnd
