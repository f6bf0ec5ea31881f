// Earth Mover's Distance between equal-size 3D point clouds (SPEC Eq. 9):
// the mean Euclidean distance under the best bijection, found by an auction
// algorithm with epsilon-scaling and a duality-gap stopping rule.
//
// Plain C++ (no TensorFlow headers) so that the op library and the
// standalone GPU harness compile the same reference code.
#ifndef TF_OPS_EMD_CORE_H_
#define TF_OPS_EMD_CORE_H_

#include <cstdint>
#include <functional>

namespace emd {

// Default relative tolerance of the certified bound (see SolveAuction).
constexpr double kDefaultTolerance = 1e-4;

// Floor of the epsilon schedule relative to the bounding-box diagonal of the
// two clouds. Float32 costs and prices resolve about 1.2e-7 of that scale, so
// a few ulps of headroom keep every bid a strict price increase.
constexpr double kMinEpsilonFraction = 1e-6;

// Statistics of one assignment problem, for benchmarks and tests.
struct AuctionStats {
  double primal = 0.0;       // sum of float32 costs of the returned matching
  double lower_bound = 0.0;  // dual lower bound on the optimal sum
  int phases = 0;            // epsilon-scaling phases run
  int64_t bids = 0;          // bids placed over all phases
};

// Solves one problem. xyz1, xyz2: (n, 3) float32 row-major points.
// match: (n,) output, xyz2[match[i]] is the partner of xyz1[i] (a permutation).
// Returns the mean Euclidean distance of the matched pairs, accumulated in
// double from the coordinates; NaN (with the identity as match) when any
// coordinate is NaN or infinite. tolerance must be >= 0 (the op checks it).
//
// Bound: the auction stops when the duality gap of its prices certifies
//   primal - optimum <= tolerance * lower_bound <= tolerance * optimum,
// i.e. the relative error of the mean distance is at most `tolerance`
// (measured on float32 distance values, which themselves carry ~1e-7
// relative rounding). Only when the optimum is within about
// kMinEpsilonFraction of the cloud scale of zero (near-identical clouds)
// does the epsilon floor stop it first; then the mean distance exceeds the
// optimum by at most kMinEpsilonFraction * bounding-box diagonal.
//
// price: optional (n,) output, the final object prices, from which anyone can
// recompute the certificate's lower bound (the standalone GPU harness does);
// zeros where no auction ran (n <= 1, coincident or non-finite clouds).
double SolveAuction(const float* xyz1, const float* xyz2, int64_t n,
                    double tolerance, int32_t* match,
                    AuctionStats* stats = nullptr, float* price = nullptr);

// Diagonal of the bounding box of both (n, 3) clouds, n >= 1: the largest
// possible distance, the scale of the epsilon schedule and of its floor.
double BoundingBoxDiagonal(const float* xyz1, const float* xyz2, int64_t n);

// Runs body(begin, end) over [0, count) in parallel; the caller supplies the
// thread pool (TF's in the op, a serial loop in the harness).
using ParallelFor = std::function<void(
    int64_t count, const std::function<void(int64_t, int64_t)>& body)>;

// Batched form: xyz1, xyz2 (batch, n, 3); dist (batch,); match (batch, n).
void SolveAuctionBatch(const float* xyz1, const float* xyz2, int64_t batch,
                       int64_t n, double tolerance, float* dist,
                       int32_t* match, const ParallelFor& parallel_for);

}  // namespace emd

#endif  // TF_OPS_EMD_CORE_H_
