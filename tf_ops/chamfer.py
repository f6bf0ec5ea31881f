"""Chamfer distance between point clouds (SPEC Eq. 8), plain Euclidean.

CD(P, Q) = mean_{p in P} min_{q in Q} ||p - q|| + mean_{q in Q} min_{p in P}
||p - q||. Unlike tensorflow-graphics' chamfer_distance the distances are not
squared; the square root is made safe so that coinciding points give a finite
(zero) gradient instead of 0 / 0.
"""
import tensorflow as tf


def _invalid(message):
    return tf.errors.InvalidArgumentError(None, None, message)


def _safe_sqrt(x):
    """sqrt(x) for x >= 0 with gradient 0 (not inf) at x = 0; NaN stays NaN."""
    positive = x > 0
    # Not positive means 0 or NaN: x itself is the root there (0 with a finite
    # gradient, or NaN), so a NaN cloud never scores a zero distance.
    return tf.where(positive, tf.sqrt(tf.where(positive, x, tf.ones_like(x))), x)


def chamfer_distance(xyz1, xyz2):
    """Eq. 8 per batch element.

    Args:
      xyz1: (B, N, 3) float points.
      xyz2: (B, M, 3) float points, same dtype.

    Returns:
      (B,) Chamfer distance in the units of the inputs; NaN for an element with a
      NaN coordinate (tf.reduce_min propagates NaN on the CPU and the GPU).
    """
    xyz1 = tf.convert_to_tensor(xyz1)
    xyz2 = tf.convert_to_tensor(xyz2, dtype_hint=xyz1.dtype)
    shapes = f"xyz1 {xyz1.shape} {xyz1.dtype.name} and xyz2 {xyz2.shape} " \
             f"{xyz2.dtype.name}"
    if not xyz1.dtype.is_floating or xyz1.dtype != xyz2.dtype:
        raise _invalid(f"chamfer_distance expects float clouds of one dtype; got "
                       f"{shapes}")
    for shape in (xyz1.shape, xyz2.shape):
        if shape.rank is not None and (shape.rank != 3 or
                                       shape[2] not in (None, 3)):
            raise _invalid(
                f"chamfer_distance expects clouds of shape (B, N, 3); got {shapes}")
    if not xyz1.shape[:1].is_compatible_with(xyz2.shape[:1]):
        raise _invalid(f"chamfer_distance expects equal batch sizes; got {shapes}")
    # (B, N, M) squared distances; the minimum is taken before the square root
    # (monotone), so only B (N + M) roots are needed.
    squared = tf.reduce_sum(
        tf.square(xyz1[:, :, None, :] - xyz2[:, None, :, :]), axis=-1)
    forward = _safe_sqrt(tf.reduce_min(squared, axis=2))
    backward = _safe_sqrt(tf.reduce_min(squared, axis=1))
    return tf.reduce_mean(forward, axis=1) + tf.reduce_mean(backward, axis=1)
