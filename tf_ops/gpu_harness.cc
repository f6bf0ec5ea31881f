// Standalone check and timing of the CUDA EMD kernel against the CPU kernel,
// without TensorFlow; built and run by gpu_check.sh.
//
// Every solve is certified on the host in double: its matching must be a
// permutation whose mean cost is within the tolerance of the lower bound its
// final prices give (weak duality: sum_i min_j (c_ij + p_j) - sum_j p_j is at
// most the optimum for any prices, whatever the kernel computed). In order:
//  - timings: B = 32 uniform clouds in the unit cube, N in {256, 1024, 2048},
//    medians of repeated solves beside one CPU thread, and the goals;
//  - profile: the kernel's own counters at those sizes
//    (emd::cuda::AuctionProfile): rounds, bids per round, microseconds per
//    round and the stages' shares of the cycles;
//  - shapes: N in {1, 2, 31, 33, 256, 1000, 1024, 2048, 4096, 8192} times
//    uniform, clustered, identical, permuted and duplicated clouds; both
//    kernels certified, their distances within the tolerance of each other,
//    and the GPU's matching the same in every repeated solve.
// Without a GPU the shapes run on the CPU kernel alone, so the certificate
// and the shapes are checked on any machine, and the harness says that the
// GPU parts did not run.
//
// Flags: --max_n=N skips larger problems; --sanitize runs one small solve
// (B = 2, N = 256) and the NaN/inf problem, for compute-sanitizer;
// --dump=DIR writes the timed problems with their certified distances and
// the CUDA medians for benchmarks/emd_msn.py (DIR/problems.json and one raw
// float32 file per size: xyz1 then xyz2, each (32, N, 3)).
// Exit status 0 when every check passed, 1 otherwise.
#include <cuda_runtime.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "emd_core.h"
#include "emd_cuda.h"

namespace {

constexpr double kTolerance = emd::kDefaultTolerance;
constexpr int kTimingBatch = 32;
constexpr int kTimedRuns = 10;  // after one warm-up solve
// Repeated GPU solves of each shape (determinism); two past N = 2048, where
// a solve of today's kernel takes seconds.
int ShapeSolves(int n) { return n <= 2048 ? 3 : 2; }

struct Goal {
  int n;
  double ms;  // H200, B = 32, median
};
constexpr Goal kGoals[] = {{256, 1.0}, {1024, 8.0}, {2048, 30.0}};

enum class Kind { kUniform, kClustered, kIdentical, kPermuted, kDuplicated };
constexpr Kind kKinds[] = {Kind::kUniform, Kind::kClustered, Kind::kIdentical,
                           Kind::kPermuted, Kind::kDuplicated};
constexpr int kShapeSizes[] = {1, 2, 31, 33, 256, 1000, 1024, 2048, 4096, 8192};

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kUniform: return "uniform";
    case Kind::kClustered: return "clustered";
    case Kind::kIdentical: return "identical";
    case Kind::kPermuted: return "permuted";
    case Kind::kDuplicated: return "duplicated";
  }
  return "?";
}

// `batch` problems of two (n, 3) clouds each, stored (batch, n, 3).
struct Problem {
  int batch = 0, n = 0;
  std::vector<float> xyz1, xyz2;
  const float* cloud1(int b) const { return xyz1.data() + 3 * offset(b); }
  const float* cloud2(int b) const { return xyz2.data() + 3 * offset(b); }
  size_t offset(int b) const { return static_cast<size_t>(b) * n; }
  size_t count() const { return static_cast<size_t>(batch) * n; }
};

