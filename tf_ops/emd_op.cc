// TensorFlow registration of the Earth Mover's Distance op (SPEC Eq. 9).
// The kernels themselves live in emd_core.cc (CPU) and emd_cuda.cu (GPU),
// which know nothing of TensorFlow.
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include "emd_core.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

#if GOOGLE_CUDA
#include "emd_cuda.h"
#endif

namespace tensorflow {
namespace {

using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

REGISTER_OP("EarthMoverDistance")
    .Input("xyz1: float")
    .Input("xyz2: float")
    .Attr("tolerance: float = 1e-4")
    .Output("distance: float")
    .Output("match: int32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle xyz1, xyz2, merged;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &xyz1));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &xyz2));
      TF_RETURN_IF_ERROR(c->Merge(xyz1, xyz2, &merged));
      DimensionHandle three;
      TF_RETURN_IF_ERROR(c->WithValue(c->Dim(merged, 2), 3, &three));
      c->set_output(0, c->Vector(c->Dim(merged, 0)));
      c->set_output(1, c->Matrix(c->Dim(merged, 0), c->Dim(merged, 1)));
      return OkStatus();
    })
    .Doc(R"doc(
Earth Mover's Distance between equal-size point clouds (Eq. 9): the mean
Euclidean distance under the optimal bijection, by an epsilon-scaling auction
whose duality gap certifies a relative error of at most `tolerance` (>= 0).
A cloud holding NaN or inf gets a NaN distance and the identity match.

xyz1: (B, N, 3) points.
xyz2: (B, N, 3) points.
distance: (B,) mean matched distance.
match: (B, N) permutation; xyz2[b, match[b, i]] is the partner of xyz1[b, i].
)doc");

// Checks ranks, the last dimension and equal batch and point counts; fills
// batch and n.
Status ValidateClouds(const Tensor& xyz1, const Tensor& xyz2, int64_t* batch,
                      int64_t* n) {
  const TensorShape& s1 = xyz1.shape();
  const TensorShape& s2 = xyz2.shape();
  if (s1.dims() != 3 || s2.dims() != 3 || s1.dim_size(2) != 3 ||
      s2.dim_size(2) != 3 || s1 != s2) {
    return errors::InvalidArgument(
        "EarthMoverDistance expects xyz1 and xyz2 of the same shape (B, N, "
        "3); got xyz1 ",
        s1.DebugString(), " and xyz2 ", s2.DebugString());
  }
  if (s1.dim_size(1) > std::numeric_limits<int32>::max()) {
    return errors::InvalidArgument("EarthMoverDistance: too many points in ",
                                   s1.DebugString());
  }
  *batch = s1.dim_size(0);
  *n = s1.dim_size(1);
  return OkStatus();
}

// Attribute, validation and outputs shared by the CPU and GPU kernels; each
// device supplies Solve() over the allocated outputs.
class EarthMoverDistanceOpBase : public OpKernel {
 public:
  explicit EarthMoverDistanceOpBase(OpKernelConstruction* context)
      : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("tolerance", &tolerance_));
    OP_REQUIRES(context, tolerance_ >= 0.0f,
                errors::InvalidArgument(
                    "EarthMoverDistance: tolerance must be >= 0; got ",
                    tolerance_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& xyz1 = context->input(0);
    const Tensor& xyz2 = context->input(1);
    int64_t batch = 0, n = 0;
    OP_REQUIRES_OK(context, ValidateClouds(xyz1, xyz2, &batch, &n));
    Tensor* distance = nullptr;
    Tensor* match = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, TensorShape({batch}), &distance));
    OP_REQUIRES_OK(context, context->allocate_output(
                                1, TensorShape({batch, n}), &match));
    if (batch == 0) return;
    Solve(context, xyz1.flat<float>().data(), xyz2.flat<float>().data(),
          batch, n, distance->flat<float>().data(),
          match->flat<int32>().data());
  }

 protected:
  virtual void Solve(OpKernelContext* context, const float* xyz1,
                     const float* xyz2, int64_t batch, int64_t n,
                     float* distance, int32* match) = 0;

  float tolerance_;
};

class EarthMoverDistanceCpuOp : public EarthMoverDistanceOpBase {
 public:
  using EarthMoverDistanceOpBase::EarthMoverDistanceOpBase;

 protected:
  void Solve(OpKernelContext* context, const float* xyz1, const float* xyz2,
             int64_t batch, int64_t n, float* distance,
             int32* match) override {
    auto* workers = context->device()->tensorflow_cpu_worker_threads();
    // Roughly 20 bids of N float additions per point, plus the cost matrix.
    const int64_t cost_per_problem = 40 * n * n + 1000;
    emd::SolveAuctionBatch(
        xyz1, xyz2, batch, n, tolerance_, distance, match,
        [&](int64_t count, const std::function<void(int64_t, int64_t)>& body) {
          Shard(workers->num_threads, workers->workers, count,
                cost_per_problem, body);
        });
  }
};

REGISTER_KERNEL_BUILDER(Name("EarthMoverDistance").Device(DEVICE_CPU),
                        EarthMoverDistanceCpuOp);

#if GOOGLE_CUDA
class EarthMoverDistanceGpuOp : public EarthMoverDistanceOpBase {
 public:
  using EarthMoverDistanceOpBase::EarthMoverDistanceOpBase;

 protected:
  void Solve(OpKernelContext* context, const float* xyz1, const float* xyz2,
             int64_t batch, int64_t n, float* distance,
             int32* match) override {
    Tensor workspace;
    OP_REQUIRES_OK(
        context,
        context->allocate_temp(
            DT_INT8,
            TensorShape({static_cast<int64_t>(
                emd::cuda::WorkspaceBytes(batch, n))}),
            &workspace));
    const char* error = emd::cuda::SolveAuctionBatch(
        xyz1, xyz2, batch, n, tolerance_, distance, match,
        workspace.flat<int8>().data(),
        context->eigen_device<Eigen::GpuDevice>().stream());
    OP_REQUIRES(context, error == nullptr,
                errors::Internal("EarthMoverDistance CUDA kernel: ", error));
  }
};

REGISTER_KERNEL_BUILDER(Name("EarthMoverDistance").Device(DEVICE_GPU),
                        EarthMoverDistanceGpuOp);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace tensorflow
