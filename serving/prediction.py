"""The prediction for a new image's crop and its picture (predict.py)."""
from typing import Dict, Optional

from matplotlib.figure import Figure
import numpy as np
import tensorflow as tf

from data_pipeline import geometry
from evaluation import figures
from serving.crop import Crop, crop_to_input
from serving.saved_model import Export


def predict_crop(export: Export, crop: Crop) -> Dict[str, np.ndarray]:
    """Runs the export on one crop.

    Returns:
      dict: pose (21, 3) normalised, z (D,), and cloud (N, 3) normalised where exported.
    """
    out = export.serve(image=tf.constant(crop_to_input(crop.image)[None]))
    return {k: v.numpy()[0] for k, v in out.items()}


def camera_pose_mm(pose: np.ndarray, R_view: np.ndarray, bone_mm: float) -> np.ndarray:
    """Normalised pose (21, 3) -> root-relative keypoints in the input camera's frame, mm:
    R_view^T pose * bone length (the inverse of SPEC 5's normalisation, up to the root)."""
    return np.asarray(pose, np.float64) @ np.asarray(R_view) * bone_mm


def skeleton_pixels(pose: np.ndarray, crop: Crop) -> np.ndarray:
    """Crop pixels (21, 2) of a normalised pose: project(K_crop, R_view X).

    An image has no depth, so the root is put on the ray through the box centre at the depth
    (in bone lengths) at which the skeleton spans as many crop pixels as the box does (weak
    perspective: extent in pixels = f_crop * extent / depth).
    """
    pose = np.asarray(pose, np.float64)
    ray = crop.R_view @ crop.centre
    ray = ray / ray[2]
    pose_extent = max(np.ptp(pose[:, 0]), np.ptp(pose[:, 1]), 1e-6)
    box_extent = max(np.max(np.ptp(crop.corners_crop, axis=0)), 1.0)
    depth = crop.K_crop[0, 0] * pose_extent / box_extent
    depth = max(depth, 2.0 * np.max(np.abs(pose[:, 2])))  # every keypoint in front
    return geometry.project(crop.K_crop, depth * ray + pose)


def save_picture(crop: Crop, prediction: Dict[str, np.ndarray], path: str,
                 title: Optional[str] = None) -> str:
    """The crop with the predicted skeleton drawn over it (`skeleton_pixels`), the pose in 3D,
    and the cloud decoded from z, coloured by depth (paper Fig. 3), where the export has one.

    Args:
      crop: from `crop_from_box`.
      prediction: from `predict_crop`: pose (21, 3), optional cloud (N, 3), normalised.
      path: output PNG, written atomically.
      title: optional figure title.

    Returns:
      path.
    """
    cloud = prediction.get("cloud")
    columns = 2 if cloud is None else 3
    fig = Figure(figsize=(3.2 * columns, 3.4))
    ax = fig.add_subplot(1, columns, 1)
    ax.imshow(crop.image)
    uv = skeleton_pixels(prediction["pose"], crop)
    for a, b in figures.SKELETON:
        ax.plot(uv[[a, b], 0], uv[[a, b], 1], color=figures.PRED_COLOUR, linewidth=1.5)
    ax.scatter(uv[:, 0], uv[:, 1], color="yellow", s=8, zorder=3)
    size = crop.image.shape[0]
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title("crop, predicted skeleton", fontsize=9)
    ax = fig.add_subplot(1, columns, 2, projection="3d")
    figures.draw_pose(ax, prediction["pose"], figures.PRED_COLOUR)
    figures.setup_3d(ax, prediction["pose"], "pose from z_rgb (normalised)")
    if cloud is not None:
        ax = fig.add_subplot(1, columns, 3, projection="3d")
        figures.draw_cloud(ax, cloud, (float(cloud[:, 2].min()), float(cloud[:, 2].max())))
        figures.setup_3d(ax, cloud, "cloud from z_rgb")
    if title:
        fig.suptitle(title, fontsize=9)
    return figures.save_figure(fig, path)