// Uniform: both clouds in the unit cube. Clustered: both drawn around the
// same 8 centres (sigma 0.02), like the surface of one object. Identical:
// xyz2 = xyz1 (optimum 0 on the diagonal). Permuted: xyz2 a shuffle of xyz1
// (optimum 0 off the diagonal). Duplicated: each cloud holds n / 4 distinct
// points four times over, so many bids tie.
Problem MakeProblem(Kind kind, int batch, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  Problem p;
  p.batch = batch;
  p.n = n;
  p.xyz1.resize(3 * p.count());
  p.xyz2.resize(3 * p.count());
  for (int b = 0; b < batch; ++b) {
    float* a = p.xyz1.data() + 3 * p.offset(b);
    float* c = p.xyz2.data() + 3 * p.offset(b);
    switch (kind) {
      case Kind::kUniform:
        for (int k = 0; k < 3 * n; ++k) a[k] = uniform(rng);
        for (int k = 0; k < 3 * n; ++k) c[k] = uniform(rng);
        break;
      case Kind::kClustered: {
        float centre[8][3];
        for (auto& point : centre) {
          for (float& v : point) v = uniform(rng);
        }
        for (float* cloud : {a, c}) {
          for (int i = 0; i < n; ++i) {
            const float* at = centre[rng() % 8];
            for (int d = 0; d < 3; ++d) cloud[3 * i + d] = at[d] + normal(rng);
          }
        }
        break;
      }
      case Kind::kIdentical:
        for (int k = 0; k < 3 * n; ++k) a[k] = c[k] = uniform(rng);
        break;
      case Kind::kPermuted: {
        for (int k = 0; k < 3 * n; ++k) a[k] = uniform(rng);
        std::vector<int> order(n);
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);
        for (int i = 0; i < n; ++i) {
          for (int d = 0; d < 3; ++d) c[3 * i + d] = a[3 * order[i] + d];
        }
        break;
      }
      case Kind::kDuplicated: {
        const int distinct = std::max(1, n / 4);
        for (int k = 0; k < 3 * distinct; ++k) a[k] = uniform(rng);
        for (int k = 0; k < 3 * distinct; ++k) c[k] = uniform(rng);
        for (int i = distinct; i < n; ++i) {
          for (int d = 0; d < 3; ++d) {
            a[3 * i + d] = a[3 * (i % distinct) + d];
            c[3 * i + d] = c[3 * (i % distinct) + d];
          }
        }
        break;
      }
    }
  }
  return p;
}

// Runs body(k) for k in [0, count) on every hardware thread.
template <typename Body>
void ParallelFor(int count, const Body& body) {
  const int threads = std::max(
      1, std::min<int>(count, static_cast<int>(std::thread::hardware_concurrency())));
  std::atomic<int> next(0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int k = next++; k < count; k = next++) body(k);
    });
  }
  for (std::thread& thread : pool) thread.join();
}

double Distance(const float* p, const float* q) {
  const double dx = static_cast<double>(p[0]) - q[0];
  const double dy = static_cast<double>(p[1]) - q[1];
  const double dz = static_cast<double>(p[2]) - q[2];
  return std::sqrt(dx * dx + dy * dy + dz * dz);
}

double Diagonal(const float* xyz1, const float* xyz2, int n) {
  return n > 0 ? emd::BoundingBoxDiagonal(xyz1, xyz2, n) : 0.0;
}

// The certificate of one solve, recomputed from its matching and prices.
struct Certificate {
  bool permutation = false;
  double lower = 0.0;  // mean lower bound from the prices
  double gap = 0.0;    // (mean - lower) / lower; 0 when both are 0
  bool ok = false;
};

// Accepted: mean - lower <= tolerance * lower, or (near-coincident clouds,
// where the epsilon floor stops the auction) <= kMinEpsilonFraction * the
// bounding-box diagonal; plus 1e-6 of the bound's terms for the float32
// rounding of the kernels' costs, 100x below the tolerance.
Certificate Certify(const float* xyz1, const float* xyz2, int n,
                    const int32_t* match, const float* price,
                    double tolerance) {
  Certificate c;
  std::vector<char> seen(n, 0);
  c.permutation = true;
  for (int i = 0; i < n && c.permutation; ++i) {
    c.permutation = match[i] >= 0 && match[i] < n && !seen[match[i]];
    if (c.permutation) seen[match[i]] = 1;
  }
  if (!c.permutation) return c;
  if (n == 0) {
    c.ok = true;
    return c;
  }
  double primal = 0.0, row_min_sum = 0.0, price_sum = 0.0;
  for (int i = 0; i < n; ++i) {
    const float* p = xyz1 + 3 * i;
    primal += Distance(p, xyz2 + 3 * match[i]);
    double row_min = std::numeric_limits<double>::infinity();
    for (int j = 0; j < n; ++j) {
      row_min = std::min(row_min, Distance(p, xyz2 + 3 * j) + price[j]);
    }
    row_min_sum += row_min;
    price_sum += price[i];
  }
  const double lower = row_min_sum - price_sum;
  c.lower = lower / n;
  if (lower > 0.0) {
    c.gap = (primal - lower) / lower;
  } else {
    c.gap = primal > lower ? std::numeric_limits<double>::infinity() : 0.0;
  }
  const double floor = emd::kMinEpsilonFraction * Diagonal(xyz1, xyz2, n) * n;
  c.ok = primal - lower <=
         std::max(tolerance * lower, floor) + 1e-6 * row_min_sum;
  return c;
}

