// CPU reference of the EMD auction; see emd_core.h for the algorithm's bound.
#include "emd_core.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define EMD_HAVE_AVX_PATH 1
#endif

namespace emd {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// Each phase divides epsilon by this factor (Bertsekas suggests 4 to 10).
constexpr double kEpsilonShrink = 8.0;
// Relative rounding of one float32 addition, used to keep the dual lower
// bound a true lower bound despite float32 arithmetic.
constexpr double kFloatRounding = 1.0 / (1 << 24);

// A full scan of a row splits it into kLanes interleaved lanes (two AVX
// registers) and keeps the two smallest cost + price of every lane. The lane
// minima become the person's cached candidates and the smallest lane
// runner-up the threshold: every other object costs at least that much, and
// prices only rise, so while the two best cached values stay at or below the
// threshold they are the exact best two of the whole row and a bid needs no
// new scan.
constexpr int kLanes = 16;

struct Best2 {
  float m1;  // smallest cost + price
  float m2;  // second smallest
  int64_t j1;
};

struct Candidates {
  int32_t object[kLanes];
  float cost[kLanes];
  float threshold;
};

struct Lanes {
  float best[kLanes];
  float runner_up[kLanes];
  int32_t arg[kLanes];
};

#ifdef EMD_HAVE_AVX_PATH
// len is a multiple of kLanes (rows are padded with +inf).
__attribute__((target("avx"))) void LanesAvx(const float* cost,
                                             const float* price, int64_t len,
                                             Lanes* lanes) {
  __m256 b1[2], b2[2], arg[2], index[2];
  for (int h = 0; h < 2; ++h) {
    b1[h] = b2[h] = _mm256_set1_ps(kInf);
    arg[h] = _mm256_setzero_ps();
    index[h] = _mm256_add_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7),
                             _mm256_set1_ps(8.0f * h));
  }
  const __m256 step = _mm256_set1_ps(static_cast<float>(kLanes));
  for (int64_t j = 0; j < len; j += kLanes) {
    for (int h = 0; h < 2; ++h) {
      const __m256 v = _mm256_add_ps(_mm256_loadu_ps(cost + j + 8 * h),
                                     _mm256_loadu_ps(price + j + 8 * h));
      const __m256 less = _mm256_cmp_ps(v, b1[h], _CMP_LT_OQ);
      b2[h] = _mm256_min_ps(b2[h], _mm256_max_ps(b1[h], v));
      b1[h] = _mm256_min_ps(b1[h], v);
      // A bitwise select; GCC lowers _mm256_blendv_ps here to scalar code.
      arg[h] = _mm256_or_ps(_mm256_and_ps(less, index[h]),
                            _mm256_andnot_ps(less, arg[h]));
      index[h] = _mm256_add_ps(index[h], step);
    }
  }
  alignas(32) float arg_values[kLanes];
  for (int h = 0; h < 2; ++h) {
    _mm256_storeu_ps(lanes->best + 8 * h, b1[h]);
    _mm256_storeu_ps(lanes->runner_up + 8 * h, b2[h]);
    _mm256_store_ps(arg_values + 8 * h, arg[h]);
  }
  for (int k = 0; k < kLanes; ++k) {
    lanes->arg[k] = static_cast<int32_t>(arg_values[k]);
  }
}

// __builtin_cpu_init must run before __builtin_cpu_supports in a static
// initializer.
const bool kUseAvx = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx") != 0;
}();
#endif

void LanesScalar(const float* cost, const float* price, int64_t len,
                 Lanes* lanes) {
  for (int k = 0; k < kLanes; ++k) {
    lanes->best[k] = lanes->runner_up[k] = kInf;
    lanes->arg[k] = 0;
  }
  for (int64_t j = 0; j < len; ++j) {
    const float v = cost[j] + price[j];
    const int k = static_cast<int>(j % kLanes);
    if (v < lanes->best[k]) {
      lanes->runner_up[k] = lanes->best[k];
      lanes->best[k] = v;
      lanes->arg[k] = static_cast<int32_t>(j);
    } else if (v < lanes->runner_up[k]) {
      lanes->runner_up[k] = v;
    }
  }
}

