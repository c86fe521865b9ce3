// Internals shared by the parameter server's pieces (parameter_server.cc,
// chunk.cc, members.cc): the refusal counter. Not an API. Thread-safe (the
// metrics registry is).
#pragma once

#include "core/metrics.h"

namespace dnnd::ps_internal {

// Requests refused before they could touch the server's state, by reason:
// unknown_worker (no session, or not the one issued), beyond_workers (a rank
// >= ps.workers), rank_held (a rank a live worker holds), non_finite.
inline Counter& Refused(const char* reason) {
  return DefaultMetrics().Counter(
      "dnnd_ps_refused_total",
      "requests refused before touching the state: unknown worker or session, rank beyond "
      "ps.workers, rank held by a live worker, non-finite values",
      {{"reason", reason}});
}

}  // namespace dnnd::ps_internal
