// dnnd: one binary, many roles.
//   dnnd --config <file.toml> [--role=<role>] [--set section.key=value ...]
//   dnnd config check <file.toml> [--set ...]
//   dnnd probe <url> [--timeout-ms N]
//   dnnd wait --file <path>... [--json-key K] [--timeout S]
//   dnnd version | roles | --help
// Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/config.h"
#include "core/did_you_mean.h"
#include "core/log.h"
#include "core/wait_files.h"
#include "roles/base/control_plane.h"
#include "roles/ctl/ctl.h"
#include "roles/node/registry.h"
#include "roles/train/infer.h"
#include "roles/train/worker.h"
#include "tensor/isa.h"
#include "tensor/parallel.h"
#include "transport/http_probe.h"
#include "transport/secrets.h"

namespace {

constexpr const char* kUsage = R"(usage:
  dnnd --config <file.toml> [--role=<role>] [--set section.key=value ...]
                      run the role the file names ([node] role = "worker"); --role, when
                      given too, must agree with it
  dnnd config check <file.toml> [--set section.key=value ...]
  dnnd ctl [--controller host:port] <noun> <verb> ...   (dnnd ctl --help)
  dnnd infer --model <checkpoint dir> [options] image.png|x.npy|x.safetensors ...
                      predict classes of raw inputs (dnnd infer --help)
  dnnd probe <url> [--timeout-ms N]
                      GET http://host:port/path (default path /healthz); exit 0 on 2xx,
                      1 otherwise: a health check for images without a shell
  dnnd wait --file <path> [--file ... | --files a,b,c] [--json-key K] [--timeout S]
                      wait until the files exist (and are JSON objects with key K):
                      exit 0, or 1 after S seconds (default 600); orders pipeline stages
  dnnd api-token [--config <file.toml>] [--set ...]
                      print the controller API's bearer token for dnnd ctl: http.token(_file),
                      else the one derived from the wire key (transport.token_file, env
                      DNND_TRANSPORT__TOKEN_FILE); the wire key itself is never printed
  dnnd roles          list roles
  dnnd version
Settings precedence: defaults < file < env DNND_SECTION__KEY < --set.
)";

int Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "dnnd: %s\n", error.c_str());
  std::fputs(kUsage, error.empty() ? stdout : stderr);
  return error.empty() ? 0 : 2;
}

struct Args {
  std::string role, config, model, output, timeout_ms;
  std::string spec, normalize_mean, normalize_std, classes, invert;
  bool logits = false, json = false;
  std::vector<std::string> sets, positional, inputs;
};

// Accepts --flag=value and --flag value forms.
bool ParseArgs(int argc, char** argv, Args* a, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto take = [&](const std::string& flag, std::string* out) {
      if (arg == flag) {
        if (i + 1 >= argc) {
          *error = flag + " needs a value";
          return true;
        }
        *out = argv[++i];
        return true;
      }
      if (arg.rfind(flag + "=", 0) == 0) {
        *out = arg.substr(flag.size() + 1);
        return true;
      }
      return false;
    };
    std::string set, input;
    if (take("--role", &a->role) || take("--config", &a->config) || take("--model", &a->model) ||
        take("--output", &a->output) || take("--timeout-ms", &a->timeout_ms) ||
        take("--spec", &a->spec) || take("--normalize-mean", &a->normalize_mean) ||
        take("--normalize-std", &a->normalize_std) || take("--classes", &a->classes) ||
        take("--invert", &a->invert))
      continue;
    if (take("--set", &set)) {
      a->sets.push_back(set);
      continue;
    }
    if (take("--input", &input)) {
      a->inputs.push_back(input);
      continue;
    }
    if (arg == "--logits" || arg == "--json") {
      (arg == "--logits" ? a->logits : a->json) = true;
      continue;
    }
    if (arg.rfind("--", 0) == 0 && arg != "--help") {
      *error = "unknown option " + arg;
      return false;
    }
    a->positional.push_back(arg);
  }
  return error->empty();
}

int signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  const unsigned char b = static_cast<unsigned char>(sig);
  [[maybe_unused]] ssize_t n = write(signal_pipe[1], &b, 1);  // async-signal-safe
}

std::vector<std::string> RoleNameList() {
  std::vector<std::string> names;
  for (const auto& r : dnnd::Roles()) names.push_back(r.name);
  return names;
}

std::string RoleNames() {
  std::string names;
  for (const auto& n : RoleNameList()) names += (names.empty() ? "" : ", ") + n;
  return names;
}

// The role comes from the config file ([node] role = "worker", or env
// DNND_NODE__ROLE, or --set node.role=...) or from --role; given both, they
// must agree. The schema checks a role named in the config.
int RunRole(const Args& args) {
  if (!args.role.empty() && !dnnd::FindRole(args.role)) {
    auto near = dnnd::DidYouMean(args.role, RoleNameList());
    std::fprintf(stderr, "dnnd: unknown role '%s'%s (roles: %s)\n", args.role.c_str(),
                 near ? ("; did you mean '" + *near + "'?").c_str() : "", RoleNames().c_str());
    return 2;
  }
  if (args.config.empty()) return Usage("--role needs --config <file.toml>");
  auto cfg = dnnd::Config::Load(args.config, args.sets, dnnd::ProcessEnvironment());
  if (!cfg) {
    std::fprintf(stderr, "dnnd: invalid configuration:\n%s\n", cfg.status().message().c_str());
    return 2;
  }
  const std::string configured = cfg->GetString("node.role");
  if (!args.role.empty() && !configured.empty() && configured != args.role) {
    std::fprintf(stderr,
                 "dnnd: --role=%s disagrees with node.role = \"%s\" (%s); drop one or make them "
                 "agree\n",
                 args.role.c_str(), configured.c_str(), cfg->Origin("node.role").c_str());
    return 2;
  }
  const std::string name = args.role.empty() ? configured : args.role;
  if (name.empty()) {
    std::fprintf(stderr,
                 "dnnd: %s chooses no role: add [node] role = \"<role>\" to it, or pass "
                 "--role=<role> (roles: %s)\n",
                 args.config.c_str(), RoleNames().c_str());
    return 2;
  }
  const dnnd::RoleInfo* info = dnnd::FindRole(name);
  if (!info || !info->factory) {
    std::fprintf(stderr, "dnnd: role '%s' is not built in this version\n", name.c_str());
    return 2;
  }
  dnnd::ConfigureLogging(cfg->GetString("log.level"), cfg->GetString("log.format"));
  int threads = static_cast<int>(cfg->GetInt("node.threads"));
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  dnnd::SetThreads(threads);
  // node.kernels = "auto" leaves the set DNND_KERNELS or the CPU chose.
  const std::string kernels = cfg->GetString("node.kernels");
  if (kernels != "auto" && !dnnd::isa::Select(kernels)) {
    std::string available;
    for (const std::string& set : dnnd::isa::Available()) available += " " + set;
    std::fprintf(stderr, "dnnd: node.kernels = \"%s\": this CPU cannot run it (it can:%s)\n",
                 kernels.c_str(), available.c_str());
    return 2;  // a configuration error
  }
  const std::string precision = cfg->GetString("node.precision");
  if (precision != "auto" && !dnnd::isa::SelectPrecision(precision)) {
    std::fprintf(stderr,
                 "dnnd: node.precision = \"%s\": this CPU cannot run it (bf16 needs "
                 "avx512_bf16; cpu=%s)\n",
                 precision.c_str(), dnnd::isa::CpuFeatureList().c_str());
    return 2;
  }

  auto role = info->factory(*cfg);
  if (!role) {
    std::fprintf(stderr, "dnnd: %s: %s\n", name.c_str(), role.status().ToString().c_str());
    return role.status().code() == dnnd::StatusCode::kInvalidArgument ? 2 : 1;
  }
  dnnd::Role* r = role->get();
  // SIGINT/SIGTERM: the handler (which may run on any thread, OpenBLAS's
  // start-up threads included) only writes the signal number to a pipe; a
  // watcher thread asks the role to stop, and exits on a second signal.
  if (pipe(signal_pipe) == 0) {
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    std::thread([r] {
      unsigned char sig = 0;
      if (read(signal_pipe[0], &sig, 1) != 1) return;
      dnnd::Log(dnnd::LogLevel::kWarn, "main", "signal received; stopping", {{"signal", int{sig}}});
      r->Stop();
      if (read(signal_pipe[0], &sig, 1) == 1) std::_Exit(130);
    }).detach();
  }
  // Health, readiness and metrics for probes and Prometheus (http.listen).
  auto router = std::make_shared<dnnd::HttpRouter>();
  r->AddRoutes(*router);
  auto control_plane = dnnd::StartControlPlane(
      *cfg, [r] { return r->Readiness(); }, router, r->MaxRequestBytes());
  if (!control_plane.ok()) {
    std::fprintf(stderr, "dnnd: %s\n", control_plane.status().ToString().c_str());
    return 1;
  }
  if (control_plane.value()) r->OnControlPlane(control_plane.value()->address());
  dnnd::Status s = r->Run();
  if (control_plane.value()) control_plane.value()->Stop();
  if (s.code() == dnnd::StatusCode::kCancelled) {
    dnnd::Log(dnnd::LogLevel::kInfo, "main", "stopped", {{"reason", s.message()}});
    return 0;
  }
  if (!s.ok()) {
    std::fprintf(stderr, "dnnd: %s: %s\n", name.c_str(), s.ToString().c_str());
    return 1;
  }
  return 0;
}

