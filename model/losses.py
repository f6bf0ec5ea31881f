"""Reconstruction losses, Eqs. 7-11 of the paper (SPEC 3).

Per-sample errors are (B,) float32; `reconstruction_terms` reduces them to the scalar terms of
Eq. 11. Poses and clouds are in normalised units (root-relative, divided by the scale bone).

Weak supervision (paper Fig. 8): samples with labelled = 0 have no 3D pose and, since the
heatmaps are drawn from the same keypoint annotation, no heatmaps either; both terms are means
over the labelled samples of the batch only (0 when none is labelled), so the balance of Eq. 11
does not change with the labelled fraction. The cloud terms use every sample.
"""
from typing import Dict, Optional

import tensorflow as tf


def safe_norm(x: tf.Tensor, axis) -> tf.Tensor:
    """Euclidean norm over `axis` with a finite (zero) gradient where the norm is 0; NaN in x
    gives NaN (a NaN prediction must never look like a perfect one).

    Args:
      x: any shape; `axis` the axes reduced.

    Returns:
      x's shape without `axis`.
    """
    sq = tf.reduce_sum(tf.square(x), axis=axis)
    positive = sq > 0.0
    # Where sq is not positive it is 0 or NaN: return sq itself, whose gradient 2x is 0 at 0,
    # instead of sqrt's infinite one; a constant here would turn NaN into a zero loss.
    return tf.where(positive, tf.sqrt(tf.where(positive, sq, 1.0)), sq)


def pose_error(pred: tf.Tensor, gt: tf.Tensor) -> tf.Tensor:
    """Eq. 10 per sample: || y_hat - y ||, the norm of the (K x 3)-vector difference.

    Args:
      pred, gt: (B, K, 3) normalised poses.

    Returns:
      (B,).
    """
    return safe_norm(pred - gt, axis=[1, 2])


def heatmap_error(pred: tf.Tensor, gt: tf.Tensor) -> tf.Tensor:
    """Eq. 7 per sample: sum over the K maps of the Frobenius norm || H_hat_j - H_j ||.

    Args:
      pred, gt: (B, H, W, K).

    Returns:
      (B,).
    """
    return tf.reduce_sum(safe_norm(pred - gt, axis=[1, 2]), axis=-1)


def chamfer_error(pred: tf.Tensor, gt: tf.Tensor) -> tf.Tensor:
    """Eq. 8 per sample (plain Euclidean Chamfer distance), by the tf_ops kernel.

    tf_ops is imported here rather than at module top so that the model can be built and
    used for inference where the custom op has not been compiled (`make ops`).

    Args:
      pred, gt: (B, N, 3) and (B, M, 3).

    Returns:
      (B,).
    """
    from tf_ops import chamfer
    return chamfer.chamfer_distance(pred, gt)


def emd_error(pred: tf.Tensor, gt: tf.Tensor) -> tf.Tensor:
    """Eq. 9 per sample (earth mover's distance, mean matched distance), by the tf_ops kernel.

    Args:
      pred, gt: (B, N, 3) each, the same N.

    Returns:
      (B,).
    """
    from tf_ops import emd
    return emd.earth_mover_distance(pred, gt)


def per_sample_errors(predictions: Dict[str, tf.Tensor], targets: Dict[str, tf.Tensor]
                      ) -> Dict[str, tf.Tensor]:
    """The errors of Eqs. 7-10 for whichever modalities were decoded.

    Args:
      predictions: decoder outputs, 'pose' (B, K, 3) and optionally 'heatmaps' (B, H, W, K),
        'cloud' (B, N, 3).
      targets: the batch's 'pose', 'heatmaps', 'cloud' with the same shapes.

    Returns:
      dict of (B,) errors: 'pose', and 'heatmap' and/or 'chamfer', 'emd' where decoded.
    """
    for key, pred in predictions.items():
        if key not in targets:
            raise ValueError(f"the batch has no '{key}' to compare the decoded {key} with "
                             f"(batch keys: {sorted(targets)})")
        want = targets[key].shape
        if pred.shape.rank != want.rank or not pred.shape[1:].is_compatible_with(want[1:]):
            raise ValueError(f"decoded '{key}' has shape {pred.shape} but the batch's '{key}' "
                             f"has shape {want}; check the model config against the data "
                             "(image_size, num_points)")
    errors = {"pose": pose_error(predictions["pose"], targets["pose"])}
    if "heatmaps" in predictions:
        errors["heatmap"] = heatmap_error(predictions["heatmaps"], targets["heatmaps"])
    if "cloud" in predictions:
        errors["chamfer"] = chamfer_error(predictions["cloud"], targets["cloud"])
        errors["emd"] = emd_error(predictions["cloud"], targets["cloud"])
    return errors


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean of (B,) `values` over the samples where (B,) `mask` is 1; 0 if none is."""
    return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))


def reconstruction_terms(errors: Dict[str, tf.Tensor], lambda_heat: float, lambda_cloud: float,
                         labelled: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    """Scalar terms of Eq. 11 from per-sample errors.

    L_recon = L_pose + lambda_heat L_heat + lambda_cloud (L_Chamfer + L_EMD), each term a batch
    mean (pose and heatmap over labelled samples only, see the module docstring).

    Args:
      errors: output of `per_sample_errors`, (B,) each.
      lambda_heat, lambda_cloud: Eq. 11 weights.
      labelled: (B,) float 0/1, or None for all labelled.

    Returns:
      dict of scalars: the unweighted terms present ('pose', 'heatmap', 'chamfer', 'emd') and
      'recon', their Eq. 11 combination.
    """
    if labelled is None:
        labelled = tf.ones_like(errors["pose"])
    labelled = tf.cast(labelled, errors["pose"].dtype)
    terms = {"pose": masked_mean(errors["pose"], labelled)}
    recon = terms["pose"]
    if "heatmap" in errors:
        terms["heatmap"] = masked_mean(errors["heatmap"], labelled)
        recon += lambda_heat * terms["heatmap"]
    if "chamfer" in errors:
        terms["chamfer"] = tf.reduce_mean(errors["chamfer"])
        terms["emd"] = tf.reduce_mean(errors["emd"])
        recon += lambda_cloud * (terms["chamfer"] + terms["emd"])
    terms["recon"] = recon
    return terms
