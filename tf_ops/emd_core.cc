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

// The two smallest values of cost[j] + price[j] and the argmin.
struct Best2 {
  float m1;
  float m2;
  int64_t j1;
};

Best2 ScanScalar(const float* cost, const float* price, int64_t len) {
  Best2 best{kInf, kInf, 0};
  for (int64_t j = 0; j < len; ++j) {
    const float v = cost[j] + price[j];
    if (v < best.m1) {
      best.m2 = best.m1;
      best.m1 = v;
      best.j1 = j;
    } else if (v < best.m2) {
      best.m2 = v;
    }
  }
  return best;
}

#ifdef EMD_HAVE_AVX_PATH
// Eight lanes each keep their own two smallest values; the lanes are merged
// at the end. len must be a multiple of 8 (rows are padded with +inf).
__attribute__((target("avx"))) Best2 ScanAvx(const float* cost,
                                             const float* price, int64_t len) {
  __m256 b1 = _mm256_set1_ps(kInf);
  __m256 b2 = b1;
  __m256 arg = _mm256_setzero_ps();
  __m256 index = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 step = _mm256_set1_ps(8.0f);
  for (int64_t j = 0; j < len; j += 8) {
    const __m256 v =
        _mm256_add_ps(_mm256_loadu_ps(cost + j), _mm256_loadu_ps(price + j));
    const __m256 less = _mm256_cmp_ps(v, b1, _CMP_LT_OQ);
    b2 = _mm256_min_ps(b2, _mm256_max_ps(b1, v));
    b1 = _mm256_min_ps(b1, v);
    arg = _mm256_or_ps(_mm256_and_ps(less, index), _mm256_andnot_ps(less, arg));
    index = _mm256_add_ps(index, step);
  }
  alignas(32) float l1[8], l2[8], la[8];
  _mm256_store_ps(l1, b1);
  _mm256_store_ps(l2, b2);
  _mm256_store_ps(la, arg);
  int best_lane = 0;
  for (int k = 1; k < 8; ++k) {
    if (l1[k] < l1[best_lane] ||
        (l1[k] == l1[best_lane] && la[k] < la[best_lane])) {
      best_lane = k;
    }
  }
  Best2 best{l1[best_lane], kInf, static_cast<int64_t>(la[best_lane])};
  for (int k = 0; k < 8; ++k) {
    best.m2 = std::min(best.m2, l2[k]);
    if (k != best_lane) best.m2 = std::min(best.m2, l1[k]);
  }
  return best;
}

// __builtin_cpu_init must run before __builtin_cpu_supports in a static
// initializer.
const bool kUseAvx = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx") != 0;
}();
#endif

Best2 Scan(const float* cost, const float* price, int64_t len) {
#ifdef EMD_HAVE_AVX_PATH
  if (kUseAvx) return ScanAvx(cost, price, len);
#endif
  return ScanScalar(cost, price, len);
}

// Scratch memory reused across the problems of one shard.
struct Workspace {
  std::vector<float> cost;     // n x stride, padded columns are +inf
  std::vector<float> price;    // stride, padded entries stay 0
  std::vector<float> row_min;  // n
  std::vector<int32_t> owner;  // object -> person, -1 when free
  std::vector<int32_t> queue;  // unassigned persons
};

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

// Diagonal of the bounding box of both clouds: the largest possible distance.
double Diagonal(const float* xyz1, const float* xyz2, int64_t n) {
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

double Solve(const float* xyz1, const float* xyz2, int64_t n, double tolerance,
             int32_t* match, Workspace* ws, AuctionStats* stats) {
  AuctionStats local;
  if (stats == nullptr) stats = &local;
  *stats = AuctionStats();
  if (n == 0) return 0.0;
  const double diagonal = Diagonal(xyz1, xyz2, n);
  if (n == 1 || diagonal == 0.0) {
    for (int64_t i = 0; i < n; ++i) match[i] = static_cast<int32_t>(i);
    return MatchedMean(xyz1, xyz2, n, match);
  }

  // Persons are the points of xyz1, objects those of xyz2; cost[i][j] is
  // their float32 distance. Rows are padded to a multiple of 8 with +inf.
  const int64_t stride = (n + 7) / 8 * 8;
  ws->cost.assign(n * stride, kInf);
  for (int64_t i = 0; i < n; ++i) {
    const float px = xyz1[3 * i], py = xyz1[3 * i + 1], pz = xyz1[3 * i + 2];
    float* row = ws->cost.data() + i * stride;
    for (int64_t j = 0; j < n; ++j) {
      const float dx = px - xyz2[3 * j];
      const float dy = py - xyz2[3 * j + 1];
      const float dz = pz - xyz2[3 * j + 2];
      row[j] = std::sqrt(dx * dx + dy * dy + dz * dz);
    }
  }
  ws->price.assign(stride, 0.0f);
  ws->row_min.assign(n, 0.0f);
  ws->owner.assign(n, -1);
  ws->queue.clear();
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
      const Best2 best = Scan(cost + i * stride, price, stride);
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
      ws->row_min[i] = Scan(row, price, stride).m1;
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
                    double tolerance, int32_t* match, AuctionStats* stats) {
  Workspace ws;
  return Solve(xyz1, xyz2, n, tolerance, match, &ws, stats);
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
