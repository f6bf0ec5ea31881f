// Standalone check of the CUDA EMD kernel against the CPU kernel, without
// TensorFlow. For B = 32 and N in {256, 1024, 2048} random clouds it prints
// the largest difference of the distances, whether every GPU matching is a
// permutation whose cost equals the returned distance, and both times; then
// a cloud holding NaN and inf, which must give NaN at once.
// Exits 0 without a GPU (saying so), 1 when a check fails.
// Built and run by gpu_check.sh.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "emd_core.h"
#include "emd_cuda.h"

namespace {

constexpr int kBatch = 32;
constexpr int kSizes[] = {256, 1024, 2048};

bool Check(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return true;
  std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(error));
  return false;
}

double MatchedMean(const float* xyz1, const float* xyz2, int n,
                   const int32_t* match) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    double squared = 0.0;
    for (int d = 0; d < 3; ++d) {
      const double diff =
          static_cast<double>(xyz1[3 * i + d]) - xyz2[3 * match[i] + d];
      squared += diff * diff;
    }
    sum += std::sqrt(squared);
  }
  return sum / n;
}

bool IsPermutation(const int32_t* match, int n) {
  std::vector<char> seen(n, 0);
  for (int i = 0; i < n; ++i) {
    if (match[i] < 0 || match[i] >= n || seen[match[i]]) return false;
    seen[match[i]] = 1;
  }
  return true;
}

// Device buffers of one batched problem, uploaded from host clouds of
// (batch, n, 3) floats; freed on destruction (cudaFree ignores nullptr).
class DeviceProblem {
 public:
  DeviceProblem(int batch, int n) : batch_(batch), n_(n) {}
  DeviceProblem(const DeviceProblem&) = delete;
  DeviceProblem& operator=(const DeviceProblem&) = delete;
  ~DeviceProblem() {
    cudaFree(xyz1_);
    cudaFree(xyz2_);
    cudaFree(dist_);
    cudaFree(match_);
    cudaFree(workspace_);
  }

  // Allocates and uploads; false, with a message, on a CUDA error.
  bool Upload(const std::vector<float>& xyz1, const std::vector<float>& xyz2) {
    const size_t bytes = 3 * count() * sizeof(float);
    return Check(cudaMalloc(&xyz1_, bytes), "cudaMalloc") &&
           Check(cudaMalloc(&xyz2_, bytes), "cudaMalloc") &&
           Check(cudaMalloc(&dist_, batch_ * sizeof(float)), "cudaMalloc") &&
           Check(cudaMalloc(&match_, count() * sizeof(int32_t)), "cudaMalloc") &&
           Check(cudaMalloc(&workspace_, emd::cuda::WorkspaceBytes(batch_, n_)),
                 "cudaMalloc") &&
           Check(cudaMemcpy(xyz1_, xyz1.data(), bytes, cudaMemcpyHostToDevice),
                 "cudaMemcpy") &&
           Check(cudaMemcpy(xyz2_, xyz2.data(), bytes, cudaMemcpyHostToDevice),
                 "cudaMemcpy");
  }

  // Enqueues the kernel on the default stream; nullptr or the launch error.
  const char* Solve() {
    return emd::cuda::SolveAuctionBatch(xyz1_, xyz2_, batch_, n_,
                                        emd::kDefaultTolerance, dist_, match_,
                                        workspace_, nullptr);
  }

  void Download(std::vector<float>* dist, std::vector<int32_t>* match) {
    dist->resize(batch_);
    match->resize(count());
    cudaMemcpy(dist->data(), dist_, batch_ * sizeof(float),
               cudaMemcpyDeviceToHost);
    cudaMemcpy(match->data(), match_, count() * sizeof(int32_t),
               cudaMemcpyDeviceToHost);
  }

 private:
  size_t count() const { return static_cast<size_t>(batch_) * n_; }

  int batch_, n_;
  float* xyz1_ = nullptr;
  float* xyz2_ = nullptr;
  float* dist_ = nullptr;
  int32_t* match_ = nullptr;
  void* workspace_ = nullptr;
};

// A problem holding NaN and inf next to a finite one: both kernels must
// return at once, NaN with the identity for the first, the same finite
// distance for the second.
bool CheckNonFinite(const emd::ParallelFor& serial) {
  constexpr int n = 16;
  std::vector<float> xyz1(2 * 3 * n), xyz2(2 * 3 * n);
  for (int k = 0; k < 2 * 3 * n; ++k) {
    xyz1[k] = static_cast<float>((k * 7) % 11) / 11.0f;
    xyz2[k] = static_cast<float>((k * 5) % 13) / 13.0f;
  }
  xyz1[4] = std::nanf("");
  xyz2[7] = INFINITY;
  std::vector<float> cpu_dist(2), gpu_dist;
  std::vector<int32_t> cpu_match(2 * n), gpu_match;
  emd::SolveAuctionBatch(xyz1.data(), xyz2.data(), 2, n,
                         emd::kDefaultTolerance, cpu_dist.data(),
                         cpu_match.data(), serial);
  DeviceProblem device(2, n);
  if (!device.Upload(xyz1, xyz2)) return false;
  const auto start = std::chrono::steady_clock::now();
  const char* error = device.Solve();
  if (error != nullptr || !Check(cudaDeviceSynchronize(), "kernel")) {
    std::fprintf(stderr, "non-finite launch: %s\n", error ? error : "");
    return false;
  }
  const double gpu_ms = std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - start)
                            .count();
  device.Download(&gpu_dist, &gpu_match);
  bool identity = true;
  for (int i = 0; i < n; ++i) identity = identity && gpu_match[i] == i;
  const bool pass =
      std::isnan(gpu_dist[0]) && std::isnan(cpu_dist[0]) && identity &&
      std::fabs(static_cast<double>(gpu_dist[1]) - cpu_dist[1]) <=
          2 * emd::kDefaultTolerance * cpu_dist[1];
  std::printf(
      "NaN + inf cloud (N = %d): CUDA %.3f ms, distances GPU (%g, %g) CPU "
      "(%g, %g); %s\n",
      n, gpu_ms, gpu_dist[0], gpu_dist[1], cpu_dist[0], cpu_dist[1],
      pass ? "ok" : "FAILED");
  return pass;
}

}  // namespace