// Both distances within the certified tolerance (or the epsilon floor) of
// the same optimum.
bool Agree(double a, double b, double diagonal) {
  return std::fabs(a - b) <= kTolerance * std::max(a, b) +
                                 emd::kMinEpsilonFraction * diagonal +
                                 1e-6 * std::max(a, b);
}

struct CpuResult {
  std::vector<float> dist, price;
  std::vector<int32_t> match;
  std::vector<emd::AuctionStats> stats;
};

// Each problem on its own thread.
CpuResult SolveCpu(const Problem& p) {
  CpuResult r;
  r.dist.resize(p.batch);
  r.price.resize(p.count());
  r.match.resize(p.count());
  r.stats.resize(p.batch);
  ParallelFor(p.batch, [&](int b) {
    r.dist[b] = static_cast<float>(emd::SolveAuction(
        p.cloud1(b), p.cloud2(b), p.n, kTolerance, r.match.data() + p.offset(b),
        &r.stats[b], r.price.data() + p.offset(b)));
  });
  return r;
}

// The certificates of a batch: all accepted, the worst relative gap of
// those within the tolerance, and how many the epsilon floor accepted.
struct BatchCertificate {
  bool ok = true;
  double worst_gap = 0.0;
  int at_floor = 0;
  std::string Describe() const {
    char text[96];
    std::snprintf(text, sizeof(text), "gap %.1e%s %s", worst_gap,
                  at_floor ? " (some at the epsilon floor)" : "",
                  ok ? "certified" : "NOT CERTIFIED");
    return text;
  }
};

BatchCertificate CertifyBatch(const Problem& p, const int32_t* match,
                              const float* price) {
  std::vector<Certificate> certificates(p.batch);
  ParallelFor(p.batch, [&](int b) {
    certificates[b] = Certify(p.cloud1(b), p.cloud2(b), p.n,
                              match + p.offset(b), price + p.offset(b),
                              kTolerance);
  });
  BatchCertificate result;
  for (const Certificate& c : certificates) {
    result.ok = result.ok && c.ok;
    if (c.gap <= kTolerance) {
      result.worst_gap = std::max(result.worst_gap, c.gap);
    } else if (c.ok) {
      ++result.at_floor;
    }
  }
  return result;
}

bool Check(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return true;
  std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(error));
  return false;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t m = values.size() / 2;
  return values.size() % 2 ? values[m] : 0.5 * (values[m - 1] + values[m]);
}

// Device buffers of one batched problem; freed on destruction (cudaFree
// ignores nullptr).
class DeviceProblem {
 public:
  explicit DeviceProblem(const Problem& p) : batch_(p.batch), n_(p.n) {
    const size_t bytes = 3 * count() * sizeof(float);
    ok_ = Check(cudaMalloc(&xyz1_, bytes), "cudaMalloc") &&
          Check(cudaMalloc(&xyz2_, bytes), "cudaMalloc") &&
          Check(cudaMalloc(&dist_, batch_ * sizeof(float)), "cudaMalloc") &&
          Check(cudaMalloc(&match_, count() * sizeof(int32_t)), "cudaMalloc") &&
          Check(cudaMalloc(&price_, count() * sizeof(float)), "cudaMalloc") &&
          Check(cudaMalloc(&profile_,
                           batch_ * sizeof(emd::cuda::AuctionProfile)),
                "cudaMalloc") &&
          Check(cudaMalloc(&workspace_,
                           emd::cuda::WorkspaceBytes(batch_, n_)),
                "cudaMalloc") &&
          Check(cudaMemcpy(xyz1_, p.xyz1.data(), bytes, cudaMemcpyHostToDevice),
                "cudaMemcpy") &&
          Check(cudaMemcpy(xyz2_, p.xyz2.data(), bytes, cudaMemcpyHostToDevice),
                "cudaMemcpy");
  }
  DeviceProblem(const DeviceProblem&) = delete;
  DeviceProblem& operator=(const DeviceProblem&) = delete;
  ~DeviceProblem() {
    cudaFree(xyz1_);
    cudaFree(xyz2_);
    cudaFree(dist_);
    cudaFree(match_);
    cudaFree(price_);
    cudaFree(profile_);
    cudaFree(workspace_);
  }

