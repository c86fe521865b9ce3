#include "roles/ctl/ctl.h"

#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>

#include "core/files.h"
#include "core/json_text.h"
#include "roles/ctl/client.h"
#include "roles/ctl/follow.h"
#include "roles/ctl/settings.h"

namespace dnnd {
namespace {

namespace json = boost::json;

constexpr const char* kCtlUsage = R"(usage: dnnd ctl [--controller host:port] [--token T] [-o table|json] <noun> <verb> [args]
  train --model M --dataset D [job options] [--follow]
  dataset list | get <name> | delete <name> | create <name> --format F <files>   (upload: the same)
  model   list | get <name> | create <name> --spec model.toml
  job     list | get <id> | create ... | cancel <id> | delete <id> | logs <id> [-f]
  node    list                      the worker pool: idle, busy (job/part) or lost
  predict <model> <file.png|file.jpg|file.json>... [--job N] [--invert auto|true|false]
`dnnd ctl <noun> <verb> --help` describes one verb.
Controller: --controller, else $DNND_CONTROLLER, else `controller` in ~/.config/dnnd/ctl.toml, else 127.0.0.1:8080.
Token:      --token, else $DNND_TOKEN, else `token` or `token_file` in ~/.config/dnnd/ctl.toml.
Exit codes: 0 done; 1 controller unreachable or failed (5xx); 2 usage; 3 request refused (4xx, 401 included);
            4 a followed job (train --follow) ended failed or cancelled.
)";

constexpr const char* kJobOptions =
    "  --epochs N --batch N --lr X --optimizer sgd|adam|adamw --workers N --servers N\n"
    "  --mode sync|async|kavg --kavg-steps N --seed N --limit-train N --limit-test N\n"
    "  --eval-every N --goal-accuracy 0.88 --lr-schedule constant|cosine|step\n"
    "  --elastic [--min-workers N] [--max-workers N]   the scheduler changes the workers between\n"
    "      epochs (KubeML's throughput policy), starting at --workers\n";

struct VerbHelp {
  const char* noun;
  const char* verb;  // "" for a noun without verbs (train)
  const char* text;
};

const VerbHelp kVerbs[] = {
    {"train", "", "dnnd ctl train --model M --dataset D [job options] [--follow]\n"
                  "Creates a training job and prints its id. --follow then shows a progress bar per epoch\n"
                  "(loss, test accuracy, ETA) until the job ends; the exit code is 0 only if it succeeded\n"
                  "(4 if it failed or was cancelled). Job options:\n"},
    {"dataset", "list", "dnnd ctl dataset list\nLists datasets with sample counts, shapes, sizes and class histograms.\n"},
    {"dataset", "get", "dnnd ctl dataset get <name>\nPrints one dataset.\n"},
    {"dataset", "delete", "dnnd ctl dataset delete <name>\nDeletes a dataset (refused while a queued or running job uses it).\n"},
    {"dataset", "create",
     "dnnd ctl dataset create <name> --format idx|npy --train-images F --train-labels F [--test-images F --test-labels F]\n"
     "dnnd ctl dataset create <name> --format npz|csv --train F [--test F]\n"
     "Streams each file to the controller, then registers the dataset (validated there).\n"},
    {"dataset", "upload", "dnnd ctl dataset upload <name> ...\nThe same as dataset create (dnnd ctl dataset create --help).\n"},
    {"model", "list", "dnnd ctl model list\nLists registered models.\n"},
    {"model", "get", "dnnd ctl model get <name>\nPrints one model with its spec.\n"},
    {"model", "create", "dnnd ctl model create <name> --spec model.toml\nRegisters a model spec.\n"},
    {"job", "list", "dnnd ctl job list\nLists jobs, newest first, with state, epoch, progress and ETA.\n"},
    {"job", "get", "dnnd ctl job get <id>\nPrints one job with its per-epoch history.\n"},
    {"job", "create", "dnnd ctl job create --model M --dataset D [job options]\nCreates a job and prints its id. Options:\n"},
    {"job", "cancel", "dnnd ctl job cancel <id>\nCancels a queued or running job.\n"},
    {"job", "delete", "dnnd ctl job delete <id>\nDeletes a finished job: its history and files (refused while queued or running).\n"},
    {"job", "logs", "dnnd ctl job logs <id> [-f|--follow]\nPrints the job's log; -f keeps printing new lines until the job ends.\n"},
    {"node", "list", "dnnd ctl node list\nLists the worker pool: each node idle, busy (job/part) or lost, and when it was last seen.\n"},
    {"predict", "", "dnnd ctl predict <model> <file.png|file.jpg|file.json>... [--job N] [--invert auto|true|false]\n"
                    "Each file's predicted class and top probabilities (a .json file holds {\"inputs\": [sample, ...]});\n"
                    "--job picks a job's weights (default: the model's newest succeeded job); --invert auto inverts\n"
                    "images whose border is mostly light (a dark drawing on white paper).\n"},
};

const VerbHelp* FindVerb(const std::string& noun, const std::string& verb) {
  for (const auto& v : kVerbs)
    if (noun == v.noun && verb == v.verb) return &v;
  return nullptr;
}

int Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "dnnd ctl: %s\n", error.c_str());
  std::fputs(kCtlUsage, error.empty() ? stdout : stderr);
  return error.empty() ? 0 : 2;
}

