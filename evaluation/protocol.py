"""The 3D hand pose evaluation protocol (SPEC 6), computed as hand3d's EvalUtil does it.

(hand3d: Zimmermann & Brox's code, whose protocol published RHD and STB numbers follow.)

All quantities are in millimetres. For M samples of K = 21 keypoints:

  e_ij    = || gt_ij - pred_ij ||                       end-point error of keypoint j in sample i,
                                                         kept only where the keypoint is visible
  EPE     = mean_j mean_i e_ij                           (mean EPE: the mean of per-keypoint means)
  median  = mean_j median_i e_ij                         (likewise, of per-keypoint medians)
  PCK_j(t) = |{i : e_ij <= t}| / |{i : visible_ij}|
  PCK(t)  = mean_j PCK_j(t),  t in linspace(0, 50, 20)
  AUC     = trapz(PCK, t) / trapz(1, t)                  over t = linspace(0, 50, 20) ("AUC 0-50")
                                                         and over a curve of its own,
                                                         t = linspace(20, 50, 20) ("AUC 20-50")

"AUC 20-50" is what hand3d's EvalUtil.get_measures(20, 50, 20) returns, as STB tables and peers
compute it; it is not the tail of the 0-50 curve (which would start at 21.05 mm, with 12 points).

Averaging over keypoints first (not over all errors at once) weighs every keypoint equally however
often it is visible; this is what hand3d does and what published RHD/STB numbers use. A keypoint
that is visible in no sample has no error distribution; it is left out of the keypoint means (as
hand3d does), so the means run over the keypoints seen at least once.

This module is pure numpy so that it can score predictions made anywhere.
"""
from typing import Dict, Optional

import numpy as np

from data_pipeline.sample import NUM_KEYPOINTS

PCK_MAX_MM = 50.0
PCK_STEPS = 20
# Lower end of the "AUC 20-50" curve (EvalUtil.get_measures(20, 50, 20)).
AUC_20_50_MIN_MM = 20.0


def pck_thresholds_mm(low_mm: float = 0.0) -> np.ndarray:
    """PCK thresholds t = linspace(low_mm, 50, 20) in mm, shape (20,): the reported PCK curve
    and AUC 0-50 with the default, AUC 20-50 with low_mm = 20 (SPEC 6)."""
    return np.linspace(low_mm, PCK_MAX_MM, PCK_STEPS)


def area_under_curve(pck: np.ndarray, thresholds: np.ndarray) -> float:
    """Normalised area under a PCK curve: trapz(pck, t) / trapz(1, t), in [0, 1].

    Args:
      pck: (T,) fractions in [0, 1].
      thresholds: (T,) increasing thresholds, T >= 2.
    """
    return float(np.trapz(pck, thresholds) / np.trapz(np.ones_like(thresholds), thresholds))