  bool ok() const { return ok_; }

  // One solve on the default stream, timed by events; false on a CUDA error.
  // Prices always come back (the certificate needs them); the profile only
  // when asked, since its atomics cost a little.
  bool Solve(bool profiled, double* ms) {
    cudaEvent_t begin, end;
    cudaEventCreate(&begin);
    cudaEventCreate(&end);
    cudaEventRecord(begin);
    const char* error = emd::cuda::SolveAuctionBatch(
        xyz1_, xyz2_, batch_, n_, kTolerance, dist_, match_, workspace_,
        nullptr, price_, profiled ? profile_ : nullptr);
    cudaEventRecord(end);
    bool ok = error == nullptr;
    if (!ok) std::fprintf(stderr, "launch: %s\n", error);
    ok = ok && Check(cudaEventSynchronize(end), "kernel");
    float elapsed = 0.0f;
    cudaEventElapsedTime(&elapsed, begin, end);
    *ms = elapsed;
    cudaEventDestroy(begin);
    cudaEventDestroy(end);
    return ok;
  }

  bool Download(std::vector<float>* dist, std::vector<int32_t>* match,
                std::vector<float>* price,
                std::vector<emd::cuda::AuctionProfile>* profile = nullptr) {
    dist->resize(batch_);
    match->resize(count());
    price->resize(count());
    bool ok =
        Check(cudaMemcpy(dist->data(), dist_, batch_ * sizeof(float),
                         cudaMemcpyDeviceToHost), "cudaMemcpy") &&
        Check(cudaMemcpy(match->data(), match_, count() * sizeof(int32_t),
                         cudaMemcpyDeviceToHost), "cudaMemcpy") &&
        Check(cudaMemcpy(price->data(), price_, count() * sizeof(float),
                         cudaMemcpyDeviceToHost), "cudaMemcpy");
    if (ok && profile != nullptr) {
      profile->resize(batch_);
      ok = Check(cudaMemcpy(profile->data(), profile_,
                            batch_ * sizeof(emd::cuda::AuctionProfile),
                            cudaMemcpyDeviceToHost), "cudaMemcpy");
    }
    return ok;
  }

 private:
  size_t count() const { return static_cast<size_t>(batch_) * n_; }

  int batch_, n_;
  bool ok_ = false;
  float* xyz1_ = nullptr;
  float* xyz2_ = nullptr;
  float* dist_ = nullptr;
  int32_t* match_ = nullptr;
  float* price_ = nullptr;
  emd::cuda::AuctionProfile* profile_ = nullptr;
  void* workspace_ = nullptr;
};

// The results of `solves` GPU solves of one problem: the last one's outputs,
// whether every solve gave the same matching and distances, and the times.
// With `profiled` the last solve also counts its stages; its time goes to
// profiled_ms instead of ms, since the counters' atomics slow it.
struct GpuResult {
  bool ok = false;
  bool deterministic = true;
  std::vector<float> dist, price;
  std::vector<int32_t> match;
  std::vector<double> ms;
  std::vector<emd::cuda::AuctionProfile> profile;
  double profiled_ms = 0.0;
};

GpuResult SolveGpu(const Problem& p, int solves, bool profiled = false) {
  GpuResult r;
  DeviceProblem device(p);
  if (!device.ok()) return r;
  std::vector<float> first_dist;
  std::vector<int32_t> first_match;
  for (int s = 0; s < solves; ++s) {
    const bool counting = profiled && s == solves - 1;
    double ms = 0.0;
    if (!device.Solve(counting, &ms) ||
        !device.Download(&r.dist, &r.match, &r.price,
                         counting ? &r.profile : nullptr)) {
      return r;
    }
    if (counting) {
      r.profiled_ms = ms;
    } else {
      r.ms.push_back(ms);
    }
    if (s == 0) {
      first_dist = r.dist;
      first_match = r.match;
    } else {
      r.deterministic = r.deterministic && r.match == first_match &&
                        std::memcmp(r.dist.data(), first_dist.data(),
                                    p.batch * sizeof(float)) == 0;
    }
  }
  r.ok = true;
  return r;
}

