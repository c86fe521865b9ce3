#include "roles/ctl.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>

#include "core/files.h"
#include "core/json_text.h"

namespace dnnd {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace json = boost::json;
using tcp = boost::asio::ip::tcp;

constexpr const char* kCtlUsage = R"(usage: dnnd ctl [--controller host:port] [-o table|json] <noun> <verb> [args]
  dataset list | get <name> | delete <name>
  dataset upload <name> --format idx|npy --train-images F --train-labels F [--test-images F --test-labels F]
  dataset upload <name> --format npz|csv --train F [--test F]
  model   list | get <name> | create <name> --spec model.toml
  job     list | get <id> | cancel <id> | logs <id>
  job     create --model M --dataset D [--epochs N] [--batch N] [--lr X] [--optimizer sgd|adam|adamw]
                 [--workers N] [--servers N] [--mode sync|async|kavg] [--kavg-steps N] [--seed N]
                 [--limit-train N] [--limit-test N] [--eval-every N] [--goal-accuracy 0.88]
                 [--lr-schedule constant|cosine|step]
  node    list                      the worker pool: idle, busy (job/part) or lost
  predict <model> <file.png|file.jpg|file.json>... [--job N] [--invert auto|true|false]
                 each file's predicted class and top probabilities (a .json file holds
                 {"inputs": [sample, ...]}); --job picks a job's weights (default: the
                 model's newest succeeded job); --invert: auto inverts images whose border
                 is mostly light (a dark drawing on white paper)
The controller is --controller, else $DNND_CONTROLLER, else 127.0.0.1:8080.
Exit codes: 0 done, 1 unreachable or server error, 2 usage, 3 request refused (4xx).
)";

struct Reply {
  int status = 0;
  std::string body;
};

// One request over a fresh connection; nullopt (and a message on stderr)
// when the controller cannot be reached.
std::optional<Reply> Request(const std::string& address, http::verb method, const std::string& target,
                             const std::string& body, const std::string& content_type = "application/json") {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "dnnd ctl: --controller must be host:port, not '%s'\n", address.c_str());
    return std::nullopt;
  }
  try {
    boost::asio::io_context io;
    tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::minutes(10));  // uploads of large datasets
    stream.connect(resolver.resolve(address.substr(0, colon), address.substr(colon + 1)));
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, address);
    req.set(http::field::user_agent, "dnnd-ctl");
    if (!body.empty() || method == http::verb::post || method == http::verb::put) {
      req.set(http::field::content_type, content_type);
      req.body() = body;
      req.prepare_payload();
    }
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    http::read(stream, buffer, parser);
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    return Reply{static_cast<int>(parser.get().result_int()), parser.get().body()};
  } catch (const boost::system::system_error& e) {
    std::fprintf(stderr, "dnnd ctl: cannot reach the controller at %s: %s\n", address.c_str(),
                 e.code().message().c_str());
    return std::nullopt;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dnnd ctl: cannot reach the controller at %s: %s\n", address.c_str(), e.what());
    return std::nullopt;
  }
}

// Exit code for a reply, printing the controller's error message if any.
int Check(const std::optional<Reply>& r) {
  if (!r) return 1;
  if (r->status < 400) return 0;
  std::string message = r->body;
  boost::system::error_code ec;
  json::value v = json::parse(r->body, ec);
  if (!ec && v.is_object() && v.as_object().contains("error"))
    message = std::string(v.at("error").at("code").as_string()) + ": " +
              std::string(v.at("error").at("message").as_string());
  std::fprintf(stderr, "dnnd ctl: HTTP %d: %s\n", r->status, message.c_str());
  return r->status < 500 ? 3 : 1;
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

struct Cli {
  std::string controller, output = "table";
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;  // --name value
};

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
                    Num(e.at("samples_per_s"))});
  }
  if (!rows.empty()) Table({"EPOCH", "TRAIN_LOSS", "TEST_LOSS", "TEST_ACC", "SECONDS", "SAMPLES/S"}, rows);
}

int Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "dnnd ctl: %s\n", error.c_str());
  std::fputs(kCtlUsage, error.empty() ? stdout : stderr);
  return error.empty() ? 0 : 2;
}

