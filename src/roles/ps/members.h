// ParameterServer::Members (parameter_server.h): which worker ranks joined
// this server and the session each was issued. Internal to the parameter
// server (its .cc files include it); parameter_server.h describes the
// membership rules.
//
// Threading: every method is thread-safe, one map lookup under one mutex
// (Members::mu_, a leaf lock). Errors: refusals are ResourceExhausted (rank
// beyond ps.workers), AlreadyExists (rank held by a live worker) or
// PermissionDenied (unknown session), each counted in dnnd_ps_refused_total.
#pragma once

#include <openssl/crypto.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "core/status.h"
#include "core/thread_annotations.h"
#include "roles/ps/parameter_server.h"

namespace dnnd {

// ---------------------------------------------------------------------------
// Members: which worker ranks joined this server, each with the session (32
// random bytes) issued at its join. Thread-safe; every check is one map
// lookup under one mutex, so refusing an invented id costs next to nothing.
// ---------------------------------------------------------------------------

class ParameterServer::Members {
 public:
  explicit Members(const ParameterServerOptions& options) : options_(options) {}

  // Ok if `rank` is one of the job's, [0, ps.workers); checked before
  // anything costly.
  Status InRange(int64_t rank) const;

  // Admits `rank` (init): the session it `presented` if that is the rank's
  // current one (a worker re-initialising), else a new one if the rank is
  // free (never joined, left, or its holder silent for the heartbeat
  // timeout). Refusals name the limit and are counted.
  Result<std::string> Join(int64_t rank, const std::string& presented);

  // Ok if `session` is the one issued to `rank` (marking it seen, and back
  // from a leave); PermissionDenied, counted, otherwise.
  Status Check(int64_t rank, const std::string& session, const char* what, bool leaving = false);

 private:
  struct Member {
    std::string session;  // empty: never joined
    Clock::time_point last_seen;
    bool left = false;
  };
  static bool Same(const std::string& a, const std::string& b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
  }
  static void Seen(Member& m, Clock::time_point now) {
    m.last_seen = now;
    m.left = false;
  }

  const ParameterServerOptions& options_;
  Mutex mu_;  // a leaf: nothing else is locked while it is held
  std::map<int64_t, Member> members_ GUARDED_BY(mu_);  // at most ps.workers entries
};

}  // namespace dnnd