// The certificate must accept the CPU kernel's solution, agree with the
// kernel's own bound, and reject a worse matching and a non-permutation.
bool CertificateSelfTest() {
  const Problem p = MakeProblem(Kind::kUniform, 1, 64, 7);
  const CpuResult cpu = SolveCpu(p);
  const Certificate good = Certify(p.cloud1(0), p.cloud2(0), p.n,
                                   cpu.match.data(), cpu.price.data(),
                                   kTolerance);
  // The kernel's bound (float32 costs) and ours (double) name the same prices.
  const double kernel_lower = cpu.stats[0].lower_bound / p.n;
  const bool same_bound =
      std::fabs(kernel_lower - good.lower) <= 1e-5 * good.lower;
  // Swap the partners of the pair whose exchange costs most.
  std::vector<int32_t> worse = cpu.match;
  double best_increase = 0.0;
  int swap_i = 0, swap_k = 1;
  for (int i = 0; i < p.n; ++i) {
    for (int k = i + 1; k < p.n; ++k) {
      const double increase =
          Distance(p.cloud1(0) + 3 * i, p.cloud2(0) + 3 * worse[k]) +
          Distance(p.cloud1(0) + 3 * k, p.cloud2(0) + 3 * worse[i]) -
          Distance(p.cloud1(0) + 3 * i, p.cloud2(0) + 3 * worse[i]) -
          Distance(p.cloud1(0) + 3 * k, p.cloud2(0) + 3 * worse[k]);
      if (increase > best_increase) {
        best_increase = increase;
        swap_i = i;
        swap_k = k;
      }
    }
  }
  std::swap(worse[swap_i], worse[swap_k]);
  const Certificate swapped = Certify(p.cloud1(0), p.cloud2(0), p.n,
                                      worse.data(), cpu.price.data(),
                                      kTolerance);
  std::vector<int32_t> shared = cpu.match;
  shared[1] = shared[0];
  const Certificate collision = Certify(p.cloud1(0), p.cloud2(0), p.n,
                                        shared.data(), cpu.price.data(),
                                        kTolerance);
  const bool pass = good.ok && same_bound && swapped.permutation &&
                    !swapped.ok && !collision.permutation && !collision.ok;
  std::printf(
      "certificate self-test (N = %d): CPU solution gap %.2e, bound %.9f vs "
      "the kernel's %.9f; a swap worse by %.3f rejected: %s; two persons on "
      "one object rejected: %s; %s\n",
      p.n, good.gap, good.lower, kernel_lower, best_increase / p.n,
      swapped.ok ? "no" : "yes", collision.ok ? "no" : "yes",
      pass ? "ok" : "FAILED");
  return pass;
}

// One shape; gpu false runs the CPU kernel alone.
bool CheckShape(Kind kind, int n, bool gpu, uint32_t seed) {
  const int batch = n <= 2048 ? 4 : 2;
  const Problem p = MakeProblem(kind, batch, n, seed);
  const CpuResult cpu = SolveCpu(p);
  const BatchCertificate cpu_cert =
      CertifyBatch(p, cpu.match.data(), cpu.price.data());
  bool pass = cpu_cert.ok;
  char gpu_part[160] = "GPU not run";
  if (gpu) {
    const GpuResult g = SolveGpu(p, ShapeSolves(n));
    if (!g.ok) return false;
    const BatchCertificate gpu_cert =
        CertifyBatch(p, g.match.data(), g.price.data());
    double worst = 0.0;
    bool agree = true;
    for (int b = 0; b < batch; ++b) {
      const double c = cpu.dist[b], d = g.dist[b];
      agree = agree && Agree(c, d, Diagonal(p.cloud1(b), p.cloud2(b), n));
      if (c > 0.0) worst = std::max(worst, std::fabs(c - d) / c);
    }
    pass = pass && gpu_cert.ok && agree && g.deterministic;
    std::snprintf(gpu_part, sizeof(gpu_part),
                  "GPU %s, |d_gpu - d_cpu| / d_cpu <= %.1e, %s",
                  gpu_cert.Describe().c_str(), worst, g.deterministic ? "deterministic" : "NOT DETERMINISTIC");
  }
  std::printf("%-10s N = %4d, B = %d: CPU %s; %s; %s\n", KindName(kind), n,
              batch, cpu_cert.Describe().c_str(), gpu_part,
              pass ? "ok" : "FAILED");
  return pass;
}

