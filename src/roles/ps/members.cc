// ParameterServer::Members (members.h): joining a rank and checking a
// worker's session.
#include "roles/ps/members.h"

#include <openssl/crypto.h>

#include <chrono>
#include <string>

#include "roles/ps/server_internal.h"
#include "transport/wire.h"

namespace dnnd {

using ps_internal::Refused;

Status ParameterServer::Members::InRange(int64_t rank) const {
  if (rank >= 0 && rank < options_.workers) return Status::Ok();
  Refused("beyond_workers").Inc();
  return ResourceExhausted("parameter server " + std::to_string(options_.index) +
                           " admits workers 0-" + std::to_string(options_.workers - 1) +
                           " (ps.workers = " + std::to_string(options_.workers) + "); worker " +
                           std::to_string(rank) + " is not one of this job's");
}

Result<std::string> ParameterServer::Members::Join(int64_t rank, const std::string& presented) {
  DNND_RETURN_IF_ERROR(InRange(rank));
  const std::string where = "parameter server " + std::to_string(options_.index);
  const auto now = Clock::now();
  MutexLock lock(mu_);
  Member& m = members_[rank];
  if (!m.session.empty() && Same(m.session, presented)) {
    Seen(m, now);
    return m.session;
  }
  if (!m.session.empty() && !m.left && now - m.last_seen < options_.heartbeat_timeout) {
    Refused("rank_held").Inc();
    const auto ago =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - m.last_seen).count();
    return AlreadyExists(where + ": worker " + std::to_string(rank) +
                         " is held by a live worker (heard from " + std::to_string(ago) +
                         " ms ago); another may join as " + std::to_string(rank) +
                         " once that one has been silent for ps.heartbeat_timeout_ms = " +
                         std::to_string(options_.heartbeat_timeout.count()));
  }
  m.session = wire::RandomNonce();
  Seen(m, now);
  return m.session;
}

Status ParameterServer::Members::Check(int64_t rank, const std::string& session, const char* what,
                                       bool leaving) {
  {
    MutexLock lock(mu_);
    auto it = members_.find(rank);
    if (it != members_.end() && !it->second.session.empty() && Same(it->second.session, session)) {
      Seen(it->second, Clock::now());
      it->second.left = leaving;
      return Status::Ok();
    }
  }
  Refused("unknown_worker").Inc();
  return PermissionDenied(
      std::string(what) + " from worker " + std::to_string(rank) + " refused: parameter server " +
      std::to_string(options_.index) +
      (session.empty() ? " got no session" : " did not issue that session") +
      " (a worker joins with init and sends the session it answers; after a server restart, "
      "init again)");
}

}  // namespace dnnd