// Full scan of one row: returns the best two and refreshes the cache unless
// it is null.
Best2 Refresh(const float* cost, const float* price, int64_t len,
              Candidates* cache) {
  Lanes lanes;
#ifdef EMD_HAVE_AVX_PATH
  if (kUseAvx) {
    LanesAvx(cost, price, len, &lanes);
  } else {
    LanesScalar(cost, price, len, &lanes);
  }
#else
  LanesScalar(cost, price, len, &lanes);
#endif
  int first = 0;
  for (int k = 1; k < kLanes; ++k) {
    if (lanes.best[k] < lanes.best[first] ||
        (lanes.best[k] == lanes.best[first] && lanes.arg[k] < lanes.arg[first])) {
      first = k;
    }
  }
  Best2 best{lanes.best[first], kInf, lanes.arg[first]};
  float threshold = kInf;
  for (int k = 0; k < kLanes; ++k) {
    threshold = std::min(threshold, lanes.runner_up[k]);
    if (k != first) best.m2 = std::min(best.m2, lanes.best[k]);
  }
  best.m2 = std::min(best.m2, threshold);
  if (cache != nullptr) {
    cache->threshold = threshold;
    for (int k = 0; k < kLanes; ++k) {
      cache->object[k] = lanes.arg[k];
      // Lanes holding only padding stay +inf.
      cache->cost[k] = lanes.best[k] < kInf ? cost[lanes.arg[k]] : kInf;
    }
  }
  return best;
}

// The best two from the cache alone; false when they may be stale.
bool FromCache(const Candidates& cache, const float* price, Best2* best) {
  best->m1 = best->m2 = kInf;
  best->j1 = cache.object[0];
  for (int k = 0; k < kLanes; ++k) {
    const float v = cache.cost[k] + price[cache.object[k]];
    if (v < best->m1) {
      best->m2 = best->m1;
      best->m1 = v;
      best->j1 = cache.object[k];
    } else if (v < best->m2) {
      best->m2 = v;
    }
  }
  return best->m2 <= cache.threshold;
}

// Rows shorter than this stay in L2 cache, where a full scan is as cheap as
// consulting the candidates (measured on 256 and 1024 points).
constexpr int64_t kCacheMinLength = 512;

Best2 BestTwo(const float* cost, const float* price, int64_t len,
              Candidates* cache) {
  if (len < kCacheMinLength) return Refresh(cost, price, len, nullptr);
  Best2 best;
  if (FromCache(*cache, price, &best)) return best;
  return Refresh(cost, price, len, cache);
}

// Scratch memory reused across the problems of one shard.
struct Workspace {
  std::vector<float> cost;     // n x stride, padded columns are +inf
  std::vector<float> price;    // stride, padded entries stay 0
  std::vector<float> row_min;  // n
  std::vector<int32_t> owner;  // object -> person, -1 when free
  std::vector<int32_t> queue;  // unassigned persons
  std::vector<Candidates> cache;  // n
  std::vector<float> xyz2_soa;    // 3 x stride, coordinates of xyz2
};

#ifdef EMD_HAVE_AVX_PATH
__attribute__((target("avx"))) void CostRowsAvx(const float* xyz1, int64_t n,
                                                int64_t stride,
                                                const float* xyz2_soa,
                                                float* cost) {
  const float* x2 = xyz2_soa;
  const float* y2 = xyz2_soa + stride;
  const float* z2 = xyz2_soa + 2 * stride;
  for (int64_t i = 0; i < n; ++i) {
    const __m256 px = _mm256_set1_ps(xyz1[3 * i]);
    const __m256 py = _mm256_set1_ps(xyz1[3 * i + 1]);
    const __m256 pz = _mm256_set1_ps(xyz1[3 * i + 2]);
    float* row = cost + i * stride;
    for (int64_t j = 0; j < stride; j += 8) {
      const __m256 dx = _mm256_sub_ps(px, _mm256_loadu_ps(x2 + j));
      const __m256 dy = _mm256_sub_ps(py, _mm256_loadu_ps(y2 + j));
      const __m256 dz = _mm256_sub_ps(pz, _mm256_loadu_ps(z2 + j));
      const __m256 squared = _mm256_add_ps(
          _mm256_add_ps(_mm256_mul_ps(dx, dx), _mm256_mul_ps(dy, dy)),
          _mm256_mul_ps(dz, dz));
      _mm256_storeu_ps(row + j, _mm256_sqrt_ps(squared));
    }
  }
}
#endif

