// CUDA kernel of the EMD auction (same algorithm and bound as emd_core.h).
// The header is free of CUDA and TensorFlow includes: streams travel as
// void* (a cudaStream_t), so the op and the harness share it.
#ifndef TF_OPS_EMD_CUDA_H_
#define TF_OPS_EMD_CUDA_H_

#include <cstddef>
#include <cstdint>

namespace emd {
namespace cuda {

// Bytes of device scratch memory SolveAuctionBatch needs.
size_t WorkspaceBytes(int64_t batch, int64_t n);

// Enqueues the batched auction on `stream`. All pointers are device memory:
// xyz1, xyz2 (batch, n, 3); dist (batch,); match (batch, n); workspace of
// WorkspaceBytes(batch, n). One thread block solves one problem. Returns
// nullptr on success, otherwise the CUDA error message of the launch.
const char* SolveAuctionBatch(const float* xyz1, const float* xyz2,
                              int64_t batch, int64_t n, double tolerance,
                              float* dist, int32_t* match, void* workspace,
                              void* stream);

}  // namespace cuda
}  // namespace emd

#endif  // TF_OPS_EMD_CUDA_H_
