"""Runs a trained model over a data set and scores it (SPEC 6); shared by evaluate.py and training.

Inference uses the RGB encoder only, with z = the mean of q(z|R) (SPEC 2). Poses come out of the
network normalised (root-relative, divided by the middle MCP-PIP bone length s); both prediction
and ground truth are turned into mm with the ground-truth scale, pose * s * 1000. Distances do not
change under the viewpoint rotation R_view, so the view-corrected frame is scored as it is.
"""
import weakref
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from evaluation import protocol

MM_PER_METRE = 1000.0


def to_mm(pose, scale):
    """Normalised poses (B, 21, 3) times the scale (B,) in metres -> (B, 21, 3) mm (numpy)."""
    scale = np.asarray(scale, np.float64)[:, None, None]
    return np.asarray(pose, np.float64) * scale * MM_PER_METRE


# One traced predictor per model, so that validating every few hundred steps does not retrace.
_POSE_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _pose_fn(model):
    # reduce_retracing keeps a last partial batch from adding a trace per shape.
    if model not in _POSE_FNS:
        ref = weakref.ref(model)  # the cached function must not keep its model alive
        _POSE_FNS[model] = tf.function(lambda image: ref().predict_pose(image, training=False),
                                       reduce_retracing=True)
    return _POSE_FNS[model]


def _batches(model, dataset: tf.data.Dataset, max_batches: Optional[int]):
    """Yields (batch dict of numpy arrays, predicted normalised pose) per batch."""
    predict = _pose_fn(model)
    for b, batch in enumerate(dataset):
        if max_batches is not None and b >= max_batches:
            break
        pose = predict(batch["image"])
        yield {k: v.numpy() for k, v in batch.items()}, pose.numpy()


def predict_dataset(model, dataset: tf.data.Dataset,
                    max_batches: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Predicts the 3D pose of every sample of a batched dataset from RGB alone.

    Args:
      model: has `predict_pose(image, training=False) -> (B, 21, 3)` normalised poses.
      dataset: batches as from data_pipeline.dataset.build_dataset (image, pose, scale, visible,
        index are used).
      max_batches: stop after this many batches (None: the whole dataset).

    Returns:
      dict of numpy arrays over the M samples: pred_mm, gt_mm (M, 21, 3) float64 root-relative mm;
      visible (M, 21) float32 0/1; index (M,) int64 sample indices.
    """
    out = {"pred_mm": [], "gt_mm": [], "visible": [], "index": []}
    for batch, pose in _batches(model, dataset, max_batches):
        out["pred_mm"].append(to_mm(pose, batch["scale"]))
        out["gt_mm"].append(to_mm(batch["pose"], batch["scale"]))
        out["visible"].append(batch["visible"].astype(np.float32))
        out["index"].append(batch["index"].astype(np.int64))
    if not out["pred_mm"]:
        raise ValueError("predict_dataset: the dataset yielded no batch")
    return {k: np.concatenate(v) for k, v in out.items()}


def evaluate_model(model, dataset: tf.data.Dataset, max_batches: Optional[int] = None) -> Dict:
    """SPEC 6 metrics of `model` on `dataset` (see protocol.evaluate_pose), streaming.

    Holds only per-keypoint errors, not the poses; this is training's validation.

    Returns:
      the protocol's metrics dict plus num_samples.
    """
    evaluator = protocol.PoseEvaluator()
    for batch, pose in _batches(model, dataset, max_batches):
        evaluator.add(to_mm(pose, batch["scale"]), to_mm(batch["pose"], batch["scale"]),
                      batch["visible"])
    if evaluator.num_samples == 0:
        raise ValueError("evaluate_model: the dataset yielded no batch")
    return dict(evaluator.result(), num_samples=evaluator.num_samples)


def decode_from_rgb(model, images) -> Dict[str, np.ndarray]:
    """Encodes RGB images and decodes z = mean of q(z|R) (the paper's Fig. 3 path).

    Args:
      model: has `encode_rgb(image, training=False) -> (mu, logvar)` and
        `decode(z, training=False) -> dict` with 'pose' and optionally 'cloud'.
      images: (B, S, S, 3) float32 in [0, 1].

    Returns:
      dict of numpy arrays: z (B, Z), pose (B, 21, 3) normalised, and cloud (B, N, 3) normalised
      when the model has a cloud decoder.
    """
    mu, _ = model.encode_rgb(tf.convert_to_tensor(images, tf.float32), training=False)
    return dict(decode_latents(model, mu), z=np.asarray(mu))


def decode_latents(model, z) -> Dict[str, np.ndarray]:
    """Decodes latent codes z (B, Z) to numpy 'pose' (B, 21, 3) and, if decoded, 'cloud'."""
    decoded = model.decode(tf.convert_to_tensor(z, tf.float32), training=False)
    return {k: np.asarray(decoded[k]) for k in ("pose", "cloud") if k in decoded}


def interpolate_latents(z_a, z_b, steps: int) -> np.ndarray:
    """Linear interpolation (1 - a) z_a + a z_b for a in linspace(0, 1, steps) (paper Fig. 4).

    Args:
      z_a, z_b: (Z,) latent codes.
      steps: number of codes, >= 2, both ends included.

    Returns:
      (steps, Z) float32.
    """
    if steps < 2:
        raise ValueError(f"interpolation needs at least 2 steps, got {steps}")
    alpha = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return ((1.0 - alpha) * np.asarray(z_a, np.float32)[None]
            + alpha * np.asarray(z_b, np.float32)[None])