int VerbUsage(const VerbHelp& v) {
  std::fputs(v.text, stdout);
  if (std::string(v.noun) == "train" || (std::string(v.noun) == "job" && std::string(v.verb) == "create"))
    std::fputs(kJobOptions, stdout);
  return 0;
}

std::string Num(const json::value& v) {
  if (v.is_null()) return "-";
  if (v.is_int64()) return std::to_string(v.as_int64());
  if (v.is_uint64()) return std::to_string(v.as_uint64());
  if (v.is_double()) {
    char b[32];
    std::snprintf(b, sizeof b, "%.4g", v.as_double());
    return b;
  }
  if (v.is_string()) return std::string(v.as_string());
  return json::serialize(v);
}

void Table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    w[c] = header[c].size();
    for (const auto& r : rows) w[c] = std::max(w[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (size_t c = 0; c < r.size(); ++c) s += r[c] + (c + 1 < r.size() ? std::string(w[c] - r[c].size() + 2, ' ') : "");
    std::printf("%s\n", s.c_str());
  };
  line(header);
  for (const auto& r : rows) line(r);
}

void PrintDatasets(const json::value& v) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& d : v.at("datasets").as_array())
    rows.push_back({Num(d.at("name")), Num(d.at("format")), Num(d.at("train_samples")), Num(d.at("test_samples")),
                    Num(d.at("num_classes")), json::serialize(d.at("sample_shape")), Num(d.at("bytes")),
                    json::serialize(d.at("class_histogram"))});
  Table({"NAME", "FORMAT", "TRAIN", "TEST", "CLASSES", "SHAPE", "BYTES", "HISTOGRAM"}, rows);
}

void PrintJobs(const json::value& v) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& j : v.at("jobs").as_array()) {
    char progress[16];
    std::snprintf(progress, sizeof progress, "%.0f%%", j.at("progress").to_number<double>());
    rows.push_back({Num(j.at("id")), Num(j.at("state")), Num(j.at("model")), Num(j.at("dataset")),
                    Num(j.at("epoch")) + "/" + Num(j.at("params").at("epochs")), progress, Num(j.at("eta_seconds")),
                    Num(j.at("reason"))});
  }
  Table({"ID", "STATE", "MODEL", "DATASET", "EPOCH", "PROGRESS", "ETA_S", "REASON"}, rows);
}

void PrintNodes(const json::value& v) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : v.at("nodes").as_array()) {
    char seen[32];
    std::snprintf(seen, sizeof seen, "%.1fs", n.at("last_seen_seconds").to_number<double>());
    rows.push_back({Num(n.at("name")), Num(n.at("state")), n.at("job").is_null() ? "-" : Num(n.at("job")),
                    n.at("index").is_null() ? "-" : Num(n.at("index")), Num(n.at("threads")), Num(n.at("address")),
                    seen});
  }
  Table({"NAME", "STATE", "JOB", "PART", "THREADS", "ADDRESS", "LAST_SEEN"}, rows);
}

void PrintJob(const json::value& j) {
  std::printf("job %s: %s%s%s\n", Num(j.at("id")).c_str(), Num(j.at("state")).c_str(),
              j.at("reason").as_string().empty() ? "" : " -- ", Num(j.at("reason")).c_str());
  std::printf("model %s, dataset %s, params %s\n", Num(j.at("model")).c_str(), Num(j.at("dataset")).c_str(),
              json::serialize(j.at("params")).c_str());
  std::printf("step %s/%s (%.1f%%), eta %s s, attempts %s\n", Num(j.at("step")).c_str(),
              Num(j.at("total_steps")).c_str(), j.at("progress").to_number<double>(), Num(j.at("eta_seconds")).c_str(),
              Num(j.at("attempts")).c_str());
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : j.at("history").as_array()) {
    const auto& o = e.as_object();
    rows.push_back({Num(e.at("epoch")), Num(e.at("train_loss")),
                    o.contains("test_loss") ? Num(e.at("test_loss")) : "-",
                    o.contains("test_accuracy") ? Num(e.at("test_accuracy")) : "-", Num(e.at("seconds")),
                    Num(e.at("samples_per_s")), o.contains("parallelism") ? Num(e.at("parallelism")) : "-"});
  }
  if (!rows.empty()) Table({"EPOCH", "TRAIN_LOSS", "TEST_LOSS", "TEST_ACC", "SECONDS", "SAMPLES/S", "WORKERS"}, rows);
}

