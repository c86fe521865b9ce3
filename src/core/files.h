// Whole-file reads with a size limit, and atomic writes (temp file in the
// same directory, fsync, rename, fsync of the directory), so a crash leaves
// either the old file or the new one, never a torn one.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace dnnd {

// Reads a whole file, refusing files larger than `max_bytes`.
Result<std::string> ReadFileToString(const std::string& path, size_t max_bytes = size_t{1} << 34);
// Up to `max_bytes` from byte `offset` of a file that may still be growing
// (a log): "" at or past its end. NotFound if it does not exist.
Result<std::string> ReadFileRange(const std::string& path, uint64_t offset, size_t max_bytes);
// Writes `bytes` to `path` atomically.
Status WriteFileAtomic(const std::string& path, const std::string& bytes);
// The temp name writers use for `path` (same directory, unique per process).
std::string TempPathFor(const std::string& path);
// Makes a fully written temp file durable and moves it over `path`; removes
// the temp file on failure.
Status CommitTempFile(const std::string& tmp, const std::string& path);

}  // namespace dnnd