// The timed problem of size n: the same clouds in every run of the harness.
Problem TimingProblem(int n) {
  return MakeProblem(Kind::kUniform, kTimingBatch, n, 1000 + n);
}

// One size: prints the timing row, appends the profile's, sets the median.
bool TimeSize(int n, double clock_khz, std::vector<std::string>* profile_rows,
              double* median_ms) {
  const Problem p = TimingProblem(n);
  std::vector<float> cpu_dist(p.batch);
  std::vector<int32_t> cpu_match(p.count());
  const emd::ParallelFor serial =
      [](int64_t count, const std::function<void(int64_t, int64_t)>& body) {
        body(0, count);
      };
  const auto start = std::chrono::steady_clock::now();
  emd::SolveAuctionBatch(p.xyz1.data(), p.xyz2.data(), p.batch, n, kTolerance,
                         cpu_dist.data(), cpu_match.data(), serial);
  const double cpu_ms = std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - start)
                            .count();
  // A warm-up, the timed solves, and a profiled one.
  GpuResult g = SolveGpu(p, 1 + kTimedRuns + 1, true);
  if (!g.ok) return false;
  g.ms.erase(g.ms.begin());  // the warm-up
  const BatchCertificate cert = CertifyBatch(p, g.match.data(), g.price.data());
  bool agree = true;
  for (int b = 0; b < p.batch; ++b) {
    agree = agree && Agree(cpu_dist[b], g.dist[b],
                           Diagonal(p.cloud1(b), p.cloud2(b), n));
  }
  const double median = Median(g.ms);
  *median_ms = median;
  double goal = 0.0;
  for (const Goal& entry : kGoals) {
    if (entry.n == n) goal = entry.ms;
  }
  const bool pass = cert.ok && agree && g.deterministic;
  std::printf(
      "| %4d | %9.2f | %8.3f | %8.3f | %8.3f | %6.1f%s | %s, %s |\n", n, cpu_ms,
      median, *std::min_element(g.ms.begin(), g.ms.end()),
      *std::max_element(g.ms.begin(), g.ms.end()), goal,
      median <= goal ? " met" : " not met",
      cert.ok && agree ? "certified" : "FAILED",
      g.deterministic ? "deterministic" : "NOT DETERMINISTIC");

  std::vector<double> rounds, bids, us_round, bid, resolve, unassigned,
      certificate, setup, phases;
  for (const emd::cuda::AuctionProfile& q : g.profile) {
    const double total = static_cast<double>(q.cycles_total);
    const double round_cycles =
        q.cycles_bid + q.cycles_resolve + q.cycles_unassigned;
    rounds.push_back(q.rounds);
    phases.push_back(q.phases);
    bids.push_back(q.rounds ? static_cast<double>(q.bids) / q.rounds : 0.0);
    us_round.push_back(q.rounds ? round_cycles / q.rounds / clock_khz * 1e3
                                : 0.0);
    bid.push_back(100.0 * q.cycles_bid / total);
    resolve.push_back(100.0 * q.cycles_resolve / total);
    unassigned.push_back(100.0 * q.cycles_unassigned / total);
    certificate.push_back(100.0 * q.cycles_certificate / total);
    setup.push_back(100.0 - 100.0 * (round_cycles + q.cycles_certificate) / total);
  }
  char row[256];
  std::snprintf(row, sizeof(row),
                "| %4d | %8.3f | %3.0f | %6.0f | %6.0f | %6.1f | %7.2f | %3.0f%% "
                "| %3.0f%% | %3.0f%% | %3.0f%% | %3.0f%% |",
                n, g.profiled_ms, Median(phases), Median(rounds),
                *std::max_element(rounds.begin(), rounds.end()), Median(bids),
                Median(us_round), Median(bid), Median(resolve),
                Median(unassigned), Median(certificate), Median(setup));
  profile_rows->push_back(row);
  return pass;
}