// Percent-encodes a path segment (names are validated server-side; this
// keeps a hostile one from changing the route). RFC 3986's unreserved
// characters stay as they are: the server refuses any other spelling of them.
std::string Segment(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
    else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", c);
      out += b;
    }
  }
  return out;
}

// "7 (0.912)  5 (0.051)  9 (0.020)": the `k` most probable classes.
std::string TopClasses(const json::array& probabilities, size_t k) {
  std::vector<std::pair<double, size_t>> p;
  for (size_t i = 0; i < probabilities.size(); ++i) p.push_back({probabilities[i].to_number<double>(), i});
  k = std::min(k, p.size());
  std::partial_sort(p.begin(), p.begin() + static_cast<long>(k), p.end(), [](auto& a, auto& b) { return a.first > b.first; });
  std::string out;
  for (size_t i = 0; i < k; ++i) {
    char b[48];
    std::snprintf(b, sizeof b, "%s%zu (%.3f)", i ? "  " : "", p[i].second, p[i].first);
    out += b;
  }
  return out;
}

// The Content-Type a file is sent as, from its extension; "" if unknown.
std::string MediaTypeOf(const std::string& file) {
  std::string ext = file.substr(file.rfind('.') == std::string::npos ? file.size() : file.rfind('.') + 1);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "json") return "application/json";
  return "";
}

// `dnnd ctl predict <model> <file>...`: one request per file; a table of
// file, input (a JSON file's sample index; whether an image was inverted),
// class and top probabilities, or (-o json) the answers as one
// JSON array, each with its "file". Stops at the first refused file.
int Predict(const CtlClient& client, const std::vector<std::string>& positional,
            const std::map<std::string, std::string>& flags, bool as_json) {
  if (positional.size() < 3) return Usage("predict needs <model> and at least one file");
  std::string query;
  for (const char* k : {"job", "invert"}) {
    auto it = flags.find(k);
    if (it != flags.end()) query += std::string(query.empty() ? "?" : "&") + k + "=" + Segment(it->second);
  }
  json::array answers;
  std::vector<std::vector<std::string>> rows;
  for (size_t f = 2; f < positional.size(); ++f) {
    const std::string& file = positional[f];
    const std::string media = MediaTypeOf(file);
    if (media.empty()) return Usage("cannot tell what " + file + " is: expected .png, .jpg, .jpeg or .json");
    auto bytes = ReadFileToString(file);
    if (!bytes.ok()) {
      std::fprintf(stderr, "dnnd ctl: %s\n", bytes.status().ToString().c_str());
      return 2;
    }
    auto r = client.Request("POST", "/api/v1/models/" + Segment(positional[1]) + "/predict" + query, *bytes, media);
    if (int rc = CheckReply(r, client); rc != 0) return rc;
    boost::system::error_code ec;
    json::value v = json::parse(r->body, ec);
    if (ec || !v.is_object() || !v.as_object().contains("predictions")) {
      std::fprintf(stderr, "dnnd ctl: unexpected answer for %s: %s\n", file.c_str(), r->body.c_str());
      return 1;
    }
    const auto& predictions = v.at("predictions").as_array();
    for (size_t i = 0; i < predictions.size(); ++i) {
      const auto& p = predictions[i].as_object();
      const bool inverted = p.contains("inverted") && p.at("inverted").is_bool() && p.at("inverted").as_bool();
      const std::string sample =
          media == "application/json" ? "sample " + std::to_string(i) : inverted ? "image, inverted" : "image";
      if (p.contains("probabilities"))
        rows.push_back({file, sample, Num(p.at("class")), TopClasses(p.at("probabilities").as_array(), 3)});
      else
        rows.push_back({file, sample, "-", json::serialize(p.at("outputs"))});
    }
    v.as_object()["file"] = file;
    answers.push_back(std::move(v));
  }
  if (as_json) std::fputs(PrettyJson(answers).c_str(), stdout);
  else Table({"FILE", "INPUT", "CLASS", "TOP (probability)"}, rows);
  return 0;
}


