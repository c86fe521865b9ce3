// Whole-file reads with a size limit, and atomic writes (temp file in the
// same directory, fsync, rename, fsync of the directory), so a crash leaves
// either the old file or the new one, never a torn one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace dnnd {

// Reads a whole file, refusing files larger than `max_bytes`.
Result<std::string> ReadFileToString(const std::string& path, size_t max_bytes = size_t{1} << 34);
// Up to `max_bytes` from byte `offset` of a file that may still be growing
// (a log): "" at or past its end. NotFound if it does not exist.
Result<std::string> ReadFileRange(const std::string& path, uint64_t offset, size_t max_bytes);
// What stat says of which file `path` is: device, inode, size and
// modification time (ns), as text. It changes when the file is replaced
// (a rename over it, a delete and re-create) or rewritten, so caches of what
// a file holds key on it rather than on the path. NotFound if missing.
Result<std::string> FileVersion(const std::string& path);
// Writes `bytes` to `path` (created or truncated) and fsyncs it; not atomic:
// for files inside a directory that is itself switched into place by rename.
// The file is removed on failure.
Status WriteFileSynced(const std::string& path, const std::string& bytes);
// Writes `bytes` to `path` atomically.
Status WriteFileAtomic(const std::string& path, const std::string& bytes);
// The temp name writers use for `path` (same directory, unique per process).
std::string TempPathFor(const std::string& path);
// Makes a fully written temp file durable and moves it over `path`; removes
// the temp file on failure.
Status CommitTempFile(const std::string& tmp, const std::string& path);
// Makes `target` the same content as `source` atomically: a hard link (no
// copy), or a copy where the filesystem has none. Only for files that are
// replaced by rename, never written in place (they share an inode).
Status LinkFileAtomic(const std::string& source, const std::string& target);
// fsync of a directory: makes the renames and creations inside it durable.
Status SyncDirectory(const std::string& dir);

// What a writer killed mid-write leaves behind, removed at start by the role
// that owns `dir` (a SIGKILL runs no cleanup). Removed: entries (files, or
// whole directories such as a checkpoint generation being written) named
// `<name>.tmp.<pid>` as TempPathFor makes them, unless <pid> is a live process
// other than this one (a concurrent writer; the caller has written nothing
// there yet in this process); and regular files whose name starts with
// `upload_prefix`, when set (the HTTP server's spooled upload bodies: sweep
// those only before the server starts). Nothing else is touched; symbolic
// links are not followed. Returns the paths removed; a missing `dir` is no
// error, an unreadable one is.
struct SweepOptions {
  bool recursive = false;  // the subdirectories too
  std::string
      temp_prefix;  // only temp names starting with this (one owner's among several in `dir`)
  std::string upload_prefix;  // e.g. kUploadFilePrefix; empty: none
};
Result<std::vector<std::string>> SweepTempFiles(const std::string& dir,
                                                const SweepOptions& options = {});

// Removes `path` (a file, or a directory with everything in it) when it goes
// out of scope, unless Keep() was called first: what a request staged on disk
// does not outlive the request's refusal, whichever return refuses it.
// Errors removing it are ignored (it was scratch).
class RemoveUnlessKept {
 public:
  explicit RemoveUnlessKept(std::string path) : path_(std::move(path)) {}
  ~RemoveUnlessKept();
  RemoveUnlessKept(const RemoveUnlessKept&) = delete;
  RemoveUnlessKept& operator=(const RemoveUnlessKept&) = delete;
  void Keep() { path_.clear(); }

 private:
  std::string path_;
};

}  // namespace dnnd
