#include "roles/pool/controller_end.h"

#include <algorithm>
#include <utility>

#include "core/sha256.h"
#include "transport/hello.h"

namespace dnnd {
namespace {

std::string Hex(const std::string& bytes, size_t n) {
  return LowerHex(std::string_view(bytes).substr(0, n));
}

// A lost node stays listed (state "lost") this long before it is forgotten.
constexpr auto kForgetLostAfter = std::chrono::seconds(120);

// Whether `attempt` (NewAttempt's "<controller>-<job>-<index>-<n>", from this
// controller or an earlier run of it) names part 0 of `job`: the part whose
// epochs are the job's history.
bool IsFirstPartOf(const std::string& attempt, int64_t job) {
  const std::string tail = "-" + std::to_string(job) + "-0-";
  const size_t at = attempt.find('-');
  return at != std::string::npos && attempt.compare(at, tail.size(), tail) == 0 &&
         attempt.size() > at + tail.size() &&
         attempt.find_first_not_of("0123456789", at + tail.size()) == std::string::npos;
}

}  // namespace

WorkerPool::WorkerPool(std::chrono::milliseconds node_timeout, Listener listener)
    : node_timeout_(node_timeout),
      listener_(std::move(listener)),
      epoch_(Hex(wire::RandomNonce(), 4)) {}

std::string WorkerPool::NewAttempt(int64_t job, int64_t index) {
  mu_.AssertHeld();
  return epoch_ + "-" + std::to_string(job) + "-" + std::to_string(index) + "-" +
         std::to_string(++attempts_);
}

const WorkerPool::Part* WorkerPool::FindPart(int64_t job, const std::string& attempt) const {
  mu_.AssertHeld();
  auto j = jobs_.find(job);
  if (j == jobs_.end()) return nullptr;
  for (const auto& p : j->second.parts)
    if (p.task.attempt == attempt) return &p;
  return nullptr;
}

// The analysis cannot see through std::as_const(*this): same object, same lock.
WorkerPool::Part* WorkerPool::FindPart(int64_t job,
                                       const std::string& attempt) NO_THREAD_SAFETY_ANALYSIS {
  mu_.AssertHeld();
  return const_cast<Part*>(std::as_const(*this).FindPart(job, attempt));
}

void WorkerPool::Assign(const std::string& node_name, Part& part) {
  mu_.AssertHeld();
  part.task.attempt = NewAttempt(part.task.job, part.task.index);
  part.node = node_name;
  part.state = pool::TaskState::kRunning;
  Node& n = nodes_[node_name];
  n.task = part.task;
}

pool::NodeOrder WorkerPool::Heartbeat(const std::string& name, const std::string& address,
                                      const pool::NodeReport& report) {
  std::vector<pool::EpochReport> epochs;
  std::optional<std::pair<int64_t, int64_t>> steps;
  pool::NodeOrder order;
  {
    MutexLock lock(mu_);
    Node& n = nodes_[name];
    n.address = address;
    n.threads = report.threads;
    n.last_seen = Clock::now();
    n.lost = false;
    n.reported_running = report.state == pool::TaskState::kRunning;
    n.reported_job = report.job;
    if (!report.attempt.empty()) {
      Part* part = FindPart(report.job, report.attempt);
      if (!part || part->node != name) {
        // A part this node no longer owns (it was lost and the part moved,
        // the job ended, or the controller restarted): stop it. The epochs
        // part 0 finished meanwhile still happened (the servers applied
        // their steps, and the job resumes after them), so they are
        // recorded: a restarted controller's history keeps them.
        if (part ? part->task.index == 0 : IsFirstPartOf(report.attempt, report.job))
          epochs = report.epochs;
        if (report.state == pool::TaskState::kRunning) {
          order.kind = pool::NodeOrder::Kind::kStop;
        }
      } else {
        if (part->task.index == 0) {
          epochs = report.epochs;
          if (report.step > 0) steps = {report.step, report.total_steps};
        }
        if (report.state == pool::TaskState::kRunning) {
          order.kind = pool::NodeOrder::Kind::kContinue;
        } else if (report.state == pool::TaskState::kSucceeded ||
                   report.state == pool::TaskState::kFailed) {
          if (part->state == pool::TaskState::kRunning) {
            part->state = report.state;
            part->error = report.error;
          }
          if (n.task && n.task->attempt == report.attempt) n.task.reset();
        }
      }
    }
    if (order.kind != pool::NodeOrder::Kind::kContinue && !n.reported_running && n.task) {
      order.kind = pool::NodeOrder::Kind::kRun;
      order.task = n.task;
    }
  }
  if (steps && listener_.on_step) listener_.on_step(report.job, steps->first, steps->second);
  if (listener_.on_epoch)
    for (const auto& e : epochs) listener_.on_epoch(report.job, e);
  return order;
}

std::vector<std::string> WorkerPool::Sweep() {
  MutexLock lock(mu_);
  const auto now = Clock::now();
  std::vector<std::string> lost;
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    Node& n = it->second;
    if (!n.lost && now - n.last_seen > node_timeout_) {
      n.lost = true;
      n.reported_running = false;
      lost.push_back(it->first);
      if (n.task) {
        Part* p = FindPart(n.task->job, n.task->attempt);
        if (p && p->state == pool::TaskState::kRunning) p->node.clear();
        n.task.reset();
      }
    }
    if (n.lost && now - n.last_seen > node_timeout_ + kForgetLostAfter)
      it = nodes_.erase(it);
    else
      ++it;
  }
  return lost;
}

