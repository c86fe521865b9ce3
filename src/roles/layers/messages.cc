#include "roles/layers/messages.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace dnnd::layers {
namespace {

const char* Name(uint16_t type) {
  switch (type) {
    case kOpen:
      return "layer open";
    case kForward:
      return "layer forward";
    case kBackward:
      return "layer backward";
    case kStep:
      return "layer step";
    case kState:
      return "layer state";
    case kLoad:
      return "layer load";
    case kDrop:
      return "layer drop";
  }
  return "layer message";
}

// A float as text that parses back to the same float.
std::string FloatText(float f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", f);
  return buf;
}

// An optional 0/1 field (absent: `fallback`).
Result<bool> Flag(const wire::Fields& f, std::string_view key, bool fallback) {
  DNND_ASSIGN_OR_RETURN(std::optional<int64_t> v, f.FindInt(key));
  return v ? *v != 0 : fallback;
}

wire::Message WithSession(uint16_t type, const std::string& session) {
  wire::Message m{.type = type};
  m.fields.SetString("session", session);
  return m;
}

}  // namespace

std::string ChainText(const std::vector<Hop>& chain) {
  std::string text;
  for (const Hop& hop : chain) {
    if (!text.empty()) text += "\n";
    text += hop.address + "\t" + hop.session;
    if (hop.step_lr) text += "\t" + FloatText(*hop.step_lr);
  }
  return text;
}

Result<std::vector<Hop>> ParseChain(const std::string& text) {
  std::vector<Hop> chain;
  for (size_t begin = 0; !text.empty() && begin <= text.size();) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    const size_t tab = line.find('\t');
    const size_t tab2 = tab == std::string::npos ? tab : line.find('\t', tab + 1);
    Hop hop;
    hop.address = line.substr(0, tab);
    if (tab != std::string::npos) hop.session = line.substr(tab + 1, tab2 - tab - 1);
    bool ok = !hop.address.empty() && !hop.session.empty();
    if (ok && tab2 != std::string::npos) {
      const std::string lr = line.substr(tab2 + 1);
      char* lr_end = nullptr;
      const double v = std::strtod(lr.c_str(), &lr_end);
      ok = !lr.empty() && *lr_end == '\0';
      hop.step_lr = static_cast<float>(v);
    }
    if (!ok)
      return InvalidArgument("chain hop '" + line.substr(0, 512) +
                             "' is not host:port<TAB>session[<TAB>lr]");
    chain.push_back(std::move(hop));
  }
  return chain;
}

wire::Message OpenRequest::Encode() const {
  wire::Message m = WithSession(kOpen, session);
  m.fields.SetString("spec", spec);
  m.fields.SetInt("seed", static_cast<int64_t>(seed));
  m.fields.SetInt("first", first);
  m.fields.SetInt("last", last);
  return m;
}

