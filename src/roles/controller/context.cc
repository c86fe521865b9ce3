#include "roles/controller/context.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>

#include "core/files.h"
#include "core/json_fields.h"
#include "roles/controller/controller.h"

namespace dnnd {
namespace fs = std::filesystem;
namespace json = boost::json;

bool IsValidName(const std::string& name) {
  if (name.empty() || name.size() > 64 || !std::isalnum(static_cast<unsigned char>(name[0])))
    return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      return false;
  return true;
}

Status CheckName(const std::string& what, const std::string& name) {
  if (IsValidName(name)) return Status::Ok();
  return InvalidArgument("invalid " + what + " name '" + name +
                         "': names are 1-64 characters [A-Za-z0-9._-] starting with a letter or "
                         "digit");
}

std::string ControllerContext::JobDir(int64_t id) const {
  return dir + "/jobs/" + std::to_string(id);
}

std::string ControllerContext::CheckpointPath(int64_t id) const {
  return JobDir(id) + "/model/model.safetensors";
}

void ControllerContext::JobLog(int64_t id, const std::string& line) const {
  std::error_code ec;
  fs::create_directories(JobDir(id), ec);
  const std::string text = UtcNow() + " " + line + "\n";
  int fd =
      ::open((JobDir(id) + "/job.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  [[maybe_unused]] ssize_t n = ::write(fd, text.data(), text.size());
  ::close(fd);
}

std::string ControllerContext::ServiceHost() const {
  std::string listen = cfg.GetString("controller.wire_listen");
  if (listen.empty()) listen = cfg.GetString("http.listen");
  const size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

std::string ControllerContext::InitialWeightsPath(const std::string& model) const {
  return dir + "/models/" + model + ".initial.safetensors";
}

Result<HttpResponse> ControllerContext::Checkpoint(int64_t id) const {
  const std::string path = CheckpointPath(id);
  if (!fs::exists(path))
    return NotFound("job " + std::to_string(id) + " has no trained checkpoint yet");
  DNND_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  HttpResponse out = HttpResponse::Text(200, std::move(bytes), "application/octet-stream");
  out.headers.push_back({"Content-Disposition",
                         "attachment; filename=\"job-" + std::to_string(id) + ".safetensors\""});
  return out;
}

Result<json::object> JsonObjectBody(const HttpRequest& r, size_t max_bytes) {
  if (r.body.size() > max_bytes)
    return ResourceExhausted("request body is " + std::to_string(r.body.size()) +
                             " bytes; the limit is " + std::to_string(max_bytes) +
                             " (http.max_body_bytes)");
  DNND_ASSIGN_OR_RETURN(json::value v, ParseJsonBody(r));
  if (!v.is_object()) return InvalidArgument("request body must be a JSON object");
  return std::move(v.get_object());
}

json::value ParseJsonText(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  return ec ? json::value() : v;
}

json::value ShapeJson(const Shape& s) {
  json::array a;
  for (auto d : s) a.push_back(d);
  return a;
}

Result<int64_t> JobId(const HttpRequest& r) {
  const std::string& s = r.params.at("id");
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
    return InvalidArgument("invalid job id '" + s + "': expected a positive integer");
  return std::stoll(s);
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

HttpHandler ApiHandler(ApiFunction fn) {
  return [fn = std::move(fn)](const HttpRequest& req) -> HttpResponse {
    Result<HttpResponse> res = fn(req);
    if (res.ok()) return std::move(res).value();
    if (res.status().code() == StatusCode::kResourceExhausted)
      return HttpResponse::Error(413, "payload_too_large", res.status().message());
    return HttpResponse::FromStatus(res.status());
  };
}

}  // namespace dnnd