struct Cli {
  std::string controller, token, output = "table";
  bool help = false, follow = false;
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;  // --name value
};

// Flags take a value ("--x v" or "--x=v") except these switches.
Result<Cli> ParseArgs(const std::vector<std::string>& args) {
  Cli cli;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      cli.help = true;
      continue;
    }
    if (a == "--follow" || a == "-f") {
      cli.follow = true;
      continue;
    }
    if (a == "--elastic") {
      cli.flags["elastic"] = "true";
      continue;
    }
    if (a == "-o" || a.rfind("--", 0) == 0) {
      std::string name = a == "-o" ? "output" : a.substr(2), value;
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else {
        if (i + 1 >= args.size()) return InvalidArgument(a + " needs a value");
        value = args[++i];
      }
      if (name == "controller") cli.controller = value;
      else if (name == "token") cli.token = value;
      else if (name == "output") cli.output = value;
      else cli.flags[name] = value;
      continue;
    }
    cli.positional.push_back(a);
  }
  return cli;
}

// The body of POST /api/v1/jobs from the job flags.
Result<json::object> JobBody(const std::map<std::string, std::string>& flags) {
  json::object body;
  for (const auto& [k, v] : flags) {
    std::string key = k;
    for (auto& c : key)
      if (c == '-') c = '_';
    if (key == "model" || key == "dataset" || key == "optimizer" || key == "mode" || key == "lr_schedule") {
      body[key] = v;
      continue;
    }
    if (key == "elastic") {
      body[key] = v == "true";
      continue;
    }
    char* end = nullptr;
    if (key == "lr" || key == "goal_accuracy") {
      const double x = std::strtod(v.c_str(), &end);
      if (*end || v.empty()) return InvalidArgument("--" + k + " needs a number");
      body[key] = x;
    } else {
      const long long x = std::strtoll(v.c_str(), &end, 10);
      if (*end || v.empty()) return InvalidArgument("--" + k + " needs an integer");
      body[key] = x;
    }
  }
  return body;
}

}  // namespace

