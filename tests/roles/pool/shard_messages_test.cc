// The shard service's typed messages (roles/pool_protocol.h): what both ends
// encode and decode, and what decoding refuses before the service trusts it.
#include <gtest/gtest.h>

#include "roles/pool/protocol.h"

namespace dnnd {
namespace {

using pool::ShardReply;
using pool::ShardRequest;

TEST(PoolShardMessages, RequestRoundTrips) {
  ShardRequest q{"fm", ShardRequest::Split::kTest, 1, 3, 500};
  auto back = ShardRequest::Decode(q.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->dataset, "fm");
  EXPECT_EQ(back->split, ShardRequest::Split::kTest);
  EXPECT_EQ(back->index, 1);
  EXPECT_EQ(back->count, 3);
  EXPECT_EQ(back->limit, 500);
  EXPECT_EQ(q.Encode().type, pool::kShard);
}

TEST(PoolShardMessages, RequestDecodingRefusesWhatTheServiceWouldTrust) {
  auto refused = [](auto change) {
    wire::Message m = ShardRequest{"fm", ShardRequest::Split::kTrain, 0, 2, 0}.Encode();
    change(m);
    auto r = ShardRequest::Decode(m);
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(refused([](wire::Message& m) { m.fields.SetInt("index", 2); }).find("part 2 of 2"),
            std::string::npos);
  EXPECT_NE(refused([](wire::Message& m) { m.fields.SetInt("count", 0); }), "");
  EXPECT_NE(refused([](wire::Message& m) { m.fields.SetInt("limit", -1); }).find("limit"),
            std::string::npos);
  EXPECT_NE(refused([](wire::Message& m) { m.fields.SetString("split", "val"); }).find("'val'"),
            std::string::npos);
  EXPECT_EQ(refused([](wire::Message&) {}), "");
}

TEST(PoolShardMessages, ReplyCarriesTheSamplesOrNone) {
  data::Dataset d;
  d.type = data::SampleType::kUint8;
  d.sample_shape = {2};
  d.u8 = {1, 2, 3, 4};
  d.labels = {0, 1};
  d.num_classes = 2;
  ShardReply reply;
  reply.set = d;
  auto back = ShardReply::Decode(reply.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_TRUE(back->set);
  EXPECT_EQ(back->set->size(), 2);
  EXPECT_EQ(back->set->labels, d.labels);
  const data::Dataset empty = d.EmptyLike();
  auto none = ShardReply::Decode(ShardReply{}.Encode(&empty));
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->set);
  // Labels that do not match the samples are refused, not copied.
  wire::Message bad = reply.Encode();
  bad.tensors.back().shape = {3};
  EXPECT_FALSE(ShardReply::Decode(bad).ok());
}

}  // namespace
}  // namespace dnnd