def _check_poses(name: str, value, num_samples: Optional[int] = None) -> np.ndarray:
    """Returns `value` as float64 (M, 21, 3), or raises ValueError naming `name` and the shape."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 3 or array.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"{name} must have shape (M, {NUM_KEYPOINTS}, 3), got {array.shape}")
    if num_samples is not None and array.shape[0] != num_samples:
        raise ValueError(f"{name} has {array.shape[0]} samples but pred has {num_samples}")
    bad = ~np.all(np.isfinite(array), axis=(1, 2))
    if bad.any():
        raise ValueError(f"{name} has non-finite values in {int(bad.sum())} samples "
                         f"(first: sample {int(np.argmax(bad))})")
    return array


def _check_visible(visible, num_samples: int) -> np.ndarray:
    """Returns `visible` as bool (M, 21) (all True when None), or raises ValueError."""
    if visible is None:
        return np.ones((num_samples, NUM_KEYPOINTS), dtype=bool)
    array = np.asarray(visible)
    if array.shape != (num_samples, NUM_KEYPOINTS):
        raise ValueError(f"visible must have shape ({num_samples}, {NUM_KEYPOINTS}) to match "
                         f"pred, got {array.shape}")
    if array.dtype == bool:
        return array
    # Visibility flags are stored as 0/1 floats by the pipeline; anything else is a mistake.
    if not np.all((array == 0) | (array == 1)):
        raise ValueError("visible must hold only 0/1 (or booleans)")
    return array.astype(bool)


def keypoint_errors(pred_mm, gt_mm) -> np.ndarray:
    """Per-keypoint end-point errors e_ij = || gt_ij - pred_ij ||.

    Args:
      pred_mm, gt_mm: (M, 21, 3) root-relative poses in mm.

    Returns:
      (M, 21) float64 errors in mm.
    """
    pred = _check_poses("pred", pred_mm)
    gt = _check_poses("gt", gt_mm, num_samples=pred.shape[0])
    return np.linalg.norm(gt - pred, axis=-1)


def metrics_from_errors(errors: np.ndarray, visible: np.ndarray) -> Dict:
    """SPEC 6 metrics from per-keypoint errors (see the module docstring).

    Args:
      errors: (M, 21) errors in mm.
      visible: (M, 21) bool; only visible errors count.

    Returns:
      dict with epe_mean_mm, epe_median_mm, auc_0_50, auc_20_50 (floats), pck_thresholds_mm and
      pck (lists of 20 floats, the 0-50 curve; the 20-50 one only gives auc_20_50).

    Raises:
      ValueError: no keypoint is visible in any sample.
    """
    thresholds = pck_thresholds_mm()
    thresholds_20_50 = pck_thresholds_mm(AUC_20_50_MIN_MM)
    # Both curves in one pass: (2T,) thresholds, split after the PCK of each keypoint.
    both = np.concatenate([thresholds, thresholds_20_50])
    means, medians, curves = [], [], []
    for j in range(errors.shape[1]):
        e = errors[visible[:, j], j]
        if e.size == 0:
            continue
        means.append(e.mean())
        medians.append(np.median(e))
        curves.append((e[:, None] <= both[None, :]).mean(axis=0))
    if not curves:
        raise ValueError(f"no visible keypoint in {errors.shape[0]} samples: nothing to evaluate")
    pck, pck_20_50 = np.split(np.mean(curves, axis=0), 2)
    return {
        "epe_mean_mm": float(np.mean(means)),
        "epe_median_mm": float(np.mean(medians)),
        "auc_0_50": area_under_curve(pck, thresholds),
        "auc_20_50": area_under_curve(pck_20_50, thresholds_20_50),
        "pck_thresholds_mm": [float(t) for t in thresholds],
        "pck": [float(p) for p in pck],
    }


def evaluate_pose(pred_mm, gt_mm, visible=None) -> Dict:
    """Scores predicted 3D poses against the ground truth with the SPEC 6 protocol.

    Args:
      pred_mm: (M, 21, 3) predicted root-relative poses in mm (normalised prediction times the
        ground-truth scale).
      gt_mm: (M, 21, 3) ground-truth root-relative poses in mm.
      visible: optional (M, 21) 0/1 or bool; errors count only where 1 (RHD convention).
        None counts every keypoint.

    Returns:
      dict: epe_mean_mm, epe_median_mm, auc_0_50, auc_20_50, pck_thresholds_mm (20 floats),
      pck (20 floats).

    Raises:
      ValueError: a shape is wrong, a value is not finite, or nothing is visible.
    """
    errors = keypoint_errors(pred_mm, gt_mm)
    return metrics_from_errors(errors, _check_visible(visible, errors.shape[0]))


class PoseEvaluator:
    """Streaming form of `evaluate_pose`: feed batches, then read `result()`.

    Keeps only the (M, 21) errors and visibility flags, not the poses, so validating over a data
    set costs 21 floats per sample. The median needs every error, so nothing smaller would do.

    Example:
      evaluator = PoseEvaluator()
      for pred_mm, gt_mm, visible in batches:
        evaluator.add(pred_mm, gt_mm, visible)
      metrics = evaluator.result()
    """

    def __init__(self):
        self._errors = []
        self._visible = []

    @property
    def num_samples(self) -> int:
        """Samples added so far."""
        return sum(e.shape[0] for e in self._errors)

    def add(self, pred_mm, gt_mm, visible=None) -> None:
        """Adds a batch: pred_mm, gt_mm (B, 21, 3) mm; visible (B, 21) 0/1 or None (all)."""
        errors = keypoint_errors(pred_mm, gt_mm)
        self._errors.append(errors)
        self._visible.append(_check_visible(visible, errors.shape[0]))

    def result(self) -> Dict:
        """The metrics of everything added (see `evaluate_pose`)."""
        if not self._errors:
            raise ValueError("PoseEvaluator.result(): no samples were added")
        return metrics_from_errors(np.concatenate(self._errors), np.concatenate(self._visible))
