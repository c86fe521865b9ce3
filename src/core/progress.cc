#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace dnnd {

ProgressMode ParseProgressMode(const std::string& s) {
  if (s == "bar") return ProgressMode::kBar;
  if (s == "log") return ProgressMode::kLog;
  if (s == "none") return ProgressMode::kNone;
  return ProgressMode::kAuto;
}

std::string HumanCount(double v) {
  char buf[32];
  if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

ProgressBar::ProgressBar(std::string label, int64_t total_steps, ProgressMode mode)
    : label_(std::move(label)), total_(total_steps), mode_(mode) {
  if (mode_ == ProgressMode::kAuto)
    mode_ = isatty(STDERR_FILENO) ? ProgressMode::kBar : ProgressMode::kLog;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

void ProgressBar::Update(int64_t done, double loss, int64_t samples) {
  if (mode_ == ProgressMode::kNone) return;
  auto now = std::chrono::steady_clock::now();
  if (mode_ == ProgressMode::kBar) {
    if (now - last_draw_ < std::chrono::milliseconds(100) && done < total_) return;
    last_draw_ = now;
    Draw(done, loss, samples);
  } else {
    int quarter = total_ > 0 ? static_cast<int>(4 * done / total_) : 4;
    if (quarter == last_quarter_ || quarter == 0 || quarter >= 4) return;
    last_quarter_ = quarter;
    Draw(done, loss, samples);
  }
}

void ProgressBar::Draw(int64_t done, double loss, int64_t samples) {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = total_ > 0 ? static_cast<double>(done) / total_ : 1.0;
  const double rate = secs > 0 ? samples / secs : 0.0;
  const double eta = frac > 0 ? secs * (1.0 - frac) / frac : 0.0;
  constexpr int kWidth = 24;
  std::string bar;
  int filled = static_cast<int>(frac * kWidth);
  for (int i = 0; i < kWidth; ++i) bar += i < filled ? "\u2588" : "\u2591";
  char line[256];
  std::snprintf(line, sizeof line, "%s [%s] %3.0f%% %lld/%lld loss %.4f %s samples/s ETA %.0fs",
                label_.c_str(), bar.c_str(), 100.0 * frac, static_cast<long long>(done),
                static_cast<long long>(total_), loss, HumanCount(rate).c_str(), eta);
  if (mode_ == ProgressMode::kBar)
    std::fprintf(stderr, "\r\033[K%s", line);
  else
    std::fprintf(stderr, "%s\n", line);
  std::fflush(stderr);
}

void ProgressBar::Finish(const std::string& summary) {
  if (mode_ == ProgressMode::kBar) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s %s\n", label_.c_str(), summary.c_str());
  std::fflush(stderr);
}

}  // namespace dnnd