// cost[i][j] = float32 distance of xyz1[i] and xyz2[j], rows padded with +inf
// to `stride` columns. The same float operations (no contraction into FMA)
// as the scalar path, so both give identical costs.
void BuildCost(const float* xyz1, const float* xyz2, int64_t n,
               int64_t stride, Workspace* ws) {
  ws->cost.resize(n * stride);
  float* cost = ws->cost.data();
#ifdef EMD_HAVE_AVX_PATH
  if (kUseAvx) {
    ws->xyz2_soa.assign(3 * stride, 0.0f);
    for (int64_t j = 0; j < n; ++j) {
      for (int d = 0; d < 3; ++d) ws->xyz2_soa[d * stride + j] = xyz2[3 * j + d];
    }
    CostRowsAvx(xyz1, n, stride, ws->xyz2_soa.data(), cost);
    for (int64_t i = 0; i < n; ++i) {
      std::fill(cost + i * stride + n, cost + (i + 1) * stride, kInf);
    }
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) {
    const float px = xyz1[3 * i], py = xyz1[3 * i + 1], pz = xyz1[3 * i + 2];
    float* row = cost + i * stride;
    for (int64_t j = 0; j < n; ++j) {
      const float dx = px - xyz2[3 * j];
      const float dy = py - xyz2[3 * j + 1];
      const float dz = pz - xyz2[3 * j + 2];
      row[j] = std::sqrt(dx * dx + dy * dy + dz * dz);
    }
    std::fill(row + n, row + stride, kInf);
  }
}

double MatchedMean(const float* xyz1, const float* xyz2, int64_t n,
                   const int32_t* match) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float* p = xyz1 + 3 * i;
    const float* q = xyz2 + 3 * static_cast<int64_t>(match[i]);
    const double dx = static_cast<double>(p[0]) - q[0];
    const double dy = static_cast<double>(p[1]) - q[1];
    const double dz = static_cast<double>(p[2]) - q[2];
    sum += std::sqrt(dx * dx + dy * dy + dz * dz);
  }
  return sum / static_cast<double>(n);
}

}  // namespace

double BoundingBoxDiagonal(const float* xyz1, const float* xyz2, int64_t n) {
  double lo[3], hi[3];
  for (int d = 0; d < 3; ++d) lo[d] = hi[d] = xyz1[d];
  for (const float* cloud : {xyz1, xyz2}) {
    for (int64_t i = 0; i < n; ++i) {
      for (int d = 0; d < 3; ++d) {
        lo[d] = std::min(lo[d], static_cast<double>(cloud[3 * i + d]));
        hi[d] = std::max(hi[d], static_cast<double>(cloud[3 * i + d]));
      }
    }
  }
  return std::sqrt((hi[0] - lo[0]) * (hi[0] - lo[0]) +
                   (hi[1] - lo[1]) * (hi[1] - lo[1]) +
                   (hi[2] - lo[2]) * (hi[2] - lo[2]));
}

