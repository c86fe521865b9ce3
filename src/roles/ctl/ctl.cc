#include "roles/ctl/ctl.h"

#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/did_you_mean.h"
#include "core/files.h"
#include "core/json_text.h"
#include "roles/ctl/client.h"
#include "roles/ctl/flags.h"
#include "roles/ctl/follow.h"
#include "roles/ctl/settings.h"
#include "roles/ctl/tables.h"

namespace dnnd {
namespace {

namespace json = boost::json;
using ctl::Flag;
using ctl::FlagValues;
using ctl::Num;
using ctl::Table;

// ---- the command table --------------------------------------------------
// Every verb's flags, positional arguments and description: the check of a
// command line, `--help` and the usage all come from here.

const std::vector<Flag> kGlobalFlags = {
    {"controller", "ADDRESS", "the controller: host:port or http://host:port"},
    {"token", "T", "the API's bearer token"},
    {"output", "table|json", "a table (the default) or the controller's JSON", 'o'},
    {"json", "", "the same as -o json"},
    {"help", "", "describe the command", 'h'},
};

const std::vector<Flag> kJobFlags = {
    {"model", "M", "the registered model to train (required)"},
    {"dataset", "D", "the registered dataset to train on (required)"},
    {"epochs", "N", "passes over the training set (5)"},
    {"batch", "N", "samples per step and worker (64)"},
    {"lr", "X", "learning rate (the model spec's)"},
    {"optimizer", "sgd|adam|adamw", "the optimizer (the model spec's)"},
    {"momentum", "X", "SGD's momentum (the model spec's)"},
    {"weight-decay", "X", "weight decay (the model spec's)"},
    {"freeze", "P,...", "keep the parameters these patterns (* and ?) match fixed"},
    {"workers", "N", "training processes (2)"},
    {"servers", "N", "parameter-server shards (1)"},
    {"mode", "sync|async|kavg", "how the workers combine their gradients (sync)"},
    {"kavg-steps", "N", "local steps between averages in kavg mode (8)"},
    {"gradient-codec", "none|zstd|bf16|f16", "how gradients go to the servers (none)"},
    {"weights-codec", "none|bf16", "sync: a step's weights come back as bf16 changes (none)"},
    {"seed", "N", "the random seed (42)"},
    {"limit-train", "N", "train on the first N samples only (0: all)"},
    {"limit-test", "N", "test on the first N samples only (0: all)"},
    {"eval-every", "N", "evaluate on the test set every N epochs (1)"},
    {"goal-accuracy", "X", "stop once the test accuracy reaches X (0.88 = 88 %)"},
    {"lr-schedule", "constant|cosine|step", "how the learning rate changes (cosine)"},
    {"elastic", "", "the scheduler changes the workers between epochs (KubeML's policy)"},
    {"min-workers", "N", "an elastic job's fewest workers (1)"},
    {"max-workers", "N", "an elastic job's most workers (controller.max_workers)"},
    {"augment-crop-padding", "N", "training images: random crop after N zero pixels per side (0)"},
    {"augment-flip", "", "training images: flip left-right with probability 1/2"},
};

// The job flags whose values are text, a switch, or a real number; the
// others are integers.
bool IsTextJobFlag(std::string_view f) {
  return f == "model" || f == "dataset" || f == "optimizer" || f == "mode" || f == "lr-schedule" ||
         f == "gradient-codec" || f == "weights-codec";
}
bool IsRealJobFlag(std::string_view f) {
  return f == "lr" || f == "goal-accuracy" || f == "momentum" || f == "weight-decay";
}
bool IsListJobFlag(std::string_view f) { return f == "freeze"; }

// "a,b,c" as a JSON array of strings.
json::array CommaList(const std::string& list) {
  json::array out;
  for (size_t start = 0; start <= list.size();) {
    const size_t end = std::min(list.find(',', start), list.size());
    out.push_back(json::value(list.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

const std::vector<Flag> kUploadFlags = {
    {"format", "idx|npy|npz|csv|cifar10", "the files' format (required)"},
    {"train-images", "F", "idx, npy: the training images"},
    {"train-labels", "F", "idx, npy: the training labels"},
    {"test-images", "F", "idx, npy: the test images"},
    {"test-labels", "F", "idx, npy: the test labels"},
    {"train", "F", "npz, csv, cifar10: the training set"},
    {"test", "F", "npz, csv, cifar10: the test set"},
    {"classes", "A,B,...", "the class names in label order, comma-separated (one per class)"},
};

std::vector<Flag> Join(std::vector<Flag> a, const std::vector<Flag>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct Verb {
  std::string_view noun, verb;  // verb "" for a noun without verbs (train, predict)
  std::string_view args;        // positional arguments, for the usage ("<id>")
  size_t min_args, max_args;    // how many positional arguments it takes
  std::vector<Flag> flags;      // besides kGlobalFlags
  std::string_view about;
};

constexpr size_t kMany = SIZE_MAX;

const std::vector<Verb>& Verbs() {
  static const std::vector<Verb> verbs = {
      {"train", "", "", 0, 0,
       Join(kJobFlags, {{"follow", "", "show the job's progress until it ends", 'f'}}),
       "Creates a training job and prints its id. --follow then shows a progress bar per epoch\n"
       "(loss, test accuracy, ETA) until the job ends; the exit code is 0 only if it succeeded\n"
       "(4 if it failed or was cancelled).\n"},
      {"dataset",
       "list",
       "",
       0,
       0,
       {},
       "Lists datasets with sample counts, shapes, sizes and class histograms.\n"},
      {"dataset", "get", "<name>", 1, 1, {}, "Prints one dataset.\n"},
      {"dataset",
       "delete",
       "<name>",
       1,
       1,
       {},
       "Deletes a dataset (refused while a queued or running job uses it).\n"},
      {"dataset", "create", "<name>", 1, 1, kUploadFlags,
       "Streams each file to the controller, then registers the dataset (validated there):\n"
       "--format idx|npy with --train-images and --train-labels (and --test-images, "
       "--test-labels),\n"
       "--format npz|csv with --train (and --test).\n"
       "--classes \"T-shirt/top,Trouser,...\" names the classes 0, 1, ...: jobs on the dataset\n"
       "write them into their models, and predictions answer them.\n"},
      {"dataset", "upload", "<name>", 1, 1, kUploadFlags, "The same as dataset create.\n"},
      {"model", "list", "", 0, 0, {}, "Lists registered models.\n"},
      {"model", "get", "<name>", 1, 1, {}, "Prints one model with its spec.\n"},
      {"model",
       "create",
       "<name>",
       1,
       1,
       {{"spec", "F", "the model spec, a TOML file"},
        {"onnx", "F", "a model exported by torch.onnx.export (its weights are the jobs' start)"},
        {"init-from", "F",
         "with --spec: safetensors weights (a PyTorch state_dict) the jobs start from"}},
       "Registers a model: --spec or --onnx (exactly one). With --init-from, the model's jobs\n"
       "start from those weights (names and shapes must match the spec) instead of its seed;\n"
       "a job's --freeze then keeps some of them fixed.\n"},
      {"job",
       "list",
       "",
       0,
       0,
       {},
       "Lists jobs, newest first, with state, epoch, progress and ETA.\n"},
      {"job", "get", "<id>", 1, 1, {}, "Prints one job with its settings and per-epoch history.\n"},
      {"job", "create", "", 0, 0, kJobFlags, "Creates a job and prints its id.\n"},
      {"job", "cancel", "<id>", 1, 1, {}, "Cancels a queued or running job.\n"},
      {"job",
       "delete",
       "<id>",
       1,
       1,
       {},
       "Deletes a finished job: its history and files (refused while queued or running).\n"},
      {"job",
       "logs",
       "<id>",
       1,
       1,
       {{"follow", "", "keep printing new lines until the job ends", 'f'}},
       "Prints the job's log.\n"},
      {"node",
       "list",
       "",
       0,
       0,
       {},
       "Lists the worker pool: each node idle, busy (job/part) or lost, and when it was last "
       "seen.\n"},
      {"predict",
       "",
       "<model> <file.png|file.jpg|file.json>...",
       2,
       kMany,
       {{"job", "N", "use this job's weights (default: the model's newest succeeded job)"},
        {"invert", "auto|true|false", "invert images (auto: those whose border is mostly light)"}},
       "Each file's predicted class and top probabilities (a .json file holds\n"
       "{\"inputs\": [sample, ...]}); --invert auto inverts images whose border is mostly light\n"
       "(a dark drawing on white paper).\n"},
  };
  return verbs;
}

bool IsVerbless(std::string_view noun) { return noun == "train" || noun == "predict"; }

const Verb* FindVerb(std::string_view noun, std::string_view verb) {
  for (const auto& v : Verbs())
    if (noun == v.noun && verb == v.verb) return &v;
  return nullptr;
}

std::string Synopsis(const Verb& v) {
  std::string s = std::string(v.noun) + (v.verb.empty() ? "" : " " + std::string(v.verb));
  if (!v.args.empty()) s += " " + std::string(v.args);
  if (!v.flags.empty()) s += " [flags]";
  return s;
}

std::string CtlUsage() {
  std::string s = "usage: dnnd ctl [flags] <noun> <verb> [args]\n";
  for (const auto& v : Verbs()) s += "  " + Synopsis(v) + "\n";
  s += "`dnnd ctl <noun> <verb> --help` describes one verb and its flags. Flags of every verb:\n";
  s += ctl::FlagUsage(kGlobalFlags);
  s += "Controller: --controller, else $DNND_CONTROLLER, else `controller` in\n"
       "            ~/.config/dnnd/ctl.toml, else 127.0.0.1:8080.\n"
       "Token:      --token, else $DNND_TOKEN, else `token` or `token_file` in\n"
       "            ~/.config/dnnd/ctl.toml.\n"
       "Exit codes: 0 done; 1 controller unreachable or failed (5xx); 2 usage; 3 request refused\n"
       "            (4xx, 401 included); 4 a followed job (train --follow) ended failed or "
       "cancelled.\n";
  return s;
}

int Usage(const std::string& error) {
  if (!error.empty()) {
    std::fprintf(stderr, "dnnd ctl: %s\n", error.c_str());
    std::fputs("(dnnd ctl --help lists the commands)\n", stderr);
    return 2;
  }
  std::fputs(CtlUsage().c_str(), stdout);
  return 0;
}

// A usage error of one verb: the error and where its description is.
int VerbUsageError(const Verb& v, const std::string& error) {
  std::fprintf(stderr, "dnnd ctl: %s\n(dnnd ctl %s --help describes it)\n", error.c_str(),
               (std::string(v.noun) + (v.verb.empty() ? "" : " " + std::string(v.verb))).c_str());
  return 2;
}

int VerbUsage(const Verb& v) {
  std::printf("dnnd ctl %s\n%s", Synopsis(v).c_str(), std::string(v.about).c_str());
  if (!v.flags.empty()) std::printf("Flags:\n%s", ctl::FlagUsage(v.flags).c_str());
  return 0;
}

// Percent-encodes a path segment (names are validated server-side; this
// keeps a hostile one from changing the route). RFC 3986's unreserved
// characters stay as they are: the server refuses any other spelling of them.
std::string Segment(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", c);
      out += b;
    }
  }
  return out;
}

// The Content-Type a file is sent as, from its extension; "" if unknown.
std::string MediaTypeOf(const std::string& file) {
  const size_t dot = file.rfind('.');
  std::string ext = dot == std::string::npos ? "" : file.substr(dot + 1);
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
int Predict(const CtlClient& client, const std::vector<std::string>& files,
            const std::string& model, const FlagValues& flags, bool as_json) {
  std::string query;
  for (const char* k : {"job", "invert"})
    if (flags.has(k))
      query += std::string(query.empty() ? "?" : "&") + k + "=" + Segment(flags.get(k));
  json::array answers;
  std::vector<std::vector<std::string>> rows;
  for (const std::string& file : files) {
    const std::string media = MediaTypeOf(file);
    if (media.empty())
      return Usage("cannot tell what " + file + " is: expected .png, .jpg, .jpeg or .json");
    auto bytes = ReadFileToString(file);
    if (!bytes.ok()) {
      std::fprintf(stderr, "dnnd ctl: %s\n", bytes.status().ToString().c_str());
      return 2;
    }
    auto r = client.Request("POST", "/api/v1/models/" + Segment(model) + "/predict" + query, *bytes,
                            media);
    if (int rc = CheckReply(r, client); rc != 0) return rc;
    boost::system::error_code ec;
    json::value v = json::parse(r->body, ec);
    if (ec || !v.is_object() || !v.as_object().contains("predictions")) {
      std::fprintf(stderr, "dnnd ctl: unexpected answer for %s: %s\n", file.c_str(),
                   r->body.c_str());
      return 1;
    }
    const auto& predictions = v.at("predictions").as_array();
    for (size_t i = 0; i < predictions.size(); ++i) {
      const auto& p = predictions[i].as_object();
      const bool inverted =
          p.contains("inverted") && p.at("inverted").is_bool() && p.at("inverted").as_bool();
      const std::string sample = media == "application/json" ? "sample " + std::to_string(i)
                                 : inverted                  ? "image, inverted"
                                                             : "image";
      if (p.contains("probabilities"))
        rows.push_back(
            {file, sample,
             Num(p.at("class")) + (p.contains("class_name") ? " " + Num(p.at("class_name")) : ""),
             ctl::TopClasses(p.at("probabilities").as_array(), 3)});
      else
        rows.push_back({file, sample, "-", json::serialize(p.at("outputs"))});
    }
    v.as_object()["file"] = file;
    answers.push_back(std::move(v));
  }
  if (as_json)
    std::fputs(PrettyJson(answers).c_str(), stdout);
  else
    Table({"FILE", "INPUT", "CLASS", "TOP (probability)"}, rows);
  return 0;
}

// The body of POST /api/v1/jobs from the job flags (kJobFlags).
Result<json::object> JobBody(const FlagValues& flags) {
  json::object body;
  for (const Flag& f : kJobFlags) {
    if (!flags.has(f.name)) continue;
    const std::string v = flags.get(f.name);
    std::string key(f.name);
    std::replace(key.begin(), key.end(), '-', '_');
    if (IsTextJobFlag(f.name)) {
      body[key] = v;
    } else if (IsListJobFlag(f.name)) {
      body[key] = CommaList(v);
    } else if (f.value.empty()) {
      body[key] = true;  // a switch
    } else if (IsRealJobFlag(f.name)) {
      char* end = nullptr;
      const double x = std::strtod(v.c_str(), &end);
      if (v.empty() || *end)
        return InvalidArgument("--" + std::string(f.name) + " needs a number, not '" + v + "'");
      body[key] = x;
    } else {
      char* end = nullptr;
      const long long x = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end)
        return InvalidArgument("--" + std::string(f.name) + " needs an integer, not '" + v + "'");
      body[key] = x;
    }
  }
  return body;
}

// The verb a command line names, from its first positional words; the
// flags may stand anywhere, so they are skipped by the union of every
// verb's table (leniently: an unknown one is reported against the verb's).
struct Command {
  std::string noun, verb;
  const Verb* verb_entry = nullptr;
};

Command FindCommand(const std::vector<std::string>& args) {
  std::vector<Flag> all = kGlobalFlags;
  for (const auto& v : Verbs())
    for (const auto& f : v.flags)
      if (std::none_of(all.begin(), all.end(), [&](const Flag& g) { return g.name == f.name; }))
        all.push_back(f);
  Command c;
  auto parsed = ctl::ParseFlags(args, all, /*lenient=*/true);
  const auto& words = parsed->positional;
  c.noun = words.empty() ? "" : words[0];
  c.verb = IsVerbless(c.noun) || words.size() < 2 ? "" : words[1];
  c.verb_entry = FindVerb(c.noun, c.verb);
  return c;
}

std::string List(const std::vector<std::string>& words) {
  std::string list;
  for (const auto& w : words) list += (list.empty() ? "" : ", ") + w;
  return list;
}

// "unknown noun 'jobs' (did you mean job?); expected train, dataset, ..."
std::string UnknownWord(const std::string& what, const std::string& word,
                        const std::vector<std::string>& known) {
  const auto near = DidYouMean(word, known);
  return "unknown " + what + " '" + word + "'" + (near ? " (did you mean " + *near + "?)" : "") +
         "; expected " + List(known);
}

}  // namespace

int RunCtl(const std::vector<std::string>& args) {
  const Command command = FindCommand(args);
  const Verb* verb = command.verb_entry;
  const std::string& noun = command.noun;
  if (!verb) {
    // No verb to check the flags against: the global flags alone.
    auto global = ctl::ParseFlags(args, kGlobalFlags, /*lenient=*/true);
    if (global.ok() && global->has("help")) return Usage("");
    if (noun.empty()) return Usage("expected <noun> <verb>");
    std::vector<std::string> nouns, verbs;
    for (const auto& v : Verbs()) {
      if (std::find(nouns.begin(), nouns.end(), v.noun) == nouns.end()) nouns.emplace_back(v.noun);
      if (v.noun == noun) verbs.emplace_back(v.verb);
    }
    if (verbs.empty()) return Usage(UnknownWord("noun", noun, nouns));
    if (command.verb.empty()) return Usage(noun + " needs a verb: " + List(verbs));
    return Usage(UnknownWord(noun + " verb", command.verb, verbs));
  }
  auto parsed = ctl::ParseFlags(args, Join(kGlobalFlags, verb->flags));
  if (!parsed.ok()) return VerbUsageError(*verb, parsed.status().message());
  const FlagValues& flags = *parsed;
  if (flags.has("help")) return VerbUsage(*verb);
  // The verb's own arguments: the positional words after noun (and verb).
  const std::vector<std::string> rest(flags.positional.begin() + (verb->verb.empty() ? 1 : 2),
                                      flags.positional.end());
  if (rest.size() < verb->min_args)
    return VerbUsageError(*verb, Synopsis(*verb) + ": missing " + std::string(verb->args));
  if (rest.size() > verb->max_args)
    return VerbUsageError(*verb, "unexpected argument '" + rest[verb->max_args] + "'");
  const std::string output = flags.has("json")     ? "json"
                             : flags.has("output") ? flags.get("output")
                                                   : "table";
  if (output != "table" && output != "json")
    return VerbUsageError(*verb, "-o must be table or json, not '" + output + "'");
  if (flags.has("json") && flags.has("output") && flags.get("output") != "json")
    return VerbUsageError(*verb, "--json and -o " + flags.get("output") + " disagree");
  const bool as_json = output == "json";

  auto settings = ResolveCtlSettings(flags.get("controller"), flags.get("token"),
                                     [](const char* n) { return std::getenv(n); });
  if (!settings.ok()) {
    std::fprintf(stderr, "dnnd ctl: %s\n", settings.status().message().c_str());
    return 2;
  }
  const CtlClient client(settings->controller, settings->token);
  const std::string arg = rest.empty() ? "" : rest[0];
  FollowOptions follow;
  follow.redraw = isatty(STDOUT_FILENO) && !as_json;
  // Sends, checks, and prints the answer as a table (or, with -o json, as JSON).
  auto call = [&](const char* method, const std::string& target, const std::string& body,
                  void (*table)(const json::value&)) -> int {
    auto r = client.Request(method, target, body);
    if (int rc = CheckReply(r, client); rc != 0) return rc;
    boost::system::error_code ec;
    json::value v = json::parse(r->body, ec);
    if (ec || !v.is_object()) {
      std::fputs(r->body.c_str(), stdout);
      return 0;
    }
    if (as_json)
      std::fputs(PrettyJson(v).c_str(), stdout);
    else
      table(v);
    return 0;
  };
  // Creates a job from the flags; prints its id (or JSON); `id` gets it.
  auto create_job = [&](std::string* id) -> int {
    for (const char* required : {"model", "dataset"})
      if (!flags.has(required))
        return VerbUsageError(*verb, "--" + std::string(required) + " is required");
    auto body = JobBody(flags);
    if (!body.ok()) return VerbUsageError(*verb, body.status().message());
    auto r = client.Request("POST", "/api/v1/jobs", json::serialize(*body));
    if (int rc = CheckReply(r, client); rc != 0) return rc;
    json::value v = json::parse(r->body);
    *id = Num(v.at("id"));
    if (as_json && !flags.has("follow"))
      std::fputs(PrettyJson(v).c_str(), stdout);
    else if (!as_json)
      std::printf("%s\n", id->c_str());  // the id, for scripts
    std::fflush(stdout);
    return 0;
  };

  if (noun == "predict")
    return Predict(client, std::vector<std::string>(rest.begin() + 1, rest.end()), arg, flags,
                   as_json);
  if (noun == "train") {
    std::string id;
    if (int rc = create_job(&id); rc != 0) return rc;
    return flags.has("follow") ? FollowJob(client, id, as_json, follow) : 0;
  }
  const std::string& v = command.verb;
  if (noun == "dataset") {
    const std::string target = "/api/v1/datasets/" + Segment(arg);
    if (v == "list") return call("GET", "/api/v1/datasets", "", ctl::PrintDatasets);
    if (v == "get") return call("GET", target, "", ctl::PrintDatasets);
    if (v == "delete")
      return call("DELETE", target, "", [](const json::value& x) {
        std::printf("deleted dataset %s\n", Num(x.at("deleted")).c_str());
      });
    const std::string format = flags.get("format");  // create, upload
    if (format.empty())
      return VerbUsageError(*verb, "--format is required (idx, npy, npz, csv or cifar10)");
    for (const Flag& part : kUploadFlags) {
      const std::string file = flags.get(part.name);
      if (part.name == "format" || part.name == "classes" || file.empty()) continue;
      if (access(file.c_str(), R_OK) != 0) {
        std::fprintf(stderr, "dnnd ctl: cannot read %s (--%s)\n", file.c_str(),
                     std::string(part.name).c_str());
        return 2;
      }
      std::fprintf(stderr, "uploading %s as %s\n", file.c_str(), std::string(part.name).c_str());
      auto r = client.Upload(target + "/files/" + std::string(part.name), file);
      if (int rc = CheckReply(r, client); rc != 0) return rc;
    }
    json::object body{{"name", arg}, {"format", format}};
    if (flags.has("classes")) body["classes"] = CommaList(flags.get("classes"));
    return call("POST", "/api/v1/datasets", json::serialize(body), ctl::PrintDatasets);
  }
  if (noun == "model") {
    if (v == "list") return call("GET", "/api/v1/models", "", ctl::PrintModels);
    if (v == "get") return call("GET", "/api/v1/models/" + Segment(arg), "", ctl::PrintModels);
    if (flags.has("spec") == flags.has("onnx"))  // create
      return VerbUsageError(*verb, "give --spec (a TOML spec) or --onnx (an ONNX file)");
    if (flags.has("onnx") && flags.has("init-from"))
      return VerbUsageError(*verb, "--init-from goes with --spec (an ONNX file has its weights)");
    if (flags.has("onnx")) {
      std::fprintf(stderr, "uploading %s as model %s\n", flags.get("onnx").c_str(), arg.c_str());
      auto r = client.Upload("/api/v1/models/" + Segment(arg) + "/onnx", flags.get("onnx"));
      if (int rc = CheckReply(r, client); rc != 0) return rc;
      return call("GET", "/api/v1/models/" + Segment(arg), "", [](const json::value& x) {
        json::object row = x.as_object();
        row.erase("spec");
        ctl::PrintModels(row);
      });
    }
    if (flags.has("init-from") && !std::filesystem::is_regular_file(flags.get("init-from"))) {
      std::fprintf(stderr, "dnnd ctl: --init-from %s: no such file\n",
                   flags.get("init-from").c_str());
      return 2;
    }
    auto text = ReadFileToString(flags.get("spec"), 1 << 20);
    if (!text.ok()) {
      std::fprintf(stderr, "dnnd ctl: %s\n", text.status().ToString().c_str());
      return 2;
    }
    auto print = [](const json::value& x) {
      json::object row = x.as_object();
      row.erase("spec");  // the file just sent
      ctl::PrintModels(row);
    };
    json::object body{{"name", arg}, {"spec", *text}};
    if (!flags.has("init-from"))
      return call("POST", "/api/v1/models", json::serialize(body), print);
    auto created = client.Request("POST", "/api/v1/models", json::serialize(body));
    if (int rc = CheckReply(created, client); rc != 0) return rc;
    std::fprintf(stderr, "uploading %s as model %s's initial weights\n",
                 flags.get("init-from").c_str(), arg.c_str());
    auto r = client.Upload("/api/v1/models/" + Segment(arg) + "/initial", flags.get("init-from"));
    if (int rc = CheckReply(r, client); rc != 0) return rc;
    return call("GET", "/api/v1/models/" + Segment(arg), "", print);
  }
  if (noun == "node") return call("GET", "/api/v1/nodes", "", ctl::PrintNodes);  // list
  // job
  if (v == "list") return call("GET", "/api/v1/jobs", "", ctl::PrintJobs);
  if (v == "create") {
    std::string id;
    return create_job(&id);
  }
  const std::string job = "/api/v1/jobs/" + Segment(arg);
  if (v == "get") return call("GET", job, "", ctl::PrintJob);
  if (v == "cancel") return call("POST", job + "/cancel", "", ctl::PrintCancel);
  if (v == "delete")
    return call("DELETE", job, "", [](const json::value& x) {
      std::printf("deleted job %s\n", Num(x.at("deleted")).c_str());
    });
  // logs
  if (flags.has("follow")) return FollowLogs(client, Segment(arg), follow);
  auto r = client.Request("GET", job + "/logs");
  if (int rc = CheckReply(r, client); rc != 0) return rc;
  std::fputs(r->body.c_str(), stdout);
  return 0;
}

}  // namespace dnnd
