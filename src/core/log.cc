#include "core/log.h"

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace dnnd {
namespace {

std::mutex mu;
LogLevel min_level = LogLevel::kInfo;
bool json_format = false;

const char* LevelName(LogLevel l, bool lower) {
  switch (l) {
    case LogLevel::kDebug:
      return lower ? "debug" : "DEBUG";
    case LogLevel::kInfo:
      return lower ? "info" : "INFO";
    case LogLevel::kWarn:
      return lower ? "warn" : "WARN";
    case LogLevel::kError:
      return lower ? "error" : "ERROR";
  }
  return "?";
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

}  // namespace

void ConfigureLogging(const std::string& level, const std::string& format) {
  std::lock_guard lock(mu);
  min_level = level == "debug"   ? LogLevel::kDebug
              : level == "warn"  ? LogLevel::kWarn
              : level == "error" ? LogLevel::kError
                                 : LogLevel::kInfo;
  json_format = format == "json";
}

std::string FormatLogLine(LogLevel level, const std::string& component, const std::string& msg,
                          const std::vector<LogField>& fields, bool json) {
  if (json) {
    boost::json::object o{{"ts", Timestamp()},
                          {"level", LevelName(level, true)},
                          {"component", component},
                          {"msg", msg}};
    for (const auto& f : fields) std::visit([&](const auto& v) { o[f.key] = v; }, f.value);
    return boost::json::serialize(o);
  }
  std::string line = Timestamp() + " " + LevelName(level, false) + " " + component + ": " + msg;
  for (const auto& f : fields) {
    line += " " + f.key + "=";
    std::visit(
        [&](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, std::string>) {
            // Quote values with spaces so the line stays key=value parseable.
            line += v.find(' ') == std::string::npos
                        ? v
                        : boost::json::serialize(boost::json::value(v));
          } else if constexpr (std::is_same_v<V, bool>) {
            line += v ? "true" : "false";
          } else if constexpr (std::is_same_v<V, double>) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.6g", v);
            line += buf;
          } else {
            line += std::to_string(v);
          }
        },
        f.value);
  }
  return line;
}

void Log(LogLevel level, const std::string& component, const std::string& msg,
         const std::vector<LogField>& fields) {
  bool json;
  {
    std::lock_guard lock(mu);
    if (level < min_level) return;
    json = json_format;
  }
  std::string line = FormatLogLine(level, component, msg, fields, json) + "\n";
  std::lock_guard lock(mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace dnnd