int main() {
  int devices = 0;
  const cudaError_t probe = cudaGetDeviceCount(&devices);
  if (probe != cudaSuccess || devices == 0) {
    std::printf("gpu_harness: no CUDA GPU available (%s); nothing to check.\n",
                probe != cudaSuccess ? cudaGetErrorString(probe) : "0 devices");
    return 0;
  }
  cudaDeviceProp prop;
  if (!Check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) {
    return 1;
  }
  std::printf("gpu_harness: %s, B = %d, tolerance %.0e\n", prop.name, kBatch,
              emd::kDefaultTolerance);
  const emd::ParallelFor serial =
      [](int64_t count, const std::function<void(int64_t, int64_t)>& body) {
        body(0, count);
      };
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  bool ok = true;
  for (const int n : kSizes) {
    const size_t count = static_cast<size_t>(kBatch) * n;
    std::vector<float> xyz1(3 * count), xyz2(3 * count);
    for (float& v : xyz1) v = uniform(rng);
    for (float& v : xyz2) v = uniform(rng);

    std::vector<float> cpu_dist(kBatch);
    std::vector<int32_t> cpu_match(count);
    const auto start = std::chrono::steady_clock::now();
    emd::SolveAuctionBatch(xyz1.data(), xyz2.data(), kBatch, n,
                           emd::kDefaultTolerance, cpu_dist.data(),
                           cpu_match.data(), serial);
    const double cpu_ms = std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - start)
                              .count();

    DeviceProblem device(kBatch, n);
    if (!device.Upload(xyz1, xyz2)) return 1;
    cudaEvent_t begin, end;
    cudaEventCreate(&begin);
    cudaEventCreate(&end);
    float gpu_ms = 0.0f;
    constexpr int kRuns = 5;  // the first one is a warm-up
    for (int run = 0; run <= kRuns; ++run) {
      cudaEventRecord(begin);
      const char* error = device.Solve();
      cudaEventRecord(end);
      if (error != nullptr) {
        std::fprintf(stderr, "launch: %s\n", error);
        return 1;
      }
      if (!Check(cudaEventSynchronize(end), "kernel")) return 1;
      float ms = 0.0f;
      cudaEventElapsedTime(&ms, begin, end);
      if (run > 0) gpu_ms += ms / kRuns;
    }
    std::vector<float> gpu_dist;
    std::vector<int32_t> gpu_match;
    device.Download(&gpu_dist, &gpu_match);

    double max_diff = 0.0, max_rel = 0.0, max_cost_gap = 0.0;
    bool permutations = true;
    for (int b = 0; b < kBatch; ++b) {
      const int32_t* match = gpu_match.data() + static_cast<size_t>(b) * n;
      const float* p = xyz1.data() + 3 * static_cast<size_t>(b) * n;
      const float* q = xyz2.data() + 3 * static_cast<size_t>(b) * n;
      if (!IsPermutation(match, n)) {
        permutations = false;
        continue;
      }
      const double diff = std::fabs(static_cast<double>(gpu_dist[b]) -
                                    cpu_dist[b]);
      max_diff = std::max(max_diff, diff);
      max_rel = std::max(max_rel, diff / cpu_dist[b]);
      max_cost_gap = std::max(
          max_cost_gap, std::fabs(MatchedMean(p, q, n, match) - gpu_dist[b]));
    }
    // Both kernels are within the tolerance of the same optimum.
    const bool pass = permutations && max_rel <= 2 * emd::kDefaultTolerance &&
                      max_cost_gap <= 1e-6;
    ok = ok && pass;
    std::printf(
        "N = %4d: CPU %8.2f ms (one thread), CUDA %7.3f ms; max |d_gpu - "
        "d_cpu| = %.3e (relative %.3e); permutations %s; %s\n",
        n, cpu_ms, gpu_ms, max_diff, max_rel, permutations ? "yes" : "NO",
        pass ? "ok" : "FAILED");
    cudaEventDestroy(begin);
    cudaEventDestroy(end);
  }
  ok = CheckNonFinite(serial) && ok;
  return ok ? 0 : 1;
}
