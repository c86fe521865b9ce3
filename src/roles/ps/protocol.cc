#include "roles/ps/protocol.h"

#include <algorithm>

namespace dnnd::ps {

int64_t Partition::ServerElements(int server) const {
  int64_t n = 0;
  for (const ShardPiece& p : pieces[server]) n += p.length;
  return n;
}

Partition PartitionParameters(const std::vector<std::pair<std::string, Shape>>& params,
                              int servers) {
  Partition part;
  part.servers = std::max(1, servers);
  part.pieces.resize(part.servers);
  for (const auto& [name, shape] : params) part.total_elements += ShapeNumel(shape);
  // Server s owns the flat range [bound(s), bound(s+1)).
  auto bound = [&](int s) { return part.total_elements * s / part.servers; };
  int64_t flat = 0;
  for (const auto& [name, shape] : params) {
    const int64_t n = ShapeNumel(shape);
    int64_t done = 0;
    while (done < n) {
      const int64_t at = flat + done;
      int s = 0;
      while (s + 1 < part.servers && bound(s + 1) <= at) ++s;
      const int64_t take = std::min(n - done, bound(s + 1) - at);
      part.pieces[s].push_back({name, done, take});
      done += take;
    }
    flat += n;
  }
  return part;
}

}  // namespace dnnd::ps
