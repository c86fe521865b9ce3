#include "tensor/data/split.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

namespace dnnd::data {
namespace {

// Seeded draws whose results depend only on the seed (see split.h).
class Draws {
 public:
  explicit Draws(uint64_t seed) {
    std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), 0x5317u};
    rng_.seed(seq);
  }
  // In [0, n); the modulo bias is below 2^-40 for any dataset size.
  uint64_t Below(uint64_t n) { return rng_() % n; }
  // In (0, 1): never 0, so logarithms are finite.
  double Uniform() { return (static_cast<double>(rng_() >> 11) + 0.5) * 0x1.0p-53; }
  // Standard normal (Box-Muller).
  double Normal() {
    return std::sqrt(-2.0 * std::log(Uniform())) * std::cos(2.0 * M_PI * Uniform());
  }
  // log of a Gamma(a, 1) draw (Marsaglia & Tsang 2000). For a < 1 it uses
  // Gamma(a) = Gamma(a + 1) * U^(1/a), which underflows to 0 for small a;
  // staying in logs keeps tiny alphas exact.
  double LogGamma(double a) {
    if (a < 1.0) return LogGamma(a + 1.0) + std::log(Uniform()) / a;
    const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      const double x = Normal();
      double v = 1.0 + c * x;
      if (v <= 0.0) continue;
      v = v * v * v;
      const double u = Uniform();
      if (u < 1.0 - 0.0331 * x * x * x * x ||
          std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v)))
        return std::log(d * v);
    }
  }
  // Fisher-Yates with our own index draw (as the DataLoader does).
  void Shuffle(std::vector<int64_t>& v) {
    for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i)
      std::swap(v[i], v[Below(static_cast<uint64_t>(i + 1))]);
  }
  // Proportions drawn from a symmetric Dirichlet(alpha) over n parts.
  std::vector<double> Dirichlet(double alpha, int64_t n) {
    std::vector<double> logs(static_cast<size_t>(n));
    for (auto& l : logs) l = LogGamma(alpha);
    const double top = *std::max_element(logs.begin(), logs.end());
    double sum = 0;
    for (auto& l : logs) sum += (l = std::exp(l - top));
    for (auto& l : logs) l /= sum;
    return logs;
  }

 private:
  std::mt19937_64 rng_;
};

// The indices of each class, in source order.
std::vector<std::vector<int64_t>> ByClass(const Dataset& set) {
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(set.num_classes));
  for (size_t i = 0; i < set.labels.size(); ++i)
    by_class[set.labels[i]].push_back(static_cast<int64_t>(i));
  return by_class;
}

std::vector<std::vector<int64_t>> Iid(int64_t n, int64_t shards, Draws& draws) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  draws.Shuffle(order);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(shards));
  for (int64_t k = 0; k < shards; ++k)
    out[k].assign(order.begin() + k * n / shards, order.begin() + (k + 1) * n / shards);
  return out;
}

// Classes one after another, each shuffled, dealt round-robin; the deal goes
// on where the previous class stopped, so shard sizes stay within one too.
std::vector<std::vector<int64_t>> Stratified(const Dataset& set, int64_t shards, Draws& draws) {
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(shards));
  int64_t next = 0;
  for (auto& members : ByClass(set)) {
    draws.Shuffle(members);
    for (int64_t i : members) out[next++ % shards].push_back(i);
  }
  return out;
}

