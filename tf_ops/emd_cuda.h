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

// Where one problem's solve spends its time, counted by thread 0 of its block
// with clock64() (SM cycles) between the block-wide barriers that close each
// stage. A round is one Jacobi step: all unassigned persons bid, then every
// object resolves its bids, then the block looks for unassigned persons.
struct AuctionProfile {
  long long phases;              // epsilon-scaling phases
  long long rounds;              // Jacobi rounds over all phases
  long long bids;                // bids placed over all rounds
  long long cycles_bid;          // bidders' scans and atomicMax
  long long cycles_resolve;      // objects taking their highest bid
  long long cycles_unassigned;   // the scan for unassigned persons
  long long cycles_certificate;  // duality gap and freeing for the next phase
  long long cycles_total;        // the whole kernel, set-up included
};

// Enqueues the batched auction on `stream`. All pointers are device memory:
// xyz1, xyz2 (batch, n, 3); dist (batch,); match (batch, n); workspace of
// WorkspaceBytes(batch, n). One thread block solves one problem. Optional
// outputs (nullptr to skip): price (batch, n), the final object prices, from
// which the harness recomputes the certificate on the host; profile (batch,),
// the counters above (their atomics make a profiled solve a little slower).
// Returns nullptr on success, otherwise the CUDA error message of the launch.
const char* SolveAuctionBatch(const float* xyz1, const float* xyz2,
                              int64_t batch, int64_t n, double tolerance,
                              float* dist, int32_t* match, void* workspace,
                              void* stream, float* price = nullptr,
                              AuctionProfile* profile = nullptr);

}  // namespace cuda
}  // namespace emd

#endif  // TF_OPS_EMD_CUDA_H_