constexpr const char* kInferUsage = R"(usage:
  dnnd infer --model <checkpoint dir | model.safetensors> [options] INPUT...
  dnnd infer --model <checkpoint dir> --input x.safetensors --output y.safetensors

Predicts the class of raw inputs with a trained model. INPUT (also --input
FILE, repeatable) is one of
  image.png, photo.jpg  a PNG or JPEG (by its first bytes), grey or colour:
                        decoded to the model's channels (grey for [h, w],
                        [1, h, w], [h*w]; RGB for [3, h, w]), inverted when it
                        is a dark drawing on a light background (--invert),
                        resized to the model's input
  x.npy, x.safetensors  an array of raw values (safetensors: tensor "x" or the
                        only tensor), one sample shaped like the model's input
                        (or flat) or a batch [n, ...]; uint8 arrays are pixels
                        0..255, float arrays are in the dataset's float scale
Every input is scaled as the training batches were: uint8 / 255, then
(x - mean[c]) / std[c] with the normalisation the checkpoint records
(dnnd.normalize_mean / dnnd.normalize_std, from data.normalize_mean/std).

Prints one line per sample: "<file>[i]: class K (name) p=0.9731", the class
index, its name when the checkpoint (data.classes) or --classes names it, and
its softmax probability. A model not trained with cross-entropy prints its
outputs instead.

options:
  --logits              also print the model's raw outputs (logits)
  --json                one JSON document: model, input, normalize_mean/std,
                        classes, predictions [{input, index, class, class_name,
                        probability, probabilities, logits?, inverted?}]
  --spec model.toml     the architecture ([model] table) for a model file with
                        no dnnd metadata, e.g. a PyTorch state_dict saved as
                        safetensors (its tensor names must be dnnd's / torch's)
  --normalize-mean a,b,c  --normalize-std a,b,c
                        the normalisation, overriding the checkpoint's (one
                        value, or one per channel)
  --classes "T-shirt/top,Trouser,..."
                        class names in label order, overriding the checkpoint's
  --invert auto|true|false
                        grey images: invert (auto: when the border is light)

Tensor mode (--output): tensor "x" of --input goes through the model exactly as
given (no normalisation) and the outputs are written as tensor "y".
Exit codes: 0 success, 1 runtime failure, 2 usage error or unusable input.
)";

