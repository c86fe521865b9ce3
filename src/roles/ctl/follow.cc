#include "roles/ctl/follow.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <optional>
#include <thread>

#include "core/json_text.h"

namespace dnnd {
namespace {

namespace json = boost::json;

bool Terminal(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "cancelled";
}

std::string Str(const json::value& v) { return v.is_string() ? std::string(v.get_string()) : ""; }

double Number(const json::value* v, double def = 0) {
  return v && v->is_number() ? v->to_number<double>() : def;
}

const json::value* Field(const json::value& v, const char* key) {
  return v.is_object() ? v.get_object().if_contains(key) : nullptr;
}

std::string Duration(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char b[32];
  if (s >= 3600)
    std::snprintf(b, sizeof b, "%ldh%02ldm", s / 3600, s / 60 % 60);
  else if (s >= 60)
    std::snprintf(b, sizeof b, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(b, sizeof b, "%lds", s);
  return b;
}

// Waits out the controller's unavailability between polls; false once it
// has lasted longer than the limit.
class Reachability {
 public:
  explicit Reachability(const FollowOptions& o) : options_(o) {}

  // GETs `target`, riding out a controller that is briefly unreachable (a
  // restart). The checked reply, or nullopt with *rc set when following ends.
  std::optional<CtlReply> Get(const CtlClient& client, const std::string& target, int* rc) {
    for (;;) {
      auto r = client.Request("GET", target);
      if (!r) {
        if (!Failed()) {
          *rc = 1;
          return std::nullopt;
        }
        std::this_thread::sleep_for(options_.interval);
        continue;
      }
      Ok();
      if ((*rc = CheckReply(r, client)) != 0) return std::nullopt;
      return r;
    }
  }

  bool Failed() {
    const auto now = std::chrono::steady_clock::now();
    if (!since_) {
      since_ = now;
      std::fprintf(stderr, "dnnd ctl: lost the controller; retrying for up to %llds\n",
                   static_cast<long long>(options_.unreachable_limit.count()));
    }
    return now - *since_ < options_.unreachable_limit;
  }
  void Ok() { since_.reset(); }

 private:
  const FollowOptions& options_;
  std::optional<std::chrono::steady_clock::time_point> since_;
};

}  // namespace

std::string ProgressLine(const json::value& job) {
  const std::string state = Str(job.at("state"));
  const json::value* params = Field(job, "params");
  const long long epochs =
      static_cast<long long>(Number(params ? Field(*params, "epochs") : nullptr));
  const double pct = std::min(100.0, std::max(0.0, Number(Field(job, "progress"))));
  constexpr int kWidth = 20;
  const int filled = static_cast<int>(pct / 100.0 * kWidth + 0.5);
  char line[256];
  std::snprintf(line, sizeof line, "job %lld %-9s epoch %lld/%lld [%s%s] %3.0f%%",
                static_cast<long long>(Number(Field(job, "id"))), state.c_str(),
                static_cast<long long>(Number(Field(job, "epoch"))), epochs,
                std::string(filled, '#').c_str(), std::string(kWidth - filled, '-').c_str(), pct);
  std::string out = line;
  const json::value* history = Field(job, "history");
  if (history && history->is_array() && !history->get_array().empty()) {
    const json::value& last = history->get_array().back();
    std::snprintf(line, sizeof line, "  loss %.4f", Number(Field(last, "train_loss")));
    out += line;
    if (const json::value* acc = Field(last, "test_accuracy")) {
      std::snprintf(line, sizeof line, "  acc %.2f%%", 100 * Number(acc));
      out += line;
    }
  }
  const json::value* eta = Field(job, "eta_seconds");
  if (!Terminal(state))
    out += "  ETA " + (eta && eta->is_number() ? Duration(Number(eta)) : std::string("-"));
  return out;
}

int FollowJob(const CtlClient& client, const std::string& id, bool as_json,
              const FollowOptions& options) {
  Reachability reach(options);
  std::string last_printed;
  for (;;) {
    int rc = 0;
    auto r = reach.Get(client, "/api/v1/jobs/" + id, &rc);
    if (!r) return rc;
    boost::system::error_code ec;
    json::value job = json::parse(r->body, ec);
    if (ec || !job.is_object() || !Field(job, "state")) {
      std::fprintf(stderr, "dnnd ctl: unexpected reply for job %s: %s\n", id.c_str(),
                   r->body.substr(0, 200).c_str());
      return 1;
    }
    const std::string state = Str(job.at("state"));
    const bool done = Terminal(state);
    if (!as_json) {
      const std::string line = ProgressLine(job);
      if (options.redraw) {
        std::printf("\r%s\033[K%s", line.c_str(), done ? "\n" : "");
      } else {
        // One line per change of epoch or state, not per poll (logs, CI).
        const std::string key = state + "/" + json::serialize(job.at("epoch"));
        if (key != last_printed) std::printf("%s\n", line.c_str());
        last_printed = key;
      }
      std::fflush(stdout);
    }
    if (done) {
      if (as_json) std::fputs(PrettyJson(job).c_str(), stdout);
      if (state == "succeeded") return 0;
      const std::string reason = Field(job, "reason") ? Str(job.at("reason")) : "";
      std::fprintf(stderr, "dnnd ctl: job %s %s%s%s\n", id.c_str(), state.c_str(),
                   reason.empty() ? "" : ": ", reason.c_str());
      return 4;
    }
    std::this_thread::sleep_for(options.interval);
  }
}

int FollowLogs(const CtlClient& client, const std::string& id, const FollowOptions& options) {
  Reachability reach(options);
  std::string offset = "0";
  for (;;) {
    int rc = 0;
    auto r = reach.Get(client, "/api/v1/jobs/" + id + "/logs?offset=" + offset, &rc);
    if (!r) return rc;
    std::fwrite(r->body.data(), 1, r->body.size(), stdout);
    std::fflush(stdout);
    const std::string next = r->header("X-Log-Offset");
    if (next.empty()) {
      std::fprintf(stderr,
                   "dnnd ctl: the controller does not support following logs (no X-Log-Offset)\n");
      return 1;
    }
    offset = next;
    // The state is read with the bytes, so an empty read of an ended job
    // means the log is complete.
    if (r->body.empty() && Terminal(r->header("X-Job-State"))) return 0;
    if (r->body.empty()) std::this_thread::sleep_for(options.interval);
  }
}

}  // namespace dnnd
