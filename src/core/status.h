// Errors as values across every boundary where input comes from outside the
// process (config files, data files, checkpoints, wire frames, HTTP bodies).
// Code inside one component may still throw; the boundary converts.
//
//   Result<Tensor> r = LoadIdx(path);
//   if (!r) return r.status();          // propagate
//   Tensor t = std::move(r).value();
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace dnnd {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // the caller's input is malformed (config, request, spec)
  kNotFound,           // a file, key or object does not exist
  kAlreadyExists,      // refusing to overwrite
  kCorruption,         // a file or frame is truncated or inconsistent
  kUnsupported,        // well-formed but not something we implement (dtype, version)
  kResourceExhausted,  // a limit was hit (size, memory budget)
  kIoError,            // the OS said no
  kUnavailable,        // a peer is unreachable; retrying may help
  kDeadlineExceeded,
  kPermissionDenied,
  kCancelled,
  kInternal,  // a bug in dnnd
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "Corruption: train-images: truncated at byte 16".
  std::string ToString() const;

  // Prefixes the message with context ("file.toml: " + message), keeping the code.
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
inline Status Unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status PermissionDenied(std::string m) {
  return {StatusCode::kPermissionDenied, std::move(m)};
}
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "a Result holding a Status must hold an error");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

// Thrown by code that cannot return a Status (constructors, operators); the
// boundary that catches it turns it back into the Status it carries.
class StatusError : public std::exception {
 public:
  explicit StatusError(Status s) : status_(std::move(s)), what_(status_.ToString()) {}
  const Status& status() const { return status_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  Status status_;
  std::string what_;
};

// Returns the value or throws StatusError; for code paths where an error is a
// programming or environment fault that the top level reports.
template <typename T>
T ValueOrThrow(Result<T> r) {
  if (!r) throw StatusError(r.status());
  return std::move(r).value();
}
inline void ThrowIfError(const Status& s) {
  if (!s.ok()) throw StatusError(s);
}

}  // namespace dnnd

#define DNND_CONCAT_INNER(a, b) a##b
#define DNND_CONCAT(a, b) DNND_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (a Status) is an error.
#define DNND_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::dnnd::Status dnnd_status_ = (expr);        \
    if (!dnnd_status_.ok()) return dnnd_status_; \
  } while (0)

// `DNND_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a Result or returns its error.
#define DNND_ASSIGN_OR_RETURN(lhs, expr)                                                         \
  auto DNND_CONCAT(dnnd_result_, __LINE__) = (expr);                                             \
  if (!DNND_CONCAT(dnnd_result_, __LINE__)) return DNND_CONCAT(dnnd_result_, __LINE__).status(); \
  lhs = std::move(DNND_CONCAT(dnnd_result_, __LINE__)).value()
