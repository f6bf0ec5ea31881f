// Jacobi auction with epsilon-scaling on the GPU: every unassigned point of
// xyz1 bids at once (one warp per bidder), each object of xyz2 keeps the
// highest bid through a 64-bit atomicMax on (price bits, bidder). The phase
// ends with the same duality-gap certificate as the CPU kernel.
// Plain CUDA: no TensorFlow headers, shared by the op and the harness.
#include "emd_core.h"
#include "emd_cuda.h"

#include <cuda_runtime.h>

#include <math_constants.h>

#include <cfloat>

namespace emd {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kEpsilonShrink = 8.0f;
constexpr float kInitialEpsilonFraction = 1.0f / 32.0f;
constexpr double kFloatRounding = 1.0 / (1 << 24);

__device__ __forceinline__ float Distance(const float* p, const float* q) {
  const float dx = p[0] - q[0];
  const float dy = p[1] - q[1];
  const float dz = p[2] - q[2];
  return sqrtf(dx * dx + dy * dy + dz * dz);
}

// Sum over the block; every thread gets the result.
__device__ double BlockSum(double value, double* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) {
    value += __shfl_down_sync(kFullMask, value, offset);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < kWarps; ++w) total += scratch[w];
  return total;
}

__device__ float BlockMin(float value, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) {
    value = fminf(value, __shfl_down_sync(kFullMask, value, offset));
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  float result = FLT_MAX;
  for (int w = 0; w < kWarps; ++w) result = fminf(result, scratch[w]);
  return result;
}

