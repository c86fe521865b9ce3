#include "core/wait_files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/files.h"

namespace dnnd {
namespace {

constexpr const char* kWaitUsage =
    "usage: dnnd wait --file <path> [--file <path> | --files a,b,c ...] [--json-key <key>]\n"
    "                 [--timeout <seconds, 0 = none; default 600>] [--interval-ms <ms; default "
    "500>]\n"
    "                 [-- <dnnd arguments to run once the files are ready>]\n"
    "exit 0 when every file is ready, 1 on timeout, 2 on a usage error\n";

// Parses an integer flag value in [lo, hi].
Result<long long> IntFlag(const std::string& flag, const std::string& text, long long lo,
                          long long hi) {
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < lo || v > hi)
    return InvalidArgument(flag + " must be an integer in [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "], got '" + text + "'");
  return v;
}

// Splits "a,b,c" into its non-empty parts.
std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

Result<WaitSpec> ParseWaitArgs(const std::vector<std::string>& args) {
  WaitSpec spec;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") {
      spec.then.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      if (spec.then.empty())
        return InvalidArgument("nothing after --: give the dnnd arguments to run");
      break;
    }
    std::string flag = args[i], value;
    if (const size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (flag.rfind("--", 0) == 0) {
      if (i + 1 >= args.size()) return InvalidArgument(flag + " needs a value");
      value = args[++i];
    } else {
      return InvalidArgument("unexpected argument '" + flag +
                             "' (files go after --file or --files)");
    }
    if (flag == "--file") {
      if (value.empty()) return InvalidArgument("--file needs a path");
      spec.files.push_back(value);
    } else if (flag == "--files") {
      const auto parts = SplitList(value);
      if (parts.empty()) return InvalidArgument("--files needs a comma-separated list of paths");
      spec.files.insert(spec.files.end(), parts.begin(), parts.end());
    } else if (flag == "--json-key") {
      if (value.empty()) return InvalidArgument("--json-key needs a key");
      spec.json_key = value;
    } else if (flag == "--timeout") {
      DNND_ASSIGN_OR_RETURN(long long s, IntFlag(flag, value, 0, 7 * 24 * 3600));
      spec.timeout = std::chrono::seconds(s);
    } else if (flag == "--interval-ms") {
      DNND_ASSIGN_OR_RETURN(long long ms, IntFlag(flag, value, 10, 600'000));
      spec.interval = std::chrono::milliseconds(ms);
    } else {
      return InvalidArgument("unknown option " + flag);
    }
  }
  if (spec.files.empty()) return InvalidArgument("nothing to wait for: give --file or --files");
  return spec;
}

std::string FileNotReady(const std::string& path, const std::string& json_key) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "does not exist";
  if (!S_ISREG(st.st_mode)) return "is not a regular file";
  if (json_key.empty()) return "";
  // A manifest is small; a huge file here is not one.
  auto text = ReadFileToString(path, size_t{64} << 20);
  if (!text) return "cannot be read: " + text.status().message();
  boost::system::error_code ec;
  const boost::json::value doc = boost::json::parse(*text, ec);
  if (ec) return "is not valid JSON (yet): " + ec.message();
  if (!doc.is_object()) return "is JSON but not an object";
  if (!doc.as_object().contains(json_key)) return "has no key \"" + json_key + "\"";
  return "";
}

namespace {

// Replaces this process with `self <then...>`; returns only if exec fails.
int ExecDnnd(const std::string& self, const std::vector<std::string>& then) {
  std::vector<char*> argv;
  std::string argv0 = "dnnd";
  argv.push_back(argv0.data());
  for (const auto& a : then) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(nullptr);
  ::execv(self.c_str(), argv.data());
  std::fprintf(stderr, "dnnd: wait: cannot run %s: %s\n", self.c_str(), std::strerror(errno));
  return 1;
}

}  // namespace

int RunWait(const std::vector<std::string>& args, const std::string& self) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::fputs(kWaitUsage, stdout);
    return 0;
  }
  auto spec = ParseWaitArgs(args);
  if (!spec) {
    std::fprintf(stderr, "dnnd: wait: %s\n%s", spec.status().message().c_str(), kWaitUsage);
    return 2;
  }
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto last_report = start;
  std::fprintf(stderr, "dnnd: wait: waiting for %zu file(s)%s%s\n", spec->files.size(),
               spec->json_key.empty() ? "" : " with JSON key ", spec->json_key.c_str());
  while (true) {
    std::vector<std::string> pending;  // "path: reason"
    for (const auto& f : spec->files)
      if (std::string why = FileNotReady(f, spec->json_key); !why.empty())
        pending.push_back(f + ": " + why);
    const auto now = Clock::now();
    if (pending.empty()) {
      std::fprintf(stderr, "dnnd: wait: all %zu file(s) ready after %.1f s\n", spec->files.size(),
                   Seconds(now - start));
      return spec->then.empty() ? 0 : ExecDnnd(self, spec->then);
    }
    const bool timed_out = spec->timeout.count() > 0 && now - start >= spec->timeout;
    // Long waits say what they are waiting for every 30 s (a stuck stage shows in the logs).
    if (timed_out || now - last_report >= std::chrono::seconds(30)) {
      std::fprintf(stderr, "dnnd: wait: %s after %.0f s, %zu of %zu not ready:\n",
                   timed_out ? "timed out" : "still waiting", Seconds(now - start), pending.size(),
                   spec->files.size());
      for (const auto& p : pending) std::fprintf(stderr, "  %s\n", p.c_str());
      last_report = now;
    }
    if (timed_out) return 1;
    std::this_thread::sleep_for(spec->interval);
  }
}

}  // namespace dnnd