// "0.1,0.2" -> {0.1, 0.2}; false when a part is not a number.
bool ParseFloatList(const std::string& text, std::vector<float>* out) {
  out->clear();
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    const std::string part = text.substr(start, end - start);
    char* rest = nullptr;
    const float v = std::strtof(part.c_str(), &rest);
    if (part.empty() || rest == part.c_str() || *rest != '\0' || !std::isfinite(v)) return false;
    out->push_back(v);
    start = end + 1;
  }
  return !out->empty();
}

int Infer(const Args& args) {
  if (std::find(args.positional.begin(), args.positional.end(), "--help") !=
          args.positional.end() ||
      (args.positional.size() > 1 && args.positional[1] == "help")) {
    std::fputs(kInferUsage, stdout);
    return 0;
  }
  dnnd::InferOptions o;
  o.model = args.model;
  o.spec = args.spec;
  o.output = args.output;
  o.inputs = args.inputs;
  o.inputs.insert(o.inputs.end(), args.positional.begin() + 1, args.positional.end());
  o.logits = args.logits;
  o.json = args.json;
  if (!args.invert.empty()) o.invert = args.invert;
  auto usage = [](const std::string& e) {
    std::fprintf(stderr, "dnnd: infer: %s\n\n%s", e.c_str(), kInferUsage);
    return 2;
  };
  if (o.model.empty()) return usage("--model is required (a checkpoint directory or model file)");
  if (o.inputs.empty()) return usage("no inputs: give image, .npy or .safetensors files");
  for (auto [flag, text, dest] :
       {std::tuple{"--normalize-mean", &args.normalize_mean, &o.normalize_mean},
        std::tuple{"--normalize-std", &args.normalize_std, &o.normalize_std}}) {
    if (text->empty()) continue;
    std::vector<float> v;
    if (!ParseFloatList(*text, &v))
      return usage(std::string(flag) + " is '" + *text +
                   "'; expected numbers separated by commas (0.286 or 0.49,0.48,0.45)");
    *dest = v;
  }
  if (!args.classes.empty()) {
    std::vector<std::string> names;
    size_t start = 0;
    while (start <= args.classes.size()) {
      const size_t end = std::min(args.classes.find(',', start), args.classes.size());
      names.push_back(args.classes.substr(start, end - start));
      start = end + 1;
    }
    o.classes = names;
  }
  dnnd::Status s = dnnd::RunInference(o, stdout);
  if (!s.ok()) {
    std::fprintf(stderr, "dnnd: infer: %s\n", s.ToString().c_str());
    return s.code() == dnnd::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

// dnnd probe <url>: 0 when the endpoint answers 2xx, 1 when it answers
// anything else or cannot be reached in time, 2 for a usage error.
int Probe(const Args& args) {
  if (args.positional.size() != 2) return Usage("expected: dnnd probe <url> [--timeout-ms N]");
  long long timeout_ms = 2000;
  if (!args.timeout_ms.empty()) {
    char* end = nullptr;
    timeout_ms = std::strtoll(args.timeout_ms.c_str(), &end, 10);
    if (*end != '\0' || timeout_ms < 1 || timeout_ms > 3600000)
      return Usage("--timeout-ms must be an integer in [1, 3600000]");
  }
  auto target = dnnd::ParseProbeUrl(args.positional[1]);
  if (!target) return Usage(target.status().message());
  auto r = dnnd::HttpProbe(*target, std::chrono::milliseconds(timeout_ms));
  if (!r) {
    std::fprintf(stderr, "dnnd: probe: %s\n", r.status().ToString().c_str());
    return 1;
  }
  std::string body = r->body;
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
  std::printf("%d %s\n", r->status, body.c_str());
  return r->status >= 200 && r->status < 300 ? 0 : 1;
}

// The API token an operator hands to ctl users (transport/secrets.h).
int ApiToken(const Args& args) {
  auto cfg = args.config.empty()
                 ? dnnd::Config::FromString("", "defaults", args.sets, dnnd::ProcessEnvironment())
                 : dnnd::Config::Load(args.config, args.sets, dnnd::ProcessEnvironment());
  if (!cfg) {
    std::fprintf(stderr, "dnnd: api-token: %s\n", cfg.status().message().c_str());
    return 2;  // a configuration error
  }
  auto secrets = dnnd::wire::LoadSecrets(*cfg);
  if (!secrets) {
    std::fprintf(stderr, "dnnd: api-token: %s\n", secrets.status().ToString().c_str());
    return 1;
  }
  if (secrets->api_token.empty()) {
    std::fprintf(
        stderr,
        "dnnd: api-token: no token is configured (set transport.token_file or http.token_file)\n");
    return 1;
  }
  std::printf("%s\n", secrets->api_token.c_str());
  return 0;
}

int Main(int argc, char** argv) {
  // The controller's client has its own flags; hand it everything after "ctl".
  if (argc >= 2 && std::string(argv[1]) == "ctl")
    return dnnd::RunCtl(std::vector<std::string>(argv + 2, argv + argc));
  // So does `wait` (repeatable --file, --json-key, --timeout in seconds).
  if (argc >= 2 && std::string(argv[1]) == "wait")
    return dnnd::RunWait(std::vector<std::string>(argv + 2, argv + argc));
  Args args;
  std::string error;
  if (!ParseArgs(argc, argv, &args, &error)) return Usage(error);
  // A role runs with --role, or with only --config when the file names the role.
  if (!args.role.empty() || (!args.config.empty() && args.positional.empty())) return RunRole(args);
  if (args.positional.empty() || args.positional[0] == "--help" || args.positional[0] == "help")
    return Usage(args.positional.empty() ? "missing command" : "");
  const std::string& cmd = args.positional[0];
  if (cmd == "version") {
    // The kernel set in use (DNND_KERNELS overrides the best the CPU has) and
    // the CPU features that decided it, so a report says which code ran.
    std::printf("dnnd %s (%s) blas=%s kernels=%s precision=%s cpu=%s\n", DNND_VERSION, __DATE__,
                dnnd::BlasCoreName().c_str(), dnnd::isa::CurrentName().c_str(),
                dnnd::isa::Name(dnnd::isa::CurrentPrecision()),
                dnnd::isa::CpuFeatureList().c_str());
    return 0;
  }
  if (cmd == "roles") {
    for (const auto& r : dnnd::Roles())
      std::printf("%-18s %-10s %s\n", r.name.c_str(), r.factory ? "built" : "not built",
                  r.description.c_str());
    return 0;
  }
  if (cmd == "infer") return Infer(args);
  if (cmd == "probe") return Probe(args);
  if (cmd == "api-token") return ApiToken(args);
  if (cmd == "config") {
    if (args.positional.size() != 3 || args.positional[1] != "check")
      return Usage("expected: dnnd config check <file.toml>");
    auto cfg = dnnd::Config::Load(args.positional[2], args.sets, dnnd::ProcessEnvironment());
    if (!cfg) {
      std::fprintf(stderr, "%s\n", cfg.status().message().c_str());
      return 2;  // a configuration error, as when a role starts
    }
    // The [model] too: node types, keys, values, names and inputs (every
    // error at once), then shapes, then the initial weights (an ONNX file's,
    // train.init_from's) and train.freeze, as a worker checks them at start.
    if (cfg->Section("model")) {
      auto loaded = dnnd::LoadModel(*cfg);
      if (!loaded) {
        std::fprintf(stderr, "%s\n", loaded.status().message().c_str());
        return 2;
      }
      auto model = dnnd::BuildModel(loaded->spec, 0);
      dnnd::Status s = model.status();
      if (s.ok() && loaded->initial_state)
        s = dnnd::LoadParameters(**model, *loaded->initial_state)
                .WithContext("the initial weights from " + loaded->initial_from);
      if (s.ok()) s = dnnd::FrozenParameters(**model, cfg->GetStrings("train.freeze")).status();
      if (!s.ok()) {
        std::fprintf(stderr, "%s\n", s.message().c_str());
        return 2;
      }
    }
    std::fputs(cfg->Dump().c_str(), stdout);
    return 0;
  }
  return Usage("unknown command '" + cmd + "'");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dnnd: internal error: %s\n", e.what());
    return 1;
  }
}