int RunCtl(const std::vector<std::string>& args) {
  auto parsed = ParseArgs(args);
  if (!parsed.ok()) return Usage(parsed.status().message());
  Cli& cli = *parsed;
  const std::string noun = cli.positional.size() > 0 ? cli.positional[0] : "";
  const bool verbless = noun == "train" || noun == "predict";
  const std::string verb = verbless ? "" : cli.positional.size() > 1 ? cli.positional[1] : "";
  if (cli.help) {
    if (const VerbHelp* v = FindVerb(noun, verb)) return VerbUsage(*v);
    return Usage("");
  }
  if (cli.output != "table" && cli.output != "json") return Usage("-o must be table or json");
  if (noun.empty() || (!verbless && verb.empty())) return Usage("expected <noun> <verb>");
  if (!FindVerb(noun, verb)) {
    if (noun != "dataset" && noun != "model" && noun != "job" && noun != "node")
      return Usage("unknown noun '" + noun + "' (train, dataset, model, job, node, predict)");
    return Usage("unknown command '" + noun + " " + verb + "'");
  }
  auto settings = ResolveCtlSettings(cli.controller, cli.token, [](const char* n) { return std::getenv(n); });
  if (!settings.ok()) {
    std::fprintf(stderr, "dnnd ctl: %s\n", settings.status().ToString().c_str());
    return 2;
  }
  const CtlClient client(settings->controller, settings->token);
  const size_t first_arg = noun == "train" ? 1 : 2;
  const std::string arg = cli.positional.size() > first_arg ? cli.positional[first_arg] : "";
  const bool as_json = cli.output == "json";
  FollowOptions follow;
  follow.redraw = isatty(STDOUT_FILENO) && !as_json;
  auto flag = [&](const std::string& k) {
    auto it = cli.flags.find(k);
    return it == cli.flags.end() ? std::string() : it->second;
  };
  // Sends, checks, and prints the JSON (or hands it to `table`).
  auto call = [&](const char* method, const std::string& target, const std::string& body,
                  void (*table)(const json::value&)) -> int {
    auto r = client.Request(method, target, body);
    if (int rc = CheckReply(r, client); rc != 0) return rc;
    boost::system::error_code ec;
    json::value v = json::parse(r->body, ec);
    if (ec) {
      std::fputs(r->body.c_str(), stdout);
      return 0;
    }
    if (as_json || !table) std::fputs(PrettyJson(v).c_str(), stdout);
    else table(v);
    return 0;
  };
  auto need_arg = [&](const char* what) { return arg.empty() ? Usage(noun + " " + verb + " needs " + what) : 0; };
  // Creates a job from the flags; prints its id (or JSON); `id` gets it.
  auto create_job = [&](std::string* id) -> int {
    auto body = JobBody(cli.flags);
    if (!body.ok()) return Usage(body.status().message());
    auto r = client.Request("POST", "/api/v1/jobs", json::serialize(*body));
    if (int rc = CheckReply(r, client); rc != 0) return rc;
    json::value v = json::parse(r->body);
    *id = Num(v.at("id"));
    if (as_json && !cli.follow) std::fputs(PrettyJson(v).c_str(), stdout);
    else if (!as_json) std::printf("%s\n", id->c_str());  // the id, for scripts
    std::fflush(stdout);
    return 0;
  };

  if (noun == "predict") return Predict(client, cli.positional, cli.flags, as_json);
  if (noun == "train") {
    std::string id;
    if (int rc = create_job(&id); rc != 0) return rc;
    return cli.follow ? FollowJob(client, id, as_json, follow) : 0;
  }
  if (noun == "dataset") {
    if (verb == "list") return call("GET", "/api/v1/datasets", "", PrintDatasets);
    if (int rc = need_arg("<name>")) return rc;
    if (verb == "get") return call("GET", "/api/v1/datasets/" + Segment(arg), "", nullptr);
    if (verb == "delete") return call("DELETE", "/api/v1/datasets/" + Segment(arg), "", nullptr);
    const std::string format = flag("format");  // upload
    if (format.empty()) return Usage("dataset " + verb + " needs --format idx|npy|npz|csv");
    for (const char* part : {"train-images", "train-labels", "test-images", "test-labels", "train", "test"}) {
      const std::string file = flag(part);
      if (file.empty()) continue;
      if (access(file.c_str(), R_OK) != 0) {
        std::fprintf(stderr, "dnnd ctl: cannot read %s (--%s)\n", file.c_str(), part);
        return 2;
      }
      std::fprintf(stderr, "uploading %s as %s\n", file.c_str(), part);
      auto r = client.Upload("/api/v1/datasets/" + Segment(arg) + "/files/" + part, file);
      if (int rc = CheckReply(r, client); rc != 0) return rc;
    }
    json::object body{{"name", arg}, {"format", format}};
    return call("POST", "/api/v1/datasets", json::serialize(body), nullptr);
  }
  if (noun == "model") {
    if (verb == "list") {
      return call("GET", "/api/v1/models", "", [](const json::value& v) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& m : v.at("models").as_array())
          rows.push_back({Num(m.at("name")), Num(m.at("parameters")),
                          m.as_object().contains("input") ? json::serialize(m.at("input")) : "-", Num(m.at("created"))});
        Table({"NAME", "PARAMETERS", "INPUT", "CREATED"}, rows);
      });
    }
    if (int rc = need_arg("<name>")) return rc;
    if (verb == "get") return call("GET", "/api/v1/models/" + Segment(arg), "", nullptr);
    if (flag("spec").empty()) return Usage("model create needs --spec model.toml");  // create
    auto text = ReadFileToString(flag("spec"), 1 << 20);
    if (!text.ok()) {
      std::fprintf(stderr, "dnnd ctl: %s\n", text.status().ToString().c_str());
      return 2;
    }
    json::object body{{"name", arg}, {"spec", *text}};
    return call("POST", "/api/v1/models", json::serialize(body), nullptr);
  }
  if (noun == "node") return call("GET", "/api/v1/nodes", "", PrintNodes);  // list
  // job
  if (verb == "list") return call("GET", "/api/v1/jobs", "", PrintJobs);
  if (verb == "create") {
    std::string id;
    return create_job(&id);
  }
  if (int rc = need_arg("<id>")) return rc;
  const std::string job = "/api/v1/jobs/" + Segment(arg);
  if (verb == "get") return call("GET", job, "", PrintJob);
  if (verb == "cancel") return call("POST", job + "/cancel", "", nullptr);
  if (verb == "delete")
    return call("DELETE", job, "", [](const json::value& v) { std::printf("deleted job %s\n", Num(v.at("deleted")).c_str()); });
  // logs
  if (cli.follow) return FollowLogs(client, Segment(arg), follow);
  auto r = client.Request("GET", job + "/logs");
  if (int rc = CheckReply(r, client); rc != 0) return rc;
  std::fputs(r->body.c_str(), stdout);
  return 0;
}

}  // namespace dnnd
