"""Training augmentation applied consistently to every modality, and the heatmap targets (SPEC 5).

Pure TensorFlow, so it runs inside the tf.data map. Randomness is stateless, keyed by a (2,)
seed, so a pipeline keyed by (seed, element counter) is reproducible.

An augmentation is an in-plane similarity of the crop about its centre c = ((S-1)/2, (S-1)/2):
  p' = s Rot(theta) (p - c) + c + t        (pixels, p = (u, v))
with the same theta applied to the 3D pose and cloud about the camera z axis. Rotating an image
about any point is a rotation of the camera about its optical axis plus a shift of the principal
point, so the 3D rotation is exact given the correspondingly updated intrinsics
K' = A K_crop Rz(theta)^T (A the 3x3 matrix of the map above; see `augmented_intrinsics`). Scale
and translation only change the intrinsics, not the root-relative pose.

The rotation matrices come from tensorflow_graphics. They are applied with tf.linalg.matvec, not
tensorflow_graphics' `rotate`, which broadcasts an unknown point count to 1 in graph mode and so
fails on a cloud whose size is known only at run time.
"""
import math

import numpy as np
import tensorflow as tf
import tensorflow_addons as tfa

from data_pipeline.config import HEATMAP_STRIDE

SCALE_RANGE = (1.0, 1.2)
TRANSLATION_PX = 20.0  # at a 256-px crop; scaled with the crop size
ROTATION_RANGE = math.pi
HUE_RANGE = 0.1  # fraction of the hue circle (tf.image.adjust_hue's unit)
HEATMAP_SIGMA = 1.5  # Gaussian std in heatmap cells (6 px of a 256-px crop)


def sample_params(seed, image_size):
    """Draws one augmentation.

    Args:
      seed: (2,) int32/int64 stateless seed.
      image_size: crop side S, pixels.

    Returns:
      dict of float32 tensors: scale (), translation (2,) pixels, angle () radians, hue ().
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    max_shift = TRANSLATION_PX * image_size / 256.0
    return {
        "scale": tf.random.stateless_uniform([], seeds[0], *SCALE_RANGE),
        "translation": tf.random.stateless_uniform([2], seeds[1], -max_shift, max_shift),
        "angle": tf.random.stateless_uniform([], seeds[2], -ROTATION_RANGE, ROTATION_RANGE),
        "hue": tf.random.stateless_uniform([], seeds[3], -HUE_RANGE, HUE_RANGE),
    }


def _rotation_modules():
    """tensorflow_graphics' rotation_matrix_2d and rotation_matrix_3d, imported on first use: the
    import takes seconds (docs/environment.md) and only augmentation needs them, so evaluation
    and inference, which import this module too, do not pay it."""
    # pylint: disable=import-outside-toplevel
    from tensorflow_graphics.geometry.transformation import rotation_matrix_2d, rotation_matrix_3d
    return rotation_matrix_2d, rotation_matrix_3d


def rotation_z(angle):
    """(3, 3) float32 right-handed rotation by `angle` (() float32, radians) about the camera z
    (viewing) axis: Euler angles (0, 0, angle)."""
    zero = tf.zeros_like(angle)
    return _rotation_modules()[1].from_euler(tf.stack([zero, zero, angle]))


def pixel_transform(params, image_size):
    """(3, 3) float32 matrix A of the forward pixel map p' = s Rot (p - c) + c + t."""
    c = (image_size - 1) / 2.0
    rot = params["scale"] * _rotation_modules()[0].from_euler(params["angle"][None])
    offset = params["translation"] + c - tf.linalg.matvec(rot, tf.constant([c, c]))
    top = tf.concat([rot, offset[:, None]], axis=1)
    return tf.concat([top, tf.constant([[0.0, 0.0, 1.0]])], axis=0)


def augmented_intrinsics(K_crop, params, image_size):
    """Intrinsics of the augmented crop in the rotated frame: K' = A K_crop Rz(theta)^T.

    With R' = Rz(theta) R_view, crop pixels are project(K', R' X_camera) again; K' stays an upper
    triangular intrinsics matrix (focal s f, principal point moved).

    Args:
      K_crop: (3, 3) intrinsics of the un-augmented crop.
      params: from `sample_params`.
      image_size: crop side S.

    Returns:
      (3, 3) float64 NumPy array.
    """
    A = pixel_transform(params, image_size).numpy().astype(np.float64)
    Rz = rotation_z(params["angle"]).numpy().astype(np.float64)
    return A @ np.asarray(K_crop, np.float64) @ Rz.T


def augment(image, keypoints_2d, pose, cloud, params):
    """Applies one augmentation to every modality of an example.

    Args:
      image: (S, S, 3) float32 in [0, 1].
      keypoints_2d: (21, 2) float32 crop pixels.
      pose: (21, 3) float32 normalised pose.
      cloud: (N, 3) float32 normalised cloud, or None (returned as None).
      params: from `sample_params`.

    Returns:
      (image, keypoints_2d, pose, cloud) with the same shapes; the image is black where the
      transform looks outside the crop.
    """
    image_size = image.shape[0]
    A = pixel_transform(params, image_size)
    # tfa.image.transform maps output pixels to input pixels, so it takes A's inverse.
    inverse = tf.linalg.inv(A)
    flat = tf.reshape(inverse, [9])[:8] / inverse[2, 2]
    image = tfa.image.transform(image, flat, interpolation="bilinear", fill_mode="constant")
    image = tf.clip_by_value(tf.image.adjust_hue(image, params["hue"]), 0.0, 1.0)
    keypoints_2d = tf.linalg.matvec(A[:2, :2], keypoints_2d) + A[:2, 2]
    Rz = rotation_z(params["angle"])
    pose = tf.linalg.matvec(Rz, pose)
    if cloud is not None:
        cloud = tf.linalg.matvec(Rz, cloud)
    return image, keypoints_2d, pose, cloud


def heatmaps(keypoints_2d, image_size, sigma=HEATMAP_SIGMA):
    """Gaussian heatmaps on the S/4 x S/4 grid, value 1 at the keypoint itself.

    Heatmap cell (i, j) covers crop pixels [4j, 4j + 3] x [4i, 4i + 3], so its centre is crop
    pixel (4j + 1.5, 4i + 1.5). A keypoint outside the crop gives a (nearly) empty map.

    Args:
      keypoints_2d: (21, 2) float32 crop pixels (u, v).
      image_size: crop side S (a multiple of 4).
      sigma: Gaussian standard deviation, heatmap cells.

    Returns:
      (S/4, S/4, 21) float32.
    """
    size = image_size // HEATMAP_STRIDE
    centres = (keypoints_2d - (HEATMAP_STRIDE - 1) / 2.0) / HEATMAP_STRIDE  # (21, 2) cells
    grid = tf.range(size, dtype=tf.float32)
    du = grid[None, :, None] - centres[:, 0][None, None, :]  # (1, S/4, 21) along columns
    dv = grid[:, None, None] - centres[:, 1][None, None, :]  # (S/4, 1, 21) along rows
    return tf.exp(-(du ** 2 + dv ** 2) / (2.0 * sigma ** 2))
