// A per-epoch progress display for training:
//
//   epoch 3/5 [██████████████░░░░░░░░░░] 58% 273/469 loss 0.4123 41.2k samples/s ETA 2s
//
// On a terminal it redraws one line in place (at most 10 times a second); when
// stderr is a pipe or file it prints a plain line every 25% so logs stay short.
// kNone draws nothing but still prints Finish()'s one-line epoch summary.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dnnd {

enum class ProgressMode { kAuto, kBar, kLog, kNone };
ProgressMode ParseProgressMode(const std::string& s);  // auto|bar|log|none

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total_steps, ProgressMode mode);
  // `done` steps finished; `loss` the running mean; `samples` seen this epoch.
  void Update(int64_t done, double loss, int64_t samples);
  // Ends the line with a summary ("... done in 4.1s").
  void Finish(const std::string& summary);

 private:
  void Draw(int64_t done, double loss, int64_t samples);

  std::string label_;
  int64_t total_;
  ProgressMode mode_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int last_quarter_ = -1;
};

// "41.2k", "1.3M".
std::string HumanCount(double v);

}  // namespace dnnd