// A problem holding NaN and inf next to a finite one: both kernels return at
// once, NaN with the identity for the first, the same distance for the second.
bool CheckNonFinite() {
  Problem p = MakeProblem(Kind::kUniform, 2, 16, 3);
  p.xyz1[4] = std::nanf("");
  p.xyz2[7] = INFINITY;
  const CpuResult cpu = SolveCpu(p);
  const GpuResult g = SolveGpu(p, 1);
  if (!g.ok) return false;
  bool identity = true;
  for (int i = 0; i < p.n; ++i) identity = identity && g.match[i] == i;
  const bool pass = std::isnan(g.dist[0]) && std::isnan(cpu.dist[0]) &&
                    identity &&
                    Agree(cpu.dist[1], g.dist[1],
                          Diagonal(p.cloud1(1), p.cloud2(1), p.n));
  std::printf(
      "NaN + inf cloud (N = %d): CUDA %.3f ms, distances GPU (%g, %g) CPU "
      "(%g, %g); %s\n",
      p.n, g.ms[0], g.dist[0], g.dist[1], cpu.dist[0], cpu.dist[1],
      pass ? "ok" : "FAILED");
  return pass;
}

// --dump=DIR: the timed problems, the CPU kernel's certified distances and
// the CUDA medians (null without a GPU), for another solver's comparison.
bool Dump(const std::string& dir, int max_n, const char* gpu_name,
          const std::map<int, double>& cuda_median_ms) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    std::fprintf(stderr, "gpu_harness --dump=%s: %s\n", dir.c_str(),
                 error.message().c_str());
    return false;
  }
  std::string json = "{\"tolerance\": ";
  json += std::to_string(kTolerance) + ", \"gpu\": ";
  json += gpu_name ? "\"" + std::string(gpu_name) + "\"" : "null";
  json += ", \"problems\": [";
  bool first = true;
  for (const Goal& goal : kGoals) {
    if (goal.n > max_n) continue;
    const Problem p = TimingProblem(goal.n);
    const CpuResult cpu = SolveCpu(p);
    if (!CertifyBatch(p, cpu.match.data(), cpu.price.data()).ok) {
      std::fprintf(stderr, "gpu_harness --dump: N = %d not certified\n",
                   goal.n);
      return false;
    }
    const std::string name = "uniform_b" + std::to_string(p.batch) + "_n" +
                             std::to_string(p.n) + ".f32";
    std::ofstream clouds(dir + "/" + name, std::ios::binary);
    clouds.write(reinterpret_cast<const char*>(p.xyz1.data()),
                 p.xyz1.size() * sizeof(float));
    clouds.write(reinterpret_cast<const char*>(p.xyz2.data()),
                 p.xyz2.size() * sizeof(float));
    if (!clouds.good()) {
      std::fprintf(stderr, "gpu_harness --dump: cannot write %s/%s\n",
                   dir.c_str(), name.c_str());
      return false;
    }
    char head[160];
    std::snprintf(head, sizeof(head),
                  "%s{\"n\": %d, \"batch\": %d, \"file\": \"%s\", "
                  "\"cuda_median_ms\": ",
                  first ? "" : ", ", p.n, p.batch, name.c_str());
    json += head;
    const auto median = cuda_median_ms.find(p.n);
    json += median == cuda_median_ms.end() ? "null"
                                           : std::to_string(median->second);
    json += ", \"distance\": [";
    for (int b = 0; b < p.batch; ++b) {
      char value[32];
      std::snprintf(value, sizeof(value), "%s%.9g", b ? ", " : "", cpu.dist[b]);
      json += value;
    }
    json += "]}";
    first = false;
  }
  json += "]}\n";
  // Written last and whole, so a reader never sees a half-written index.
  const std::string index = dir + "/problems.json";
  {
    std::ofstream out(index + ".tmp");
    out << json;
    if (!out.good()) {
      std::fprintf(stderr, "gpu_harness --dump: cannot write %s\n",
                   index.c_str());
      return false;
    }
  }
  std::filesystem::rename(index + ".tmp", index, error);
  if (error) {
    std::fprintf(stderr, "gpu_harness --dump: %s\n", error.message().c_str());
    return false;
  }
  std::printf("\nDumped the timed problems and their certified distances to %s\n",
              index.c_str());
  return true;
}

