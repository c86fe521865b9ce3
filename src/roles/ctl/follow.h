// `dnnd ctl train --follow` and `dnnd ctl job logs -f`: poll the controller
// until a job ends.
//
// Polling, not a held-open stream: each poll is one short request to a
// stateless endpoint (GET /api/v1/jobs/{id}, GET /api/v1/jobs/{id}/logs?offset=N),
// so a follower survives a controller restart (the job resumes, the log file
// and its offsets persist), passes any proxy, and never parks one of the
// controller's I/O threads (its handlers are synchronous by design).
#pragma once

#include <boost/json/value.hpp>
#include <chrono>
#include <string>

#include "roles/ctl/client.h"

namespace dnnd {

struct FollowOptions {
  std::chrono::milliseconds interval{500};  // between polls
  bool redraw = false;                      // stdout is a terminal: redraw one line in place
  // Give up (exit 1) after the controller has been unreachable this long.
  std::chrono::seconds unreachable_limit{60};
};

// One line of progress from a job's JSON (GET /api/v1/jobs/{id}):
//   job 3 running  epoch 2/5 [########------------] 40%  loss 0.4312  acc 84.10%  ETA 1m05s
// loss is the last epoch's train loss, acc its test accuracy (when evaluated).
std::string ProgressLine(const boost::json::value& job);

// Polls job `id`, printing its progress on stdout (redrawn in place on a
// terminal, else one line each time the epoch or state changes) until it is
// succeeded, failed or cancelled. With `as_json` prints the final job JSON
// instead. Returns 0 if it succeeded, 4 if it failed or was cancelled (the
// reason on stderr), 3 if the controller refused (e.g. no such job), 1 if it
// stayed unreachable.
int FollowJob(const CtlClient& client, const std::string& id, bool as_json,
              const FollowOptions& options);

// Prints job `id`'s log from the start and then as it grows, until the job
// has ended and the log is drained. Returns 0, or CheckReply's code.
int FollowLogs(const CtlClient& client, const std::string& id, const FollowOptions& options);

}  // namespace dnnd