Result<std::vector<std::vector<int64_t>>> Dirichlet(const Dataset& set, const SplitOptions& o,
                                                    Draws& draws) {
  auto by_class = ByClass(set);
  for (int attempt = 0; attempt < o.max_draws; ++attempt) {
    std::vector<std::vector<int64_t>> out(static_cast<size_t>(o.shards));
    for (auto members : by_class) {
      draws.Shuffle(members);
      const std::vector<double> p = draws.Dirichlet(o.alpha, o.shards);
      // Cut at rounded cumulative proportions: the pieces add up exactly.
      const double n = static_cast<double>(members.size());
      double cumulative = 0;
      size_t begin = 0;
      for (int64_t k = 0; k < o.shards; ++k) {
        cumulative += p[k];
        const size_t end =
            k + 1 == o.shards
                ? members.size()
                : std::min(members.size(), static_cast<size_t>(std::llround(cumulative * n)));
        out[k].insert(out[k].end(), members.begin() + begin,
                      members.begin() + std::max(begin, end));
        begin = std::max(begin, end);
      }
    }
    bool enough = true;
    for (const auto& shard : out)
      enough &= static_cast<int64_t>(shard.size()) >= o.min_shard_samples;
    if (enough) return out;
  }
  return InvalidArgument("no Dirichlet(alpha = " + std::to_string(o.alpha) + ") draw in " +
                         std::to_string(o.max_draws) + " gave each of " + std::to_string(o.shards) +
                         " shards at least " + std::to_string(o.min_shard_samples) +
                         " samples; raise splitter.alpha or lower splitter.min_shard_samples");
}

}  // namespace

Result<SplitStrategy> ParseSplitStrategy(const std::string& name) {
  if (name == "iid") return SplitStrategy::kIid;
  if (name == "stratified") return SplitStrategy::kStratified;
  if (name == "dirichlet") return SplitStrategy::kDirichlet;
  return InvalidArgument("unknown split strategy '" + name +
                         "' (expected iid, stratified or dirichlet)");
}

const char* SplitStrategyName(SplitStrategy s) {
  switch (s) {
    case SplitStrategy::kIid:
      return "iid";
    case SplitStrategy::kStratified:
      return "stratified";
    case SplitStrategy::kDirichlet:
      return "dirichlet";
  }
  return "?";
}

Result<std::vector<std::vector<int64_t>>> SplitIndices(const Dataset& set, const SplitOptions& o) {
  const int64_t n = set.size();
  if (o.shards < 1)
    return InvalidArgument("the number of shards must be >= 1; got " + std::to_string(o.shards));
  if (n < o.shards)
    return InvalidArgument("the dataset has " + std::to_string(n) + " samples, fewer than the " +
                           std::to_string(o.shards) + " shards asked for");
  if (o.strategy != SplitStrategy::kIid && static_cast<int64_t>(set.labels.size()) != n)
    return InvalidArgument(std::string("the ") + SplitStrategyName(o.strategy) +
                           " strategy needs class labels, and this dataset has none");
  if (o.strategy != SplitStrategy::kIid)
    for (size_t i = 0; i < set.labels.size(); ++i)
      if (set.labels[i] < 0 || set.labels[i] >= set.num_classes)
        return InvalidArgument("label " + std::to_string(set.labels[i]) + " of sample " +
                               std::to_string(i) + " is outside [0, " +
                               std::to_string(set.num_classes) + ")");
  if (o.strategy == SplitStrategy::kDirichlet) {
    if (!(o.alpha > 0) || !std::isfinite(o.alpha))
      return InvalidArgument("dirichlet alpha must be a positive number; got " +
                             std::to_string(o.alpha));
    if (o.min_shard_samples > n / o.shards)
      return InvalidArgument(std::to_string(o.shards) + " shards of at least " +
                             std::to_string(o.min_shard_samples) +
                             " samples need more than the dataset's " + std::to_string(n));
  }
  Draws draws(o.seed);
  std::vector<std::vector<int64_t>> shards;
  switch (o.strategy) {
    case SplitStrategy::kIid:
      shards = Iid(n, o.shards, draws);
      break;
    case SplitStrategy::kStratified:
      shards = Stratified(set, o.shards, draws);
      break;
    case SplitStrategy::kDirichlet: {
      DNND_ASSIGN_OR_RETURN(shards, Dirichlet(set, o, draws));
      break;
    }
  }
  for (auto& s : shards) std::sort(s.begin(), s.end());
  return shards;
}

}  // namespace dnnd::data
