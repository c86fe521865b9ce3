#include "core/files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace dnnd {

Result<std::string> ReadFileToString(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) return IoError(path + ": cannot determine size");
  if (static_cast<uint64_t>(size) > max_bytes)
    return ResourceExhausted(path + ": " + std::to_string(size) + " bytes exceeds the limit of " +
                             std::to_string(max_bytes));
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  in.read(bytes.data(), size);
  if (!in) return IoError(path + ": read error");
  return bytes;
}

Result<std::string> ReadFileRange(const std::string& path, uint64_t offset, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) return IoError(path + ": cannot determine size");
  if (offset >= static_cast<uint64_t>(size)) return std::string();
  std::string bytes(
      static_cast<size_t>(std::min<uint64_t>(max_bytes, static_cast<uint64_t>(size) - offset)),
      '\0');
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!in) return IoError(path + ": read error");
  return bytes;
}

Result<std::string> FileVersion(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return NotFound(path + ": " + std::strerror(errno));
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

std::string TempPathFor(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

Status CommitTempFile(const std::string& tmp, const std::string& path) {
  int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    Status s = IoError(tmp + ": fsync failed: " + std::strerror(errno));
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = IoError("rename " + tmp + " -> " + path + ": " + std::strerror(errno));
    ::unlink(tmp.c_str());
    return s;
  }
  // Persist the rename itself.
  const std::filesystem::path target(path);
  (void)SyncDirectory(target.has_parent_path() ? target.parent_path().string() : ".");
  return Status::Ok();
}

Status LinkFileAtomic(const std::string& source, const std::string& target) {
  const std::string tmp = TempPathFor(target);
  ::unlink(tmp.c_str());
  if (::link(source.c_str(), tmp.c_str()) == 0) return CommitTempFile(tmp, target);
  DNND_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(source));
  return WriteFileAtomic(target, bytes);
}

Status SyncDirectory(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return IoError(dir + ": " + std::strerror(errno));
  const bool ok = ::fsync(dfd) == 0;
  const int err = errno;
  ::close(dfd);
  if (!ok) return IoError(dir + ": fsync failed: " + std::strerror(err));
  return Status::Ok();
}

namespace {

// The writer's pid when `name` is "<something>.tmp.<pid>" (TempPathFor), else 0.
pid_t TempWriter(const std::string& name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at == 0) return 0;
  const std::string digits = name.substr(at + 5);
  if (digits.empty() || digits.size() > 9 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return 0;
  return static_cast<pid_t>(std::stol(digits));
}

// A writer that may still be writing: a live process other than this one
// (EPERM: alive, another user's).
bool WriterAlive(pid_t pid) {
  if (pid == ::getpid()) return false;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

}  // namespace

Result<std::vector<std::string>> SweepTempFiles(const std::string& dir,
                                                const SweepOptions& options) {
  namespace fs = std::filesystem;
  std::vector<std::string> removed;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return removed;
  std::vector<fs::path> subdirs;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const fs::file_status st = it->symlink_status(ec);
    if (ec) break;
    const pid_t writer = TempWriter(name);
    const bool leftover =
        (writer > 0 && name.rfind(options.temp_prefix, 0) == 0 && !WriterAlive(writer)) ||
        (!options.upload_prefix.empty() && fs::is_regular_file(st) &&
         name.rfind(options.upload_prefix, 0) == 0);
    if (leftover) {
      std::error_code rm;
      fs::remove_all(it->path(), rm);
      if (rm)
        return IoError(it->path().string() +
                       ": cannot remove a leftover temporary file: " + rm.message());
      removed.push_back(it->path().string());
    } else if (options.recursive && fs::is_directory(st)) {
      subdirs.push_back(it->path());
    }
  }
  if (ec) return IoError(dir + ": cannot list: " + ec.message());
  for (const fs::path& sub : subdirs) {
    DNND_ASSIGN_OR_RETURN(std::vector<std::string> more, SweepTempFiles(sub.string(), options));
    removed.insert(removed.end(), more.begin(), more.end());
  }
  return removed;
}

Status WriteFileSynced(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return IoError(path + ": " + std::strerror(errno));
  auto fail = [&](const std::string& what) {
    Status s = IoError(path + ": " + what + std::strerror(errno));
    ::close(fd);
    ::unlink(path.c_str());
    return s;
  };
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return fail("");
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) return fail("fsync failed: ");
  if (::close(fd) != 0) {
    ::unlink(path.c_str());
    return IoError(path + ": close failed: " + std::strerror(errno));
  }
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = TempPathFor(path);
  DNND_RETURN_IF_ERROR(WriteFileSynced(tmp, bytes));
  return CommitTempFile(tmp, path);  // its fsync finds nothing left to write
}

RemoveUnlessKept::~RemoveUnlessKept() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace dnnd