namespace {

bool AllFinite(const float* xyz1, const float* xyz2, int64_t n) {
  for (int64_t k = 0; k < 3 * n; ++k) {
    if (!std::isfinite(xyz1[k]) || !std::isfinite(xyz2[k])) return false;
  }
  return true;
}

double Solve(const float* xyz1, const float* xyz2, int64_t n, double tolerance,
             int32_t* match, Workspace* ws, AuctionStats* stats) {
  AuctionStats local;
  if (stats == nullptr) stats = &local;
  *stats = AuctionStats();
  if (n == 0) return 0.0;
  // A NaN or inf coordinate has no optimum (and NaN beside inf never ends
  // the auction): the distance is NaN, so the loss shows it.
  if (!AllFinite(xyz1, xyz2, n)) {
    for (int64_t i = 0; i < n; ++i) match[i] = static_cast<int32_t>(i);
    return std::numeric_limits<double>::quiet_NaN();
  }
  const double diagonal = BoundingBoxDiagonal(xyz1, xyz2, n);
  if (n == 1 || diagonal == 0.0) {
    for (int64_t i = 0; i < n; ++i) match[i] = static_cast<int32_t>(i);
    return MatchedMean(xyz1, xyz2, n, match);
  }

  // Persons are the points of xyz1, objects those of xyz2; cost[i][j] is
  // their float32 distance. Rows are padded to a multiple of kLanes with +inf.
  const int64_t stride = (n + kLanes - 1) / kLanes * kLanes;
  BuildCost(xyz1, xyz2, n, stride, ws);
  ws->price.assign(stride, 0.0f);
  ws->row_min.assign(n, 0.0f);
  ws->owner.assign(n, -1);
  ws->queue.clear();
  // An empty cache (+inf costs, -inf threshold) forces the first full scan.
  Candidates empty;
  std::fill(empty.object, empty.object + kLanes, 0);
  std::fill(empty.cost, empty.cost + kLanes, kInf);
  empty.threshold = -kInf;
  ws->cache.assign(n, empty);
  Candidates* cache = ws->cache.data();
  for (int64_t i = 0; i < n; ++i) match[i] = -1;
  float* price = ws->price.data();
  const float* cost = ws->cost.data();

  const double min_epsilon = kMinEpsilonFraction * diagonal;
  double epsilon = std::max(diagonal / 32.0, min_epsilon);
  while (true) {
    // Gauss-Seidel bidding: one unassigned person at a time bids for its
    // best object, raising the price so that it stays epsilon-happy.
    const float eps = static_cast<float>(epsilon);
    for (int64_t i = 0; i < n; ++i) {
      if (match[i] < 0) ws->queue.push_back(static_cast<int32_t>(i));
    }
    while (!ws->queue.empty()) {
      const int32_t i = ws->queue.back();
      ws->queue.pop_back();
      const Best2 best = BestTwo(cost + i * stride, price, stride, cache + i);
      const int64_t j = best.j1;
      float raised = price[j] + ((best.m2 - best.m1) + eps);
      if (!(raised > price[j])) raised = std::nextafter(price[j], kInf);
      price[j] = raised;
      const int32_t previous = ws->owner[j];
      ws->owner[j] = i;
      match[i] = static_cast<int32_t>(j);
      if (previous >= 0) {
        match[previous] = -1;
        ws->queue.push_back(previous);
      }
      ++stats->bids;
    }
    ++stats->phases;

    // Certificate: for any bijection s, sum_i c[i][s(i)] =
    // sum_i (c[i][s(i)] + p[s(i)]) - sum_j p[j] >= sum_i min_j (c + p) -
    // sum_j p[j]. The float32 minimum is deflated by one rounding.
    double primal = 0.0, row_min_sum = 0.0, price_sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const float* row = cost + i * stride;
      primal += row[match[i]];
      ws->row_min[i] = BestTwo(row, price, stride, cache + i).m1;
      row_min_sum += ws->row_min[i] / (1.0 + kFloatRounding);
      price_sum += price[i];
    }
    const double lower_bound = row_min_sum - price_sum;
    stats->primal = primal;
    stats->lower_bound = lower_bound;
    if (primal - lower_bound <= tolerance * lower_bound ||
        epsilon <= min_epsilon) {
      break;
    }

    // Next phase: keep the assignments that satisfy epsilon-complementary
    // slackness for the smaller epsilon, free the others.
    epsilon = std::max(epsilon / kEpsilonShrink, min_epsilon);
    const float next_eps = static_cast<float>(epsilon);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t j = match[i];
      if (cost[i * stride + j] + price[j] > ws->row_min[i] + next_eps) {
        ws->owner[j] = -1;
        match[i] = -1;
      }
    }
  }
  return MatchedMean(xyz1, xyz2, n, match);
}

}  // namespace

double SolveAuction(const float* xyz1, const float* xyz2, int64_t n,
                    double tolerance, int32_t* match, AuctionStats* stats,
                    float* price) {
  Workspace ws;
  const double distance = Solve(xyz1, xyz2, n, tolerance, match, &ws, stats);
  if (price != nullptr) {
    // ws.price holds this problem's prices only when its auction ran.
    const bool auction_ran = static_cast<int64_t>(ws.price.size()) >= n;
    for (int64_t j = 0; j < n; ++j) price[j] = auction_ran ? ws.price[j] : 0.0f;
  }
  return distance;
}

void SolveAuctionBatch(const float* xyz1, const float* xyz2, int64_t batch,
                       int64_t n, double tolerance, float* dist,
                       int32_t* match, const ParallelFor& parallel_for) {
  parallel_for(batch, [&](int64_t begin, int64_t end) {
    Workspace ws;
    for (int64_t b = begin; b < end; ++b) {
      dist[b] = static_cast<float>(Solve(xyz1 + b * n * 3, xyz2 + b * n * 3,
                                         n, tolerance, match + b * n, &ws,
                                         nullptr));
    }
  });
}

}  // namespace emd