int64_t WorkerPool::IdleCount() const {
  MutexLock lock(mu_);
  int64_t n = 0;
  for (const auto& [name, node] : nodes_) n += !node.lost && !node.task && !node.reported_running;
  return n;
}

int64_t WorkerPool::Capacity() const {
  MutexLock lock(mu_);
  int64_t n = 0;
  for (const auto& [name, node] : nodes_) n += !node.lost;
  return n;
}

bool WorkerPool::Place(std::vector<pool::Task> tasks) {
  MutexLock lock(mu_);
  std::vector<std::string> idle;
  for (const auto& [name, node] : nodes_)
    if (!node.lost && !node.task && !node.reported_running)
      idle.push_back(name);  // sorted: std::map
  if (tasks.empty() || idle.size() < tasks.size()) return false;
  Job& job = jobs_[tasks.front().job];
  job.parts.clear();
  for (size_t i = 0; i < tasks.size(); ++i) {
    job.parts.push_back(Part{std::move(tasks[i]), "", pool::TaskState::kRunning, ""});
    Assign(idle[i], job.parts.back());
  }
  return true;
}

std::vector<std::string> WorkerPool::Replace() {
  MutexLock lock(mu_);
  std::vector<std::string> log;
  for (auto& [id, job] : jobs_)
    for (auto& part : job.parts) {
      if (!part.node.empty() || part.state != pool::TaskState::kRunning) continue;
      auto idle = std::find_if(nodes_.begin(), nodes_.end(), [](const auto& kv) {
        return !kv.second.lost && !kv.second.task && !kv.second.reported_running;
      });
      if (idle == nodes_.end()) return log;
      Assign(idle->first, part);
      log.push_back("job " + std::to_string(id) + " part " + std::to_string(part.task.index) +
                    " -> " + idle->first);
    }
  return log;
}

WorkerPool::JobProgress WorkerPool::Progress(int64_t job) const {
  MutexLock lock(mu_);
  JobProgress p;
  auto j = jobs_.find(job);
  if (j == jobs_.end()) return p;
  for (const auto& part : j->second.parts) {
    ++p.parts;
    if (part.state == pool::TaskState::kSucceeded)
      ++p.succeeded;
    else if (part.state == pool::TaskState::kFailed)
      p.failures.push_back("part " + std::to_string(part.task.index) + " on " + part.node + ": " +
                           part.error);
    else if (part.node.empty())
      ++p.unplaced;
    else
      ++p.running;
  }
  return p;
}

bool WorkerPool::IsCurrentAttempt(int64_t job, const std::string& attempt) const {
  MutexLock lock(mu_);
  return FindPart(job, attempt) != nullptr;
}

bool WorkerPool::PartSucceeded(int64_t job, int64_t index) const {
  MutexLock lock(mu_);
  auto j = jobs_.find(job);
  if (j == jobs_.end()) return false;
  for (const auto& p : j->second.parts)
    if (p.task.index == index) return p.state == pool::TaskState::kSucceeded;
  return false;
}

void WorkerPool::Release(int64_t job) {
  MutexLock lock(mu_);
  jobs_.erase(job);
  for (auto& [name, n] : nodes_)
    if (n.task && n.task->job == job) n.task.reset();
}

int64_t WorkerPool::StillRunning(int64_t job) const {
  MutexLock lock(mu_);
  int64_t n = 0;
  for (const auto& [name, node] : nodes_)
    n += !node.lost && node.reported_running && node.reported_job == job;
  return n;
}

std::vector<WorkerPool::NodeInfo> WorkerPool::Nodes() const {
  MutexLock lock(mu_);
  std::vector<NodeInfo> out;
  const auto now = Clock::now();
  for (const auto& [name, n] : nodes_) {
    NodeInfo i;
    i.name = name;
    i.address = n.address;
    i.threads = n.threads;
    i.last_seen_seconds = std::chrono::duration<double>(now - n.last_seen).count();
    i.state = n.lost ? "lost" : (n.task || n.reported_running) ? "busy" : "idle";
    if (n.task) {
      i.job = n.task->job;
      i.index = n.task->index;
    }
    out.push_back(std::move(i));
  }
  return out;
}

}  // namespace dnnd