// The two smallest cost + price over the objects and the argmin, reduced
// over the warp; every lane gets the result.
__device__ void WarpBest2(const float* p, const float* xyz2, const float* price,
                          int n, float* m1_out, float* m2_out, int* j1_out) {
  const int lane = threadIdx.x % 32;
  float m1 = FLT_MAX, m2 = FLT_MAX;
  int j1 = n;
  for (int j = lane; j < n; j += 32) {
    const float v = Distance(p, xyz2 + 3 * j) + price[j];
    if (v < m1) {
      m2 = m1;
      m1 = v;
      j1 = j;
    } else if (v < m2) {
      m2 = v;
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const float o1 = __shfl_xor_sync(kFullMask, m1, offset);
    const float o2 = __shfl_xor_sync(kFullMask, m2, offset);
    const int oj = __shfl_xor_sync(kFullMask, j1, offset);
    m2 = fminf(fminf(m2, o2), fmaxf(m1, o1));
    if (o1 < m1 || (o1 == m1 && oj < j1)) {
      m1 = o1;
      j1 = oj;
    }
  }
  *m1_out = m1;
  *m2_out = m2;
  *j1_out = j1;
}

// Adds the cycles since *mark to *total and moves the mark (profiling).
__device__ __forceinline__ void Lap(long long* total, long long* mark) {
  const long long now = clock64();
  *total += now - *mark;
  *mark = now;
}

__global__ void __launch_bounds__(kThreads)
    AuctionKernel(const float* xyz1_all, const float* xyz2_all, int n,
                  float tolerance, float* dist, int* match_all,
                  unsigned long long* keys_all, float* price_all,
                  int* owner_all, float* row_min_all,
                  AuctionProfile* profile_all) {
  __shared__ double sum_scratch[kWarps];
  __shared__ float min_scratch[kWarps];
  __shared__ float s_epsilon;
  __shared__ int s_continue;
  __shared__ unsigned long long s_bids;
  // Thread 0 keeps the profile; it passes every barrier that ends a stage.
  const bool profiling = profile_all != nullptr;
  AuctionProfile counters = {};
  const long long start = clock64();
  long long mark = start;

  const size_t offset = static_cast<size_t>(blockIdx.x) * n;
  const float* xyz1 = xyz1_all + 3 * offset;
  const float* xyz2 = xyz2_all + 3 * offset;
  int* match = match_all + offset;
  unsigned long long* keys = keys_all + offset;
  float* price = price_all + offset;
  int* owner = owner_all + offset;
  float* row_min = row_min_all + offset;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  if (tid == 0) s_bids = 0ull;

  // NaN or inf anywhere: NaN distance and the identity, as the CPU kernel.
  int nonfinite = 0;
  for (int k = tid; k < 3 * n; k += kThreads) {
    nonfinite |= !isfinite(xyz1[k]) || !isfinite(xyz2[k]);
  }
  if (__syncthreads_or(nonfinite)) {
    for (int i = tid; i < n; i += kThreads) {
      match[i] = i;
      price[i] = 0.0f;
    }
    if (tid == 0) {
      dist[blockIdx.x] = CUDART_NAN_F;
      if (profiling) {
        counters.cycles_total = clock64() - start;
        profile_all[blockIdx.x] = counters;
      }
    }
    return;
  }

  // Bounding-box diagonal of both clouds sets the epsilon schedule.
  float lo[3] = {FLT_MAX, FLT_MAX, FLT_MAX}, hi[3] = {-FLT_MAX, -FLT_MAX,
                                                      -FLT_MAX};
  for (int i = tid; i < n; i += kThreads) {
    for (int d = 0; d < 3; ++d) {
      lo[d] = fminf(lo[d], fminf(xyz1[3 * i + d], xyz2[3 * i + d]));
      hi[d] = fmaxf(hi[d], fmaxf(xyz1[3 * i + d], xyz2[3 * i + d]));
    }
  }
  float extent2 = 0.0f;
  for (int d = 0; d < 3; ++d) {
    const float range = -BlockMin(-hi[d], min_scratch) - BlockMin(lo[d], min_scratch);
    extent2 += range * range;
  }
  const float diagonal = sqrtf(extent2);

  for (int i = tid; i < n; i += kThreads) {
    match[i] = (n == 1 || diagonal == 0.0f) ? i : -1;
    owner[i] = -1;
    price[i] = 0.0f;
    keys[i] = 0ull;
  }
  __syncthreads();

  if (n > 1 && diagonal > 0.0f) {
    const float min_epsilon =
        static_cast<float>(kMinEpsilonFraction) * diagonal;
    if (tid == 0) {
      s_epsilon = fmaxf(diagonal * kInitialEpsilonFraction, min_epsilon);
    }
    __syncthreads();
    if (profiling && tid == 0) mark = clock64();  // set-up counts in total only
    while (true) {
      const float epsilon = s_epsilon;
      while (true) {
        // Bids of all unassigned persons against the current prices.
        for (int i = warp; i < n; i += kWarps) {
          if (match[i] >= 0) continue;
          float m1, m2;
          int j1;
          WarpBest2(xyz1 + 3 * i, xyz2, price, n, &m1, &m2, &j1);
          if (lane == 0) {
            float raised = price[j1] + ((m2 - m1) + epsilon);
            if (!(raised > price[j1])) raised = nextafterf(price[j1], FLT_MAX);
            const unsigned long long key =
                (static_cast<unsigned long long>(__float_as_uint(raised))
                 << 32) |
                static_cast<unsigned>(i);
            atomicMax(keys + j1, key);
            if (profiling) atomicAdd(&s_bids, 1ull);
          }
        }
        __syncthreads();
        if (profiling && tid == 0) Lap(&counters.cycles_bid, &mark);
        // Each object goes to its highest bidder; the old owner is freed.
        for (int j = tid; j < n; j += kThreads) {
          const unsigned long long key = keys[j];
          if (key == 0ull) continue;
          const int winner = static_cast<int>(key & 0xffffffffull);
          const int previous = owner[j];
          if (previous >= 0) match[previous] = -1;
          owner[j] = winner;
          match[winner] = j;
          price[j] = __uint_as_float(static_cast<unsigned>(key >> 32));
          keys[j] = 0ull;
        }
        __syncthreads();
        if (profiling && tid == 0) Lap(&counters.cycles_resolve, &mark);
        int unassigned = 0;
        for (int i = tid; i < n; i += kThreads) unassigned |= (match[i] < 0);
        const int any_unassigned = __syncthreads_or(unassigned);
        if (profiling && tid == 0) {
          Lap(&counters.cycles_unassigned, &mark);
          ++counters.rounds;
        }
        if (any_unassigned == 0) break;
      }

      // Duality-gap certificate, as in emd_core.cc.
      double primal = 0.0, row_min_sum = 0.0, price_sum = 0.0;
      for (int i = warp; i < n; i += kWarps) {
        float m1, m2;
        int j1;
        WarpBest2(xyz1 + 3 * i, xyz2, price, n, &m1, &m2, &j1);
        if (lane == 0) {
          row_min[i] = m1;
          row_min_sum += m1 / (1.0 + kFloatRounding);
          primal += Distance(xyz1 + 3 * i, xyz2 + 3 * match[i]);
        }
      }
      for (int j = tid; j < n; j += kThreads) price_sum += price[j];
      primal = BlockSum(primal, sum_scratch);
      const double lower_bound = BlockSum(row_min_sum, sum_scratch) -
                                 BlockSum(price_sum, sum_scratch);
      if (tid == 0) {
        const bool done = primal - lower_bound <= tolerance * lower_bound ||
                          epsilon <= min_epsilon;
        s_continue = done ? 0 : 1;
        s_epsilon = fmaxf(epsilon / kEpsilonShrink, min_epsilon);
      }
      __syncthreads();
      if (profiling && tid == 0) ++counters.phases;
      if (!s_continue) {
        if (profiling && tid == 0) Lap(&counters.cycles_certificate, &mark);
        break;
      }
      // Free the persons that violate epsilon-CS for the next epsilon.
      const float next = s_epsilon;
      for (int i = tid; i < n; i += kThreads) {
        const int j = match[i];
        if (Distance(xyz1 + 3 * i, xyz2 + 3 * j) + price[j] >
            row_min[i] + next) {
          owner[j] = -1;
          match[i] = -1;
        }
      }
      __syncthreads();
      if (profiling && tid == 0) Lap(&counters.cycles_certificate, &mark);
    }
  }

  // Eq. 9 from the coordinates in double.
  double sum = 0.0;
  for (int i = tid; i < n; i += kThreads) {
    const float* p = xyz1 + 3 * i;
    const float* q = xyz2 + 3 * match[i];
    const double dx = static_cast<double>(p[0]) - q[0];
    const double dy = static_cast<double>(p[1]) - q[1];
    const double dz = static_cast<double>(p[2]) - q[2];
    sum += sqrt(dx * dx + dy * dy + dz * dz);
  }
  sum = BlockSum(sum, sum_scratch);
  if (tid == 0) {
    dist[blockIdx.x] = n > 0 ? static_cast<float>(sum / n) : 0.0f;
    if (profiling) {
      counters.bids = static_cast<long long>(s_bids);
      counters.cycles_total = clock64() - start;
      profile_all[blockIdx.x] = counters;
    }
  }
}

}  // namespace

