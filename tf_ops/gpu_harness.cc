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
  std::vector<float> cpu_dist(2), gpu_dist(2);
  std::vector<int32_t> cpu_match(2 * n), gpu_match(2 * n);
  emd::SolveAuctionBatch(xyz1.data(), xyz2.data(), 2, n,
                         emd::kDefaultTolerance, cpu_dist.data(),
                         cpu_match.data(), serial);
  float *d_xyz1, *d_xyz2, *d_dist;
  int32_t* d_match;
  void* d_workspace;
  if (!Check(cudaMalloc(&d_xyz1, xyz1.size() * sizeof(float)), "cudaMalloc") ||
      !Check(cudaMalloc(&d_xyz2, xyz2.size() * sizeof(float)), "cudaMalloc") ||
      !Check(cudaMalloc(&d_dist, 2 * sizeof(float)), "cudaMalloc") ||
      !Check(cudaMalloc(&d_match, 2 * n * sizeof(int32_t)), "cudaMalloc") ||
      !Check(cudaMalloc(&d_workspace, emd::cuda::WorkspaceBytes(2, n)),
             "cudaMalloc")) {
    return false;
  }
  cudaMemcpy(d_xyz1, xyz1.data(), xyz1.size() * sizeof(float),
             cudaMemcpyHostToDevice);
  cudaMemcpy(d_xyz2, xyz2.data(), xyz2.size() * sizeof(float),
             cudaMemcpyHostToDevice);
  const auto start = std::chrono::steady_clock::now();
  const char* error = emd::cuda::SolveAuctionBatch(
      d_xyz1, d_xyz2, 2, n, emd::kDefaultTolerance, d_dist, d_match,
      d_workspace, nullptr);
  if (error != nullptr || !Check(cudaDeviceSynchronize(), "kernel")) {
    std::fprintf(stderr, "non-finite launch: %s\n", error ? error : "");
    return false;
  }
  const double gpu_ms = std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - start)
                            .count();
  cudaMemcpy(gpu_dist.data(), d_dist, 2 * sizeof(float),
             cudaMemcpyDeviceToHost);
  cudaMemcpy(gpu_match.data(), d_match, 2 * n * sizeof(int32_t),
             cudaMemcpyDeviceToHost);
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
  cudaFree(d_xyz1);
  cudaFree(d_xyz2);
  cudaFree(d_dist);
  cudaFree(d_match);
  cudaFree(d_workspace);
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

    float *d_xyz1, *d_xyz2, *d_dist;
    int32_t* d_match;
    void* d_workspace;
    const size_t workspace = emd::cuda::WorkspaceBytes(kBatch, n);
    if (!Check(cudaMalloc(&d_xyz1, 3 * count * sizeof(float)), "cudaMalloc") ||
        !Check(cudaMalloc(&d_xyz2, 3 * count * sizeof(float)), "cudaMalloc") ||
        !Check(cudaMalloc(&d_dist, kBatch * sizeof(float)), "cudaMalloc") ||
        !Check(cudaMalloc(&d_match, count * sizeof(int32_t)), "cudaMalloc") ||
        !Check(cudaMalloc(&d_workspace, workspace), "cudaMalloc")) {
      return 1;
    }
    cudaMemcpy(d_xyz1, xyz1.data(), 3 * count * sizeof(float),
               cudaMemcpyHostToDevice);
    cudaMemcpy(d_xyz2, xyz2.data(), 3 * count * sizeof(float),
               cudaMemcpyHostToDevice);
    cudaEvent_t begin, end;
    cudaEventCreate(&begin);
    cudaEventCreate(&end);
    float gpu_ms = 0.0f;
    constexpr int kRuns = 5;  // the first one is a warm-up
    for (int run = 0; run <= kRuns; ++run) {
      cudaEventRecord(begin);
      const char* error = emd::cuda::SolveAuctionBatch(
          d_xyz1, d_xyz2, kBatch, n, emd::kDefaultTolerance, d_dist, d_match,
          d_workspace, nullptr);
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
    std::vector<float> gpu_dist(kBatch);
    std::vector<int32_t> gpu_match(count);
    cudaMemcpy(gpu_dist.data(), d_dist, kBatch * sizeof(float),
               cudaMemcpyDeviceToHost);
    cudaMemcpy(gpu_match.data(), d_match, count * sizeof(int32_t),
               cudaMemcpyDeviceToHost);

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
    cudaFree(d_xyz1);
    cudaFree(d_xyz2);
    cudaFree(d_dist);
    cudaFree(d_match);
    cudaFree(d_workspace);
    cudaEventDestroy(begin);
    cudaEventDestroy(end);
  }
  ok = CheckNonFinite(serial) && ok;
  return ok ? 0 : 1;
}