Result<OpenRequest> OpenRequest::Decode(const wire::Message& m) {
  return wire::DecodeMessage<OpenRequest>(Name(kOpen), [&]() -> Result<OpenRequest> {
    OpenRequest r;
    DNND_ASSIGN_OR_RETURN(r.session, m.fields.GetString("session"));
    if (r.session.empty() || r.session.size() > 256 ||
        std::any_of(r.session.begin(), r.session.end(),
                    [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
      return InvalidArgument("session names are 1-256 bytes without control characters");
    DNND_ASSIGN_OR_RETURN(r.spec, m.fields.GetString("spec"));
    DNND_ASSIGN_OR_RETURN(int64_t seed, m.fields.GetInt("seed"));
    r.seed = static_cast<uint64_t>(seed);
    DNND_ASSIGN_OR_RETURN(r.first, m.fields.GetInt("first"));
    DNND_ASSIGN_OR_RETURN(r.last, m.fields.GetInt("last"));
    return r;
  });
}

wire::Message OpenReply::Encode() const {
  wire::Message m{.type = kOpen};
  m.fields.SetInt("parameters", parameters);
  return m;
}

Result<OpenReply> OpenReply::Decode(const wire::Message& m) {
  return wire::DecodeMessage<OpenReply>("layer open reply", [&]() -> Result<OpenReply> {
    OpenReply r;
    DNND_ASSIGN_OR_RETURN(r.parameters, m.fields.GetInt("parameters"));
    return r;
  });
}

wire::Message PassRequest::Encode() const {
  wire::Message m = WithSession(type, session);
  m.fields.SetInt("mb", mb);
  m.fields.SetInt("input_grad", input_grad ? 1 : 0);
  if (!backward()) {
    m.fields.SetInt("train", train ? 1 : 0);
    if (step_lr) m.fields.SetFloat("step_lr", *step_lr);
  }
  if (!chain.empty()) m.fields.SetString("chain", ChainText(chain));
  wire::WireTensor t = tensor;  // a view: shares the storage
  t.name = backward() ? "g" : "x";
  m.tensors.push_back(std::move(t));
  return m;
}

Result<PassRequest> PassRequest::Decode(const wire::Message& m) {
  return wire::DecodeMessage<PassRequest>(Name(m.type), [&]() -> Result<PassRequest> {
    PassRequest r{.type = m.type};
    DNND_ASSIGN_OR_RETURN(r.session, m.fields.GetString("session"));
    DNND_ASSIGN_OR_RETURN(r.mb, m.fields.GetInt("mb"));
    DNND_ASSIGN_OR_RETURN(r.train, Flag(m.fields, "train", true));
    DNND_ASSIGN_OR_RETURN(r.input_grad, Flag(m.fields, "input_grad", true));
    DNND_ASSIGN_OR_RETURN(std::optional<double> lr, m.fields.FindFloat("step_lr"));
    if (lr) r.step_lr = static_cast<float>(*lr);
    DNND_ASSIGN_OR_RETURN(std::optional<std::string> chain, m.fields.FindString("chain"));
    if (chain) {
      DNND_ASSIGN_OR_RETURN(r.chain, ParseChain(*chain));
    }
    const char* name = r.backward() ? "g" : "x";
    if (m.tensors.size() != 1 || m.tensors[0].name != name)
      return InvalidArgument("expected one tensor '" + std::string(name) + "' (the " +
                             (r.backward() ? "output gradient" : "input") + "), got " +
                             std::to_string(m.tensors.size()) + " tensors");
    r.tensor = m.tensors[0];
    return r;
  });
}

wire::Message PassReply::Encode(uint16_t type) const {
  wire::Message m{.type = type};
  if (tensor) {
    wire::WireTensor t = *tensor;
    t.name = type == kBackward ? "dx" : "y";
    m.tensors.push_back(std::move(t));
  }
  return m;
}

Result<PassReply> PassReply::Decode(const wire::Message& m, uint16_t type, bool input_grad) {
  const std::string want = type == kBackward ? (input_grad ? "dx" : "") : "y";
  return wire::DecodeMessage<PassReply>(
      type == kBackward ? "layer backward reply" : "layer forward reply",
      [&]() -> Result<PassReply> {
        PassReply r;
        if (want.empty()) return r;
        if (m.tensors.size() != 1 || m.tensors[0].name != want)
          return InvalidArgument("expected one tensor '" + want + "', got " +
                                 std::to_string(m.tensors.size()) + " tensors");
        if (m.tensors[0].dtype != wire::DType::kF32)
          return InvalidArgument("tensor '" + want + "' is " + wire::DTypeName(m.tensors[0].dtype) +
                                 ", expected f32");
        r.tensor = m.tensors[0];
        return r;
      });
}

wire::Message StepRequest::Encode() const {
  wire::Message m = WithSession(kStep, session);
  m.fields.SetFloat("lr", lr);
  return m;
}

Result<StepRequest> StepRequest::Decode(const wire::Message& m) {
  return wire::DecodeMessage<StepRequest>(Name(kStep), [&]() -> Result<StepRequest> {
    StepRequest r;
    DNND_ASSIGN_OR_RETURN(r.session, m.fields.GetString("session"));
    DNND_ASSIGN_OR_RETURN(double lr, m.fields.GetFloat("lr"));
    r.lr = static_cast<float>(lr);
    return r;
  });
}

wire::Message StateTensors::Encode(uint16_t type) const {
  wire::Message m{.type = type};
  if (type == kLoad) m.fields.SetString("session", session);
  if (type == kState) m.fields.SetInt("version", version);
  m.tensors = parameters;
  for (wire::WireTensor t : optimizer) {
    t.name = std::string(kOptimizerPrefix) + t.name;
    m.tensors.push_back(std::move(t));
  }
  return m;
}

Result<StateTensors> StateTensors::Decode(const wire::Message& m) {
  const bool load = m.type == kLoad;
  return wire::DecodeMessage<StateTensors>(
      load ? Name(kLoad) : "layer state reply", [&]() -> Result<StateTensors> {
        StateTensors r;
        if (load) {
          DNND_ASSIGN_OR_RETURN(r.session, m.fields.GetString("session"));
        } else {
          DNND_ASSIGN_OR_RETURN(r.version, m.fields.GetInt("version"));
        }
        for (const wire::WireTensor& t : m.tensors) {
          if (t.name.rfind(kOptimizerPrefix, 0) != 0) {
            r.parameters.push_back(t);
            continue;
          }
          r.optimizer.push_back(t);
          r.optimizer.back().name = t.name.substr(kOptimizerPrefix.size());
        }
        return r;
      });
}

wire::Message SessionRequest::Encode() const { return WithSession(type, session); }

Result<SessionRequest> SessionRequest::Decode(const wire::Message& m) {
  return wire::DecodeMessage<SessionRequest>(Name(m.type), [&]() -> Result<SessionRequest> {
    SessionRequest r{.type = m.type};
    DNND_ASSIGN_OR_RETURN(r.session, m.fields.GetString("session"));
    return r;
  });
}

wire::Message VersionReply::Encode() const {
  wire::Message m{.type = kStep};
  m.fields.SetInt("version", version);
  return m;
}

Result<VersionReply> VersionReply::Decode(const wire::Message& m) {
  return wire::DecodeMessage<VersionReply>("layer version reply", [&]() -> Result<VersionReply> {
    VersionReply r;
    DNND_ASSIGN_OR_RETURN(r.version, m.fields.GetInt("version"));
    return r;
  });
}

}  // namespace dnnd::layers