size_t WorkspaceBytes(int64_t batch, int64_t n) {
  return static_cast<size_t>(batch * n) *
         (sizeof(unsigned long long) + sizeof(float) + sizeof(int) +
          sizeof(float));
}

const char* SolveAuctionBatch(const float* xyz1, const float* xyz2,
                              int64_t batch, int64_t n, double tolerance,
                              float* dist, int32_t* match, void* workspace,
                              void* stream, float* price,
                              AuctionProfile* profile) {
  if (batch == 0) return nullptr;
  const size_t count = static_cast<size_t>(batch * n);
  auto* keys = static_cast<unsigned long long*>(workspace);
  auto* workspace_price = reinterpret_cast<float*>(keys + count);
  auto* owner = reinterpret_cast<int*>(workspace_price + count);
  auto* row_min = reinterpret_cast<float*>(owner + count);
  AuctionKernel<<<static_cast<unsigned>(batch), kThreads, 0,
                  static_cast<cudaStream_t>(stream)>>>(
      xyz1, xyz2, static_cast<int>(n), static_cast<float>(tolerance), dist,
      match, keys, price != nullptr ? price : workspace_price, owner, row_min,
      profile);
  const cudaError_t error = cudaGetLastError();
  return error == cudaSuccess ? nullptr : cudaGetErrorString(error);
}

}  // namespace cuda
}  // namespace emd