// --sanitize: small enough for compute-sanitizer, and every kernel path
// (prices, profile, the NaN exit) runs once.
bool Sanitize() {
  const Problem p = MakeProblem(Kind::kUniform, 2, 256, 11);
  const GpuResult g = SolveGpu(p, 1, true);
  if (!g.ok) return false;
  const BatchCertificate cert = CertifyBatch(p, g.match.data(), g.price.data());
  std::printf("sanitize run: B = 2, N = 256, %s\n",
              cert.ok ? "certified" : "NOT CERTIFIED");
  return CheckNonFinite() && cert.ok;
}

}  // namespace

int main(int argc, char** argv) {
  // Line-buffered, so a run cut off by a timeout keeps what it printed.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int max_n = 8192;
  bool sanitize = false;
  std::string dump;
  for (int a = 1; a < argc; ++a) {
    if (std::strncmp(argv[a], "--max_n=", 8) == 0) {
      max_n = std::atoi(argv[a] + 8);
    } else if (std::strcmp(argv[a], "--sanitize") == 0) {
      sanitize = true;
    } else if (std::strncmp(argv[a], "--dump=", 7) == 0 && argv[a][7]) {
      dump = argv[a] + 7;
    } else {
      std::fprintf(stderr,
                   "gpu_harness: unknown argument '%s' (flags: --max_n=N, "
                   "--sanitize, --dump=DIR)\n",
                   argv[a]);
      return 2;
    }
  }
  int devices = 0;
  const cudaError_t probe = cudaGetDeviceCount(&devices);
  const bool gpu = probe == cudaSuccess && devices > 0;
  if (sanitize) {
    if (!gpu) {
      std::fprintf(stderr, "gpu_harness --sanitize: no CUDA GPU\n");
      return 1;
    }
    return Sanitize() ? 0 : 1;
  }
  double clock_khz = 0.0;
  cudaDeviceProp prop;
  if (gpu) {
    int khz = 0;
    if (!Check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties") ||
        !Check(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0),
               "cudaDeviceGetAttribute")) {
      return 1;
    }
    clock_khz = khz;
    std::printf("gpu_harness: %s (sm_%d%d, %d SMs, %.0f MHz), tolerance %.0e\n",
                prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                clock_khz / 1e3, kTolerance);
  } else {
    std::printf(
        "gpu_harness: no CUDA GPU (%s): the CPU kernel and the certificate "
        "only; the GPU checks, timings and profile did not run\n",
        probe != cudaSuccess ? cudaGetErrorString(probe) : "0 devices");
  }
  bool ok = CertificateSelfTest();
  std::map<int, double> cuda_median_ms;
  if (gpu) {
    ok = CheckNonFinite() && ok;
    std::printf(
        "\nTimings: B = %d uniform clouds, %d timed solves after a warm-up "
        "(ms)\n"
        "| N | CPU one thread | CUDA median | min | max | goal | checks |\n"
        "|---|---|---|---|---|---|---|\n",
        kTimingBatch, kTimedRuns);
    std::vector<std::string> profile_rows;
    for (const Goal& goal : kGoals) {
      if (goal.n > max_n) continue;
      ok = TimeSize(goal.n, clock_khz, &profile_rows, &cuda_median_ms[goal.n]) &&
           ok;
    }
    std::printf(
        "\nProfile: one profiled solve of each timed problem, medians over the "
        "batch; us/round is bid + resolve + unassigned scan per round; shares "
        "of the kernel's cycles\n"
        "| N | ms | phases | rounds | max rounds | bids/round | us/round | "
        "bid | resolve | unassigned scan | certificate | set-up |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const std::string& row : profile_rows) std::printf("%s\n", row.c_str());
  }
  if (!dump.empty()) {
    ok = Dump(dump, max_n, gpu ? prop.name : nullptr, cuda_median_ms) && ok;
  }
  std::printf("\nShapes (CPU threads: %u)\n",
              std::thread::hardware_concurrency());
  uint32_t seed = 1;
  for (const int n : kShapeSizes) {
    if (n > max_n) continue;
    for (const Kind kind : kKinds) ok = CheckShape(kind, n, gpu, seed++) && ok;
  }
  std::printf("\ngpu_harness: %s\n", ok ? "all checks passed" : "FAILED");
  return ok ? 0 : 1;
}
