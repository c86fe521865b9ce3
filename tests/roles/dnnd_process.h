// Running the real dnnd binary from tests: one-shot commands, background
// daemons (ended by PID), temporary directories, and a tiny HTTP GET.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace dnnd::testing {

struct Outcome {
  int code;
  std::string output;  // stdout and stderr
};

// Runs a shell command to completion (e.g. a numpy check of dnnd's output).
inline Outcome Shell(const std::string& command) {
  std::string cmd = command + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Runs `dnnd <args>` to completion.
inline Outcome Dnnd(const std::string& args) {
  return Shell(std::string(DNND_BINARY) + " " + args);
}

inline std::string Src(const std::string& rel) { return std::string(DNND_SOURCE_DIR) + "/" + rel; }

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

class TempDir {
 public:
  TempDir()
      : path_(std::filesystem::temp_directory_path() /
              ("dnnd_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++))) {
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string path() const { return path_.string(); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(path_ / name) << text;
    return (path_ / name).string();
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

// `dnnd <args>` in the background, output to `log`. Ended only by its PID.
class Daemon {
 public:
  Daemon(const std::string& args, std::string log) : log_(std::move(log)) {
    std::string cmd = std::string("exec ") + DNND_BINARY + " " + args + " > " + log_ + " 2>&1";
    const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
    if (posix_spawn(&pid_, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ) != 0)
      pid_ = -1;
  }
  ~Daemon() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      Wait();
    }
  }
  pid_t pid() const { return pid_; }
  void Signal(int sig) { kill(pid_, sig); }
  // Exit code (-1 if killed by a signal).
  int Wait() {
    if (exited_) return code_;
    int status = 0;
    waitpid(pid_, &status, 0);
    exited_ = true;
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return code_;
  }
  // Whether it exits within `timeout` (then Wait() returns at once).
  bool ExitsWithin(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!exited_) {
      siginfo_t info{};
      if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid == pid_) {
        Wait();
        break;
      }
      if (std::chrono::steady_clock::now() >= end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }
  std::string output() const { return ReadFile(log_); }
  // Waits up to `timeout` for `text` to appear in the output.
  bool WaitFor(const std::string& text, std::chrono::milliseconds timeout) const {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (output().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  // The port after `marker` ("address=127.0.0.1:") in the output, or 0.
  int PortAfter(const std::string& marker, std::chrono::milliseconds timeout) const {
    if (!WaitFor(marker, timeout)) return 0;
    const std::string out = output();
    return std::atoi(out.c_str() + out.find(marker) + marker.size());
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
};

// Sends one HTTP/1.1 request to 127.0.0.1:`port` (Connection: close) and
// returns the raw response (status line, headers, body); "" if it cannot connect.
// `extra_headers`: whole lines, each ending in "\r\n".
inline std::string HttpSend(int port, const std::string& method, const std::string& path,
                            const std::string& body = "",
                            const std::string& content_type = "application/json",
                            const std::string& extra_headers = "") {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  req += extra_headers;
  if (!body.empty() || method == "POST" || method == "PUT")
    req += "Content-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n";
  req += "\r\n" + body;
  for (size_t off = 0; off < req.size();) {
    ssize_t n = write(fd, req.data() + off, req.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

// GET `path` from 127.0.0.1:`port`: the raw response (status line, headers, body).
inline std::string HttpGet(int port, const std::string& path) {
  return HttpSend(port, "GET", path);
}

// The status code of a raw response (0 if none), and its body.
inline int HttpStatus(const std::string& response) {
  return response.size() > 12 ? std::atoi(response.c_str() + 9) : 0;
}
// The value of the first header `name` (exact case) of a raw response, or "".
inline std::string HttpHeader(const std::string& response, const std::string& name) {
  const size_t end = response.find("\r\n\r\n");
  const size_t p = response.find("\r\n" + name + ": ");
  if (p == std::string::npos || p > end) return "";
  const size_t v = p + 4 + name.size();
  return response.substr(v, response.find("\r\n", v) - v);
}
inline std::string HttpBody(const std::string& response) {
  const size_t p = response.find("\r\n\r\n");
  return p == std::string::npos ? "" : response.substr(p + 4);
}

// A loopback port that was free a moment ago (for daemons that must know
// each other's addresses before they start).
inline int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

// A number from /proc/<pid>/status ("Threads", "VmRSS", "VmHWM" in kB), or -1.
inline int64_t ProcStatus(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return std::atoll(line.c_str() + key.size() + 1);
  return -1;
}

}  // namespace dnnd::testing
