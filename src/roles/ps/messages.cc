#include "roles/ps/messages.h"

#include <utility>

namespace dnnd::ps {
namespace {

void SetMember(const Member& member, wire::Fields& f) {
  f.SetInt("worker", member.worker);
  f.SetBytes("session", member.session);
}

// The session is optional on the wire (a first init has none): "" then.
Result<Member> GetMember(const wire::Fields& f) {
  Member member;
  DNND_ASSIGN_OR_RETURN(member.worker, f.GetInt("worker"));
  DNND_ASSIGN_OR_RETURN(std::optional<std::string> session, f.FindBytes("session"));
  member.session = session.value_or("");
  return member;
}

}  // namespace

wire::Message InitRequest::Encode() const {
  wire::Message m{.type = kInit};
  m.fields.SetString("spec", spec);
  m.fields.SetInt("seed", static_cast<int64_t>(seed));
  m.fields.SetInt("servers", servers);
  m.fields.SetInt("index", index);
  SetMember(member, m.fields);
  if (!initial_digest.empty()) m.fields.SetString("initial", initial_digest);
  if (!frozen.empty()) {
    std::string names;
    for (const auto& f : frozen) names += (names.empty() ? "" : "\n") + f;
    m.fields.SetString("frozen", names);
  }
  m.tensors = initial;  // views: shares the storages
  return m;
}

Result<InitRequest> InitRequest::Decode(const wire::Message& m) {
  return wire::DecodeMessage<InitRequest>("ps init", [&]() -> Result<InitRequest> {
    InitRequest r;
    DNND_ASSIGN_OR_RETURN(r.spec, m.fields.GetString("spec"));
    DNND_ASSIGN_OR_RETURN(int64_t seed, m.fields.GetInt("seed"));
    r.seed = static_cast<uint64_t>(seed);
    DNND_ASSIGN_OR_RETURN(r.servers, m.fields.GetInt("servers"));
    DNND_ASSIGN_OR_RETURN(r.index, m.fields.GetInt("index"));
    DNND_ASSIGN_OR_RETURN(r.member, GetMember(m.fields));
    DNND_ASSIGN_OR_RETURN(std::optional<std::string> digest, m.fields.FindString("initial"));
    r.initial_digest = digest.value_or("");
    if (r.initial_digest.empty() && !m.tensors.empty())
      return InvalidArgument("tensors without an 'initial' digest");
    r.initial = m.tensors;
    DNND_ASSIGN_OR_RETURN(std::optional<std::string> frozen, m.fields.FindString("frozen"));
    if (frozen) {
      size_t start = 0;
      for (;;) {
        const size_t end = frozen->find('\n', start);
        r.frozen.push_back(frozen->substr(start, end - start));
        if (end == std::string::npos) break;
        start = end + 1;
      }
    }
    return r;
  });
}

wire::Message InitReply::Encode() const {
  wire::Message m{.type = kInit};
  m.fields.SetString("mode", mode);
  m.fields.SetInt("kavg_steps", kavg_steps);
  m.fields.SetInt("chunks", chunks);
  m.fields.SetInt("version", version);
  m.fields.SetInt("worker_step", worker_step);
  m.fields.SetBytes("session", session);
  return m;
}

Result<InitReply> InitReply::Decode(const wire::Message& m) {
  return wire::DecodeMessage<InitReply>("ps init reply", [&]() -> Result<InitReply> {
    InitReply r;
    DNND_ASSIGN_OR_RETURN(r.mode, m.fields.GetString("mode"));
    if (r.mode != "sync" && r.mode != "async" && r.mode != "kavg")
      return InvalidArgument("field 'mode' is '" + r.mode + "', expected sync, async or kavg");
    DNND_ASSIGN_OR_RETURN(r.kavg_steps, m.fields.GetInt("kavg_steps"));
    DNND_ASSIGN_OR_RETURN(r.chunks, m.fields.GetInt("chunks"));
    if (r.kavg_steps < 1 || r.chunks < 1)
      return InvalidArgument("fields 'kavg_steps' (" + std::to_string(r.kavg_steps) +
                             ") and 'chunks' (" + std::to_string(r.chunks) + ") must be >= 1");
    DNND_ASSIGN_OR_RETURN(r.version, m.fields.GetInt("version"));
    DNND_ASSIGN_OR_RETURN(r.worker_step, m.fields.GetInt("worker_step"));
    DNND_ASSIGN_OR_RETURN(r.session, m.fields.GetBytes("session"));
    if (r.session.empty()) return InvalidArgument("field 'session' is empty");
    return r;
  });
}

wire::Message PushRequest::Encode() const {
  wire::Message m{.type = kPush};
  SetMember(member, m.fields);
  m.fields.SetInt("chunk", chunk);
  m.fields.SetInt("version", version);
  m.fields.SetInt("step", step);
  if (lr) m.fields.SetFloat("lr", *lr);
  m.tensors = tensors;  // views: shares the storages
  return m;
}

Result<PushRequest> PushRequest::Decode(const wire::Message& m) {
  return wire::DecodeMessage<PushRequest>("ps push", [&]() -> Result<PushRequest> {
    PushRequest r;
    DNND_ASSIGN_OR_RETURN(r.member, GetMember(m.fields));
    DNND_ASSIGN_OR_RETURN(std::optional<int64_t> chunk, m.fields.FindInt("chunk"));
    r.chunk = chunk.value_or(0);
    DNND_ASSIGN_OR_RETURN(r.version, m.fields.GetInt("version"));
    DNND_ASSIGN_OR_RETURN(r.step, m.fields.GetInt("step"));
    DNND_ASSIGN_OR_RETURN(r.lr, m.fields.FindFloat("lr"));
    r.tensors = m.tensors;
    return r;
  });
}

wire::Message PullRequest::Encode() const {
  wire::Message m{.type = kPull};
  if (member) SetMember(*member, m.fields);
  m.fields.SetInt("chunk", chunk);
  if (if_newer_than >= 0) m.fields.SetInt("if_newer_than", if_newer_than);
  return m;
}

Result<PullRequest> PullRequest::Decode(const wire::Message& m) {
  return wire::DecodeMessage<PullRequest>("ps pull", [&]() -> Result<PullRequest> {
    PullRequest r;
    if (m.fields.Has("worker")) {
      DNND_ASSIGN_OR_RETURN(r.member, GetMember(m.fields));
    }
    DNND_ASSIGN_OR_RETURN(std::optional<int64_t> chunk, m.fields.FindInt("chunk"));
    r.chunk = chunk.value_or(0);
    DNND_ASSIGN_OR_RETURN(std::optional<int64_t> newer, m.fields.FindInt("if_newer_than"));
    r.if_newer_than = newer.value_or(-1);
    return r;
  });
}

wire::Message WeightsReply::Encode() const {
  wire::Message m{.type = kPush};
  m.fields.SetInt("version", version);
  m.fields.SetInt("applied", applied ? 1 : 0);
  if (delta) m.fields.SetInt("delta", 1);
  if (waited_s > 0) m.fields.SetFloat("waited_s", waited_s);
  if (server_s > 0) m.fields.SetFloat("server_s", server_s);
  m.tensors = tensors;
  return m;
}

Result<WeightsReply> WeightsReply::Decode(const wire::Message& m) {
  return wire::DecodeMessage<WeightsReply>("ps weights reply", [&]() -> Result<WeightsReply> {
    WeightsReply r;
    DNND_ASSIGN_OR_RETURN(r.version, m.fields.GetInt("version"));
    DNND_ASSIGN_OR_RETURN(std::optional<int64_t> applied, m.fields.FindInt("applied"));
    r.applied = applied.value_or(0) != 0;
    DNND_ASSIGN_OR_RETURN(std::optional<int64_t> delta, m.fields.FindInt("delta"));
    r.delta = delta.value_or(0) != 0;
    DNND_ASSIGN_OR_RETURN(std::optional<double> waited, m.fields.FindFloat("waited_s"));
    DNND_ASSIGN_OR_RETURN(std::optional<double> server, m.fields.FindFloat("server_s"));
    r.waited_s = waited.value_or(0);
    r.server_s = server.value_or(0);
    r.tensors = m.tensors;
    return r;
  });
}

wire::Message MemberRequest::Encode() const {
  wire::Message m{.type = type};
  SetMember(member, m.fields);
  return m;
}

Result<MemberRequest> MemberRequest::Decode(const wire::Message& m) {
  const char* what = m.type == kLeave ? "ps leave" : "ps heartbeat";
  return wire::DecodeMessage<MemberRequest>(what, [&]() -> Result<MemberRequest> {
    MemberRequest r{.type = m.type};
    DNND_ASSIGN_OR_RETURN(r.member, GetMember(m.fields));
    return r;
  });
}

wire::Message VersionReply::Encode() const {
  wire::Message m{.type = kHeartbeat};
  m.fields.SetInt("version", version);
  return m;
}

Result<VersionReply> VersionReply::Decode(const wire::Message& m) {
  return wire::DecodeMessage<VersionReply>("ps version reply", [&]() -> Result<VersionReply> {
    VersionReply r;
    DNND_ASSIGN_OR_RETURN(r.version, m.fields.GetInt("version"));
    return r;
  });
}

wire::Message StatsRequest() { return wire::Message{.type = kStats}; }

wire::Message StatsReply::Encode() const {
  wire::Message m{.type = kStats};
  m.fields.SetInt("version", version);
  m.fields.SetInt("initialized", initialized ? 1 : 0);
  m.fields.SetInt("live_workers", live_workers);
  m.fields.SetInt("dropped_workers", dropped_workers);
  m.fields.SetInt("chunks", chunks);
  m.fields.SetString("mode", mode);
  return m;
}

Result<StatsReply> StatsReply::Decode(const wire::Message& m) {
  return wire::DecodeMessage<StatsReply>("ps stats reply", [&]() -> Result<StatsReply> {
    StatsReply r;
    DNND_ASSIGN_OR_RETURN(r.version, m.fields.GetInt("version"));
    DNND_ASSIGN_OR_RETURN(int64_t initialized, m.fields.GetInt("initialized"));
    r.initialized = initialized != 0;
    DNND_ASSIGN_OR_RETURN(r.live_workers, m.fields.GetInt("live_workers"));
    DNND_ASSIGN_OR_RETURN(r.dropped_workers, m.fields.GetInt("dropped_workers"));
    DNND_ASSIGN_OR_RETURN(r.chunks, m.fields.GetInt("chunks"));
    DNND_ASSIGN_OR_RETURN(r.mode, m.fields.GetString("mode"));
    return r;
  });
}

Result<std::vector<Tensor>> PieceTensors(const std::vector<wire::WireTensor>& tensors,
                                         const std::vector<ShardPiece>& pieces,
                                         const std::string& what) {
  if (tensors.size() != pieces.size())
    return InvalidArgument(what + " carries " + std::to_string(tensors.size()) +
                           " tensors, expected " + std::to_string(pieces.size()) +
                           " (one per piece)");
  std::vector<Tensor> out;
  out.reserve(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) {
    const wire::WireTensor& t = tensors[i];
    const std::string expected =
        "'" + pieces[i].key() + "' f32 [" + std::to_string(pieces[i].length) + "]";
    if (t.name != pieces[i].key() || t.dtype != wire::DType::kF32 ||
        t.shape != Shape{pieces[i].length})
      return InvalidArgument(what + ": tensor " + std::to_string(i) + " is '" + t.name + "' " +
                             wire::DTypeName(t.dtype) + " " + ShapeToString(t.shape) +
                             ", expected " + expected);
    DNND_ASSIGN_OR_RETURN(Tensor x, t.ToTensor());
    out.push_back(std::move(x));
  }
  return out;
}

}  // namespace dnnd::ps
