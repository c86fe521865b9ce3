// Which sample of a dataset goes to which shard: the splitter's arithmetic,
// kept apart from its file handling so it can be tested on plain label lists.
//
//   iid         a seeded shuffle cut into `shards` parts whose sizes differ by
//               at most one
//   stratified  each class spread over the shards so that every shard's count
//               of every class differs from the others' by at most one (and
//               shard sizes by at most one)
//   dirichlet   non-iid label skew (Hsu et al. 2019, "Measuring the effects of
//               non-identical data distribution"): for each class, shard
//               proportions are drawn from Dirichlet(alpha, ..., alpha) and the
//               class's shuffled samples are cut by them. Small alpha gives
//               shards dominated by a few classes; large alpha approaches iid.
//               Draws are repeated until every shard has min_shard_samples.
//
// Every sample lands in exactly one shard; each shard's indices are ascending
// (a shard keeps the source's order; training shuffles anyway). The draws use
// mt19937_64 with our own uniform, normal and gamma transforms: std::
// distributions are implementation-defined, and the same seed must give the
// same shards whatever standard library built dnnd.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "tensor/data/dataset.h"

namespace dnnd::data {

enum class SplitStrategy { kIid, kStratified, kDirichlet };

struct SplitOptions {
  int64_t shards = 2;
  SplitStrategy strategy = SplitStrategy::kIid;
  uint64_t seed = 42;
  double alpha = 0.5;             // dirichlet
  int64_t min_shard_samples = 1;  // dirichlet
  int max_draws = 1000;           // dirichlet: attempts before giving up
};

// "iid" | "stratified" | "dirichlet".
Result<SplitStrategy> ParseSplitStrategy(const std::string& name);
const char* SplitStrategyName(SplitStrategy s);

// Shard k's sample indices into `set`. Errors: fewer samples than shards,
// stratified/dirichlet on a dataset without class labels, a dirichlet split
// that found no draw meeting min_shard_samples.
Result<std::vector<std::vector<int64_t>>> SplitIndices(const Dataset& set,
                                                       const SplitOptions& options);

}  // namespace dnnd::data
