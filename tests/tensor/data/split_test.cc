// The splitter's arithmetic on plain label lists: every strategy partitions
// the samples, keeps its balance promises, and depends only on the seed.
#include "tensor/data/split.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace dnnd::data {
namespace {

// `per_class[c]` samples of class c, classes interleaved as in real data.
Dataset Labelled(const std::vector<int64_t>& per_class) {
  Dataset d;
  d.sample_shape = {1};
  d.type = SampleType::kFloat32;
  d.num_classes = static_cast<int32_t>(per_class.size());
  std::vector<int64_t> left = per_class;
  for (bool any = true; any;) {
    any = false;
    for (size_t c = 0; c < left.size(); ++c)
      if (left[c] > 0) {
        --left[c];
        any = true;
        d.labels.push_back(static_cast<int32_t>(c));
        d.f32.push_back(static_cast<float>(d.f32.size()));  // sample i holds the value i
      }
  }
  return d;
}

std::vector<std::vector<int64_t>> Split(const Dataset& d, SplitStrategy s, int64_t shards,
                                        uint64_t seed = 7, double alpha = 0.5) {
  auto r = SplitIndices(d, {.shards = shards, .strategy = s, .seed = seed, .alpha = alpha});
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<std::vector<int64_t>>{};
}

// Every index exactly once, each shard ascending.
void ExpectPartition(const std::vector<std::vector<int64_t>>& shards, int64_t n) {
  std::vector<int> seen(static_cast<size_t>(n), 0);
  for (const auto& s : shards) {
    EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
    for (int64_t i : s) ++seen.at(i);
  }
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[i], 1) << "sample " << i;
}

std::vector<int64_t> Histogram(const Dataset& d, const std::vector<int64_t>& shard) {
  std::vector<int64_t> h(static_cast<size_t>(d.num_classes), 0);
  for (int64_t i : shard) ++h[d.labels[i]];
  return h;
}

TEST(Split, IidIsASeededPartitionIntoNearlyEqualShards) {
  const Dataset d = Labelled({400, 300, 300, 1});
  auto a = Split(d, SplitStrategy::kIid, 3);
  ASSERT_EQ(a.size(), 3u);
  ExpectPartition(a, d.size());
  for (const auto& s : a) EXPECT_NEAR(static_cast<double>(s.size()), 1001.0 / 3, 1.0);
  EXPECT_EQ(a, Split(d, SplitStrategy::kIid, 3));
  EXPECT_NE(a, Split(d, SplitStrategy::kIid, 3, /*seed=*/8));
  // Shuffled, not contiguous: shard 0 is not simply the first third.
  EXPECT_GT(a[0].back(), 700);
}

TEST(Split, StratifiedSpreadsEveryClassEvenly) {
  const Dataset d = Labelled({100, 51, 7, 2, 0});
  auto shards = Split(d, SplitStrategy::kStratified, 4);
  ExpectPartition(shards, d.size());
  for (int c = 0; c < d.num_classes; ++c) {
    int64_t lo = INT64_MAX, hi = 0;
    for (const auto& s : shards) {
      lo = std::min(lo, Histogram(d, s)[c]);
      hi = std::max(hi, Histogram(d, s)[c]);
    }
    EXPECT_LE(hi - lo, 1) << "class " << c;
  }
  size_t lo = SIZE_MAX, hi = 0;
  for (const auto& s : shards) {
    lo = std::min(lo, s.size());
    hi = std::max(hi, s.size());
  }
  EXPECT_LE(hi - lo, 1u);
}

// The largest class's share of a shard, averaged over shards.
double MeanTopClassShare(const Dataset& d, const std::vector<std::vector<int64_t>>& shards) {
  double sum = 0;
  for (const auto& s : shards) {
    auto h = Histogram(d, s);
    sum +=
        static_cast<double>(*std::max_element(h.begin(), h.end())) / static_cast<double>(s.size());
  }
  return sum / static_cast<double>(shards.size());
}

TEST(Split, DirichletAlphaControlsTheLabelSkew) {
  const Dataset d = Labelled(std::vector<int64_t>(10, 500));
  auto skewed = Split(d, SplitStrategy::kDirichlet, 5, 7, 0.05);
  auto mild = Split(d, SplitStrategy::kDirichlet, 5, 7, 1000.0);
  ExpectPartition(skewed, d.size());
  ExpectPartition(mild, d.size());
  // alpha 0.05: a shard is mostly one or two classes; alpha 1000: close to
  // the uniform 10 %.
  EXPECT_GT(MeanTopClassShare(d, skewed), 0.4);
  EXPECT_LT(MeanTopClassShare(d, mild), 0.13);
  for (const auto& s : mild) EXPECT_NEAR(static_cast<double>(s.size()), 1000.0, 60.0);
  EXPECT_EQ(skewed, Split(d, SplitStrategy::kDirichlet, 5, 7, 0.05));
  // Tiny alphas draw gammas that underflow a double; the split still holds.
  ExpectPartition(Split(d, SplitStrategy::kDirichlet, 5, 7, 0.001), d.size());
}

TEST(Split, DirichletRedrawsUntilEveryShardHasItsMinimum) {
  const Dataset d = Labelled(std::vector<int64_t>(10, 100));
  auto r = SplitIndices(d, {.shards = 10,
                            .strategy = SplitStrategy::kDirichlet,
                            .seed = 1,
                            .alpha = 0.1,
                            .min_shard_samples = 20});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (const auto& s : *r) EXPECT_GE(s.size(), 20u);
  auto impossible = SplitIndices(d, {.shards = 10,
                                     .strategy = SplitStrategy::kDirichlet,
                                     .seed = 1,
                                     .alpha = 0.001,
                                     .min_shard_samples = 90,
                                     .max_draws = 20});
  ASSERT_FALSE(impossible.ok());
  EXPECT_NE(impossible.status().message().find("raise splitter.alpha"), std::string::npos)
      << impossible.status().message();
}

TEST(Split, ErrorsNameTheProblem) {
  const Dataset d = Labelled({2, 1});
  auto few = SplitIndices(d, {.shards = 4});
  ASSERT_FALSE(few.ok());
  EXPECT_NE(few.status().message().find("3 samples, fewer than the 4 shards"), std::string::npos)
      << few.status().message();
  Dataset unlabelled = d;
  unlabelled.labels.clear();
  EXPECT_TRUE(SplitIndices(unlabelled, {.shards = 2}).ok());  // iid needs no labels
  auto strat = SplitIndices(unlabelled, {.shards = 2, .strategy = SplitStrategy::kStratified});
  ASSERT_FALSE(strat.ok());
  EXPECT_NE(strat.status().message().find("needs class labels"), std::string::npos);
  EXPECT_FALSE(ParseSplitStrategy("random").ok());
}

TEST(Dataset, SelectGathersSamplesAndLabelsInOrder) {
  const Dataset d = Labelled({3, 3});
  Dataset s = d.Select({4, 0, 5});
  EXPECT_EQ(s.size(), 3);
  EXPECT_EQ(s.f32, (std::vector<float>{4, 0, 5}));
  EXPECT_EQ(s.labels, (std::vector<int32_t>{d.labels[4], d.labels[0], d.labels[5]}));
  EXPECT_EQ(s.num_classes, 2);
}

}  // namespace
}  // namespace dnnd::data
