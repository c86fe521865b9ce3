// `dnnd wait`: blocks until files another process writes are there and
// complete. The image has no shell, so this is how a container (a Kubernetes
// init container, a Swarm service) starts only after the previous stage of a
// pipeline finished: split -> train -> aggregate waits for the splitter's
// manifest, then for every worker's checkpoint, instead of sleeping.
//
//   dnnd wait --file <path> [--file <path> | --files a,b,c ...]
//             [--json-key <key>] [--timeout <seconds>] [--interval-ms <ms>]
//             [-- <dnnd arguments>]
//
// With `-- <dnnd arguments>`, once the files are ready the process replaces
// itself with `dnnd <dnnd arguments>` (exec): the way to order stages where
// there are no init containers (Docker Swarm), e.g.
//   dnnd wait --file runs/shards/manifest.json --json-key shards -- --role=worker --config ...
//
// A file is ready when it exists and is a regular file; with --json-key, when
// it also parses as a JSON object holding that key (a manifest is read only
// once it is whole). dnnd's writers replace files atomically (rename), so a
// present file is a finished one.
//
// Exit codes: 0 every file is ready; 1 the timeout passed first (the message
// names each file that is not ready and why); 2 a usage error. With "--", the
// exit code is the exec'd dnnd's (or 1 if the exec itself fails).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/status.h"

namespace dnnd {

struct WaitSpec {
  std::vector<std::string> files;
  std::string json_key;                        // empty: existence is enough
  std::chrono::milliseconds timeout{600'000};  // 0: no limit
  std::chrono::milliseconds interval{500};     // between looks
  std::vector<std::string> then;               // after "--": dnnd's arguments to exec
};

// Parses the arguments after "wait".
Result<WaitSpec> ParseWaitArgs(const std::vector<std::string>& args);

// Why `path` is not ready (e.g. "does not exist", "is not valid JSON (yet)"),
// or the empty string when it is.
std::string FileNotReady(const std::string& path, const std::string& json_key);

// `dnnd wait <args>`: progress and the outcome on stderr; the exit code above.
// `self` is the dnnd binary to exec after "--" (normally /proc/self/exe).
int RunWait(const std::vector<std::string>& args, const std::string& self = "/proc/self/exe");

}  // namespace dnnd
