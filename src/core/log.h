// Structured, levelled logging to stderr, one line per event:
//   text: 2026-11-23T10:00:00.123Z INFO worker: epoch done epoch=3 loss=0.41
//   json: {"ts":"...","level":"info","component":"worker","msg":"epoch done","epoch":3,"loss":0.41}
//
//   Log(LogLevel::kInfo, "worker", "epoch done", {{"epoch", 3}, {"loss", 0.41}});
// Thread-safe; the level and format are set once from [log].
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace dnnd {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

using LogValue = std::variant<int64_t, double, bool, std::string>;
struct LogField {
  LogField(std::string k, int v) : key(std::move(k)), value(int64_t{v}) {}
  LogField(std::string k, int64_t v) : key(std::move(k)), value(v) {}
  LogField(std::string k, double v) : key(std::move(k)), value(v) {}
  LogField(std::string k, bool v) : key(std::move(k)), value(v) {}
  LogField(std::string k, std::string v) : key(std::move(k)), value(std::move(v)) {}
  LogField(std::string k, const char* v) : key(std::move(k)), value(std::string(v)) {}
  std::string key;
  LogValue value;
};

// level: debug|info|warn|error; format: text|json.
void ConfigureLogging(const std::string& level, const std::string& format);
void Log(LogLevel level, const std::string& component, const std::string& msg,
         const std::vector<LogField>& fields = {});
// The line Log() would write (for tests), without the trailing newline.
std::string FormatLogLine(LogLevel level, const std::string& component, const std::string& msg,
                          const std::vector<LogField>& fields, bool json);

}  // namespace dnnd
