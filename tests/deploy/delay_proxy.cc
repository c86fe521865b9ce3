// A TCP proxy that adds latency: every byte is forwarded half a round trip
// after it arrived, in each direction, order kept and without holding back
// what arrives meanwhile (this kernel has no netem). Test harness only
// (tests/deploy/netns_cluster.py); native so the proxy never becomes the
// bottleneck it measures.
//
//   delay_proxy <listen ip:port> <target ip:port> <added round trip ms>
//   delay_proxy <listen ip:port> transparent <added round trip ms>
//
// `transparent` forwards each connection to where it was headed before an
// iptables REDIRECT rule sent it here (SO_ORIGINAL_DST): run in a router
// namespace, it delays every TCP connection that crosses it, whatever the
// ports (PyTorch's gloo picks its own).
#include <arpa/inet.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

sockaddr_in Parse(const std::string& hostport) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  const size_t colon = hostport.rfind(':');
  a.sin_port = htons(static_cast<uint16_t>(std::atoi(hostport.c_str() + colon + 1)));
  if (inet_pton(AF_INET, hostport.substr(0, colon).c_str(), &a.sin_addr) != 1) {
    std::fprintf(stderr, "delay_proxy: bad address %s\n", hostport.c_str());
    std::exit(2);
  }
  return a;
}

// One direction: a reader stamps chunks, a writer sends each when due.
void Pump(int from, int to, Clock::duration half) {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<Clock::time_point, std::vector<char>>> queue;
  bool done = false;
  std::thread writer([&] {
    for (;;) {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return !queue.empty() || done; });
      if (queue.empty()) break;
      auto [due, data] = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      std::this_thread::sleep_until(due);
      for (size_t off = 0; off < data.size();) {
        const ssize_t n = send(to, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return;
        off += static_cast<size_t>(n);
      }
    }
    shutdown(to, SHUT_WR);
  });
  std::vector<char> buf(1 << 20);
  for (;;) {
    const ssize_t n = recv(from, buf.data(), buf.size(), 0);
    std::lock_guard lock(mu);
    if (n <= 0) {
      done = true;
      cv.notify_all();
      break;
    }
    queue.emplace_back(Clock::now() + half, std::vector<char>(buf.begin(), buf.begin() + n));
    cv.notify_all();
  }
  writer.join();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr,
                 "usage: delay_proxy <listen ip:port> <target ip:port | transparent> <added "
                 "round trip ms>\n");
    return 2;
  }
  const bool transparent = std::string(argv[2]) == "transparent";
  const sockaddr_in listen_at = Parse(argv[1]);
  const sockaddr_in fixed_target = transparent ? sockaddr_in{} : Parse(argv[2]);
  const auto half = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(std::atof(argv[3]) / 2));
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(listener, reinterpret_cast<const sockaddr*>(&listen_at), sizeof listen_at) != 0 ||
      listen(listener, 64) != 0) {
    std::perror("delay_proxy: bind/listen");
    return 1;
  }
  for (;;) {
    const int client = accept(listener, nullptr, nullptr);
    if (client < 0) {  // e.g. out of descriptors: do not spin (it may run SCHED_FIFO)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    sockaddr_in target = fixed_target;
    socklen_t len = sizeof target;
    if (transparent && getsockopt(client, SOL_IP, SO_ORIGINAL_DST, &target, &len) != 0) {
      std::perror("delay_proxy: SO_ORIGINAL_DST");
      close(client);
      continue;
    }
    std::thread([client, target, half] {
      const int upstream = socket(AF_INET, SOCK_STREAM, 0);
      const int one = 1;
      setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (connect(upstream, reinterpret_cast<const sockaddr*>(&target), sizeof target) == 0) {
        std::thread back([&] { Pump(upstream, client, half); });
        Pump(client, upstream, half);
        back.join();
      }
      close(upstream);
      close(client);
    }).detach();
  }
}