// Percent-encodes a path segment (names are validated server-side; this
// keeps a hostile one from changing the route).
std::string Segment(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') out += static_cast<char>(c);
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
int Predict(const std::string& controller, const std::vector<std::string>& positional,
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
    auto r = Request(controller, http::verb::post, "/api/v1/models/" + Segment(positional[1]) + "/predict" + query,
                     *bytes, media);
    if (int rc = Check(r); rc != 0) return rc;
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

}  // namespace

int RunCtl(const std::vector<std::string>& args) {
  Cli cli;
  const char* env = std::getenv("DNND_CONTROLLER");
  cli.controller = env && *env ? env : "127.0.0.1:8080";
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") return Usage("");
    if (a == "-o" || a.rfind("--", 0) == 0) {
      std::string name = a == "-o" ? "output" : a.substr(2), value;
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else {
        if (i + 1 >= args.size()) return Usage(a + " needs a value");
        value = args[++i];
      }
      if (name == "controller") cli.controller = value;
      else if (name == "output") cli.output = value;
      else cli.flags[name] = value;
      continue;
    }
    cli.positional.push_back(a);
  }
  if (cli.output != "table" && cli.output != "json") return Usage("-o must be table or json");
  if (cli.positional.size() < 2) return Usage("expected <noun> <verb>");
  const std::string noun = cli.positional[0], verb = cli.positional[1];
  const std::string arg = cli.positional.size() > 2 ? cli.positional[2] : "";
  const bool as_json = cli.output == "json";
  auto flag = [&](const std::string& k) {
    auto it = cli.flags.find(k);
    return it == cli.flags.end() ? std::string() : it->second;
  };
  // Sends, checks, and prints the JSON (or hands it to `table`).
  auto call = [&](http::verb m, const std::string& target, const std::string& body,
                  void (*table)(const json::value&)) -> int {
    auto r = Request(cli.controller, m, target, body);
    if (int rc = Check(r); rc != 0) return rc;
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

  if (noun == "dataset") {
    if (verb == "list") return call(http::verb::get, "/api/v1/datasets", "", PrintDatasets);
    if (int rc = need_arg("<name>")) return rc;
    if (verb == "get") return call(http::verb::get, "/api/v1/datasets/" + Segment(arg), "", nullptr);
    if (verb == "delete") return call(http::verb::delete_, "/api/v1/datasets/" + Segment(arg), "", nullptr);
    if (verb == "upload") {
      const std::string format = flag("format");
      if (format.empty()) return Usage("dataset upload needs --format idx|npy|npz|csv");
      for (const char* part : {"train-images", "train-labels", "test-images", "test-labels", "train", "test"}) {
        const std::string file = flag(part);
        if (file.empty()) continue;
        auto bytes = ReadFileToString(file);
        if (!bytes.ok()) {
          std::fprintf(stderr, "dnnd ctl: %s\n", bytes.status().ToString().c_str());
          return 2;
        }
        std::fprintf(stderr, "uploading %s (%zu bytes) as %s\n", file.c_str(), bytes->size(), part);
        auto r = Request(cli.controller, http::verb::put, "/api/v1/datasets/" + Segment(arg) + "/files/" + part,
                         *bytes, "application/octet-stream");
        if (int rc = Check(r); rc != 0) return rc;
      }
      json::object body{{"name", arg}, {"format", format}};
      return call(http::verb::post, "/api/v1/datasets", json::serialize(body), nullptr);
    }
  } else if (noun == "model") {
    if (verb == "list") {
      return call(http::verb::get, "/api/v1/models", "", [](const json::value& v) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& m : v.at("models").as_array())
          rows.push_back({Num(m.at("name")), Num(m.at("parameters")),
                          m.as_object().contains("input") ? json::serialize(m.at("input")) : "-", Num(m.at("created"))});
        Table({"NAME", "PARAMETERS", "INPUT", "CREATED"}, rows);
      });
    }
    if (int rc = need_arg("<name>")) return rc;
    if (verb == "get") return call(http::verb::get, "/api/v1/models/" + Segment(arg), "", nullptr);
    if (verb == "create") {
      if (flag("spec").empty()) return Usage("model create needs --spec model.toml");
      auto text = ReadFileToString(flag("spec"), 1 << 20);
      if (!text.ok()) {
        std::fprintf(stderr, "dnnd ctl: %s\n", text.status().ToString().c_str());
        return 2;
      }
      json::object body{{"name", arg}, {"spec", *text}};
      return call(http::verb::post, "/api/v1/models", json::serialize(body), nullptr);
    }
  } else if (noun == "job") {
    if (verb == "list") return call(http::verb::get, "/api/v1/jobs", "", PrintJobs);
    if (verb == "create") {
      json::object body;
      for (const auto& [k, v] : cli.flags) {
        std::string key = k;
        for (auto& c : key)
          if (c == '-') c = '_';
        if (key == "model" || key == "dataset" || key == "optimizer" || key == "mode" || key == "lr_schedule") {
          body[key] = v;
          continue;
        }
        char* end = nullptr;
        if (key == "lr" || key == "goal_accuracy") {
          const double x = std::strtod(v.c_str(), &end);
          if (*end || v.empty()) return Usage("--" + k + " needs a number");
          body[key] = x;
        } else {
          const long long x = std::strtoll(v.c_str(), &end, 10);
          if (*end || v.empty()) return Usage("--" + k + " needs an integer");
          body[key] = x;
        }
      }
      auto r = Request(cli.controller, http::verb::post, "/api/v1/jobs", json::serialize(body));
      if (int rc = Check(r); rc != 0) return rc;
      json::value v = json::parse(r->body);
      if (as_json) std::fputs(PrettyJson(v).c_str(), stdout);
      else std::printf("%s\n", Num(v.at("id")).c_str());  // the id, for scripts
      return 0;
    }
    if (int rc = need_arg("<id>")) return rc;
    if (verb == "get") return call(http::verb::get, "/api/v1/jobs/" + Segment(arg), "", PrintJob);
    if (verb == "cancel") return call(http::verb::post, "/api/v1/jobs/" + Segment(arg) + "/cancel", "", nullptr);
    if (verb == "logs") {
      auto r = Request(cli.controller, http::verb::get, "/api/v1/jobs/" + Segment(arg) + "/logs", "");
      if (int rc = Check(r); rc != 0) return rc;
      std::fputs(r->body.c_str(), stdout);
      return 0;
    }
  } else if (noun == "node") {
    if (verb == "list") return call(http::verb::get, "/api/v1/nodes", "", PrintNodes);
  } else if (noun == "predict") {
    return Predict(cli.controller, cli.positional, cli.flags, as_json);
  } else {
    return Usage("unknown noun '" + noun + "' (dataset, model, job, node, predict)");
  }
  return Usage("unknown command '" + noun + " " + verb + "'");
}

}  // namespace dnnd
