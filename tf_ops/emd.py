"""Earth Mover's Distance between equal-size point clouds (SPEC Eq. 9).

EMD(P, Q) = min over bijections phi of mean_p ||p - phi(p)||, in the units of
the coordinates. The custom op solves the assignment with an auction
algorithm with epsilon-scaling and stops when the duality gap of its prices
certifies

  (returned - optimum) / optimum <= tolerance   (default 1e-4).

For near-identical clouds, whose optimum is below about 1e-6 of the bounding
box diagonal, the bound is absolute instead: returned - optimum <= 1e-6 times
that diagonal. Distances are evaluated in float32 (about 1e-7 relative); the
returned mean is accumulated in double from the coordinates.

The gradient holds the matching fixed (SPEC 3): d EMD / d p = (p - phi(p)) /
(N ||p - phi(p)||), the opposite on the partner phi(p), zero where they
coincide.
"""
import tensorflow as tf

from tf_ops import LIBRARY

DEFAULT_TOLERANCE = 1e-4


def _invalid(message):
    return tf.errors.InvalidArgumentError(None, None, message)


def _check_clouds(xyz1, xyz2):
    """Converts the inputs and checks dtype and the static shapes.

    Dynamic shapes are checked again by the kernel.
    """
    xyz1 = tf.convert_to_tensor(xyz1)
    xyz2 = tf.convert_to_tensor(xyz2)
    shapes = f"xyz1 {xyz1.shape} {xyz1.dtype.name} and xyz2 {xyz2.shape} " \
             f"{xyz2.dtype.name}"
    if xyz1.dtype != tf.float32 or xyz2.dtype != tf.float32:
        raise _invalid(f"earth_mover_distance expects float32 clouds; got {shapes}")
    for shape in (xyz1.shape, xyz2.shape):
        if shape.rank is not None and (shape.rank != 3 or
                                       shape[2] not in (None, 3)):
            raise _invalid(
                f"earth_mover_distance expects clouds of shape (B, N, 3); got "
                f"{shapes}")
    if not xyz1.shape.is_compatible_with(xyz2.shape):
        raise _invalid(
            f"earth_mover_distance expects clouds of the same shape (B, N, 3); "
            f"got {shapes}")
    return xyz1, xyz2


def _solve(xyz1, xyz2, tolerance):
    xyz1, xyz2 = _check_clouds(xyz1, xyz2)
    return LIBRARY.earth_mover_distance(xyz1, xyz2, tolerance=tolerance)


def earth_mover_distance(xyz1, xyz2, tolerance=DEFAULT_TOLERANCE):
    """Eq. 9 per batch element.

    Args:
      xyz1: (B, N, 3) float32 points.
      xyz2: (B, N, 3) float32 points.
      tolerance: relative error bound of the auction (see the module doc).

    Returns:
      (B,) float32 mean Euclidean distance under the optimal bijection, in the
      units of the inputs; 0 when N = 0. Differentiable in both inputs.
    """
    return _solve(xyz1, xyz2, tolerance)[0]


def emd_match(xyz1, xyz2, tolerance=DEFAULT_TOLERANCE):
    """The bijection behind earth_mover_distance.

    Args:
      xyz1: (B, N, 3) float32 points.
      xyz2: (B, N, 3) float32 points.
      tolerance: relative error bound of the auction (see the module doc).

    Returns:
      (B, N) int32; each row a permutation, xyz2[b, match[b, i]] is the partner
      of xyz1[b, i].
    """
    return _solve(xyz1, xyz2, tolerance)[1]


@tf.RegisterGradient("EarthMoverDistance")
def _earth_mover_distance_grad(op, grad_distance, grad_match):
    """Gradient of Eq. 9 with the matching held fixed (SPEC 3)."""
    del grad_match  # The matching is piecewise constant.
    xyz1, xyz2 = op.inputs
    match = op.outputs[1]
    diff = xyz1 - tf.gather(xyz2, match, batch_dims=1)
    norm = tf.norm(diff, axis=-1, keepdims=True)
    n = tf.cast(tf.shape(xyz1)[1], xyz1.dtype)
    # Coinciding partners get a zero (sub)gradient instead of 0 / 0.
    grad1 = grad_distance[:, None, None] * tf.math.divide_no_nan(diff, norm * n)
    # Point j of xyz2 is the partner of xyz1[inverse[j]]; argsort inverts a
    # permutation.
    inverse = tf.argsort(match, axis=1)
    grad2 = -tf.gather(grad1, inverse, batch_dims=1)
    return grad1, grad2
