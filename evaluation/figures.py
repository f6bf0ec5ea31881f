"""Figures of the paper: PCK curves (Figs. 5-7), samples (Fig. 3) and latent interpolation (Fig. 4).

Poses and clouds are in the camera-aligned frame of the pipeline (x right, y down, z away from the
camera, root at the origin; any consistent unit). 3D panels show them as the camera sees them:
x to the right, -y up, depth z into the page. Keypoints follow the canonical order (SPEC 5):
0 wrist; 1-4 thumb tip..MCP; 5-8 index; 9-12 middle; 13-16 ring; 17-20 little.
Files are written to a temporary name and renamed, so a failed plot never replaces a good figure.
"""
from typing import Dict, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from data_pipeline.sample import SKELETON  # noqa: E402
from evaluation import protocol  # noqa: E402
from evaluation.files import atomic_write  # noqa: E402

GT_COLOUR = "tab:blue"
PRED_COLOUR = "tab:red"
# Depth colouring of clouds: near red, far blue (paper Fig. 3).
DEPTH_CMAP = "jet_r"


def save_figure(fig, path: str) -> str:
    """Saves `fig` as a PNG at `path` atomically (evaluation.files), then closes it."""
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100,
                                                        bbox_inches="tight"))
    finally:
        plt.close(fig)


def _check(name: str, value, shape: Sequence[Optional[int]]) -> np.ndarray:
    """`value` as a float array of `shape` (None: any size), else ValueError naming `name`."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != len(shape) or any(s not in (None, a) for s, a in zip(shape, array.shape)):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    return array


def _camera_view(points: np.ndarray):
    """(..., 3) camera-frame points -> plot axes (x, z, -y): depth into the page, up is up."""
    return points[..., 0], points[..., 2], -points[..., 1]


def setup_3d(ax, points: np.ndarray, title: str) -> None:
    """Equal-aspect limits around `points` (P, 3) and a camera-like viewpoint."""
    px, py, pz = _camera_view(points)
    centre = np.array([px.min() + px.max(), py.min() + py.max(), pz.min() + pz.max()]) / 2
    half = max(np.ptp(px), np.ptp(py), np.ptp(pz), 1e-6) / 2 * 1.1
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(centre[2] - half, centre[2] + half)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=15, azim=-80)
    ax.set_xticklabels([])
    ax.set_yticklabels([])
    ax.set_zticklabels([])
    ax.set_title(title, fontsize=9)


def draw_pose(ax, pose: np.ndarray, colour: str, label: Optional[str] = None) -> None:
    """Draws one (21, 3) pose as its skeleton on a 3D axis."""
    x, y, z = _camera_view(pose)
    for a, b in SKELETON:
        ax.plot([x[a], x[b]], [y[a], y[b]], [z[a], z[b]], color=colour, linewidth=1.5)
    ax.scatter(x, y, z, color=colour, s=6, label=label, depthshade=False)


def draw_cloud(ax, cloud: np.ndarray, depth_range: Tuple[float, float]) -> None:
    """Draws one (N, 3) cloud, points coloured by camera depth z (near red, far blue)."""
    x, y, z = _camera_view(cloud)
    ax.scatter(x, y, z, c=cloud[:, 2], cmap=DEPTH_CMAP, vmin=depth_range[0], vmax=depth_range[1],
               s=3, depthshade=False)


def plot_pck(curves: Dict[str, Tuple[Sequence[float], Sequence[float]]], path: str,
             title: str = "3D PCK") -> str:
    """PCK curves (Figs. 5-7): one line per method, AUC 0-50 in the legend.

    Args:
      curves: name -> (thresholds (T,) mm, pck (T,) fractions in [0, 1]).
      path: output image file.
      title: axis title.

    Returns:
      path.
    """
    if not curves:
        raise ValueError("plot_pck: no curves given")
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (thresholds, pck) in curves.items():
        t = np.asarray(thresholds, np.float64)
        p = np.asarray(pck, np.float64)
        if t.ndim != 1 or t.shape != p.shape or t.size < 2:
            raise ValueError(f"plot_pck: curve {name!r} needs thresholds and pck of the same "
                             f"shape (T,), T >= 2, got {t.shape} and {p.shape}")
        auc = protocol.area_under_curve(p, t)
        ax.plot(t, p, marker="o", markersize=3, label=f"{name} (AUC={auc:.3f})")
    ax.set_xlabel("error threshold (mm)")
    ax.set_ylabel("3D PCK")
    ax.set_ylim(0.0, 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    return save_figure(fig, path)


def plot_samples(images, gt_pose, pred_pose, gt_cloud, pred_cloud, path: str) -> str:
    """Paper Fig. 3: per sample (row) the RGB crop, GT pose (blue) vs the predicted pose (red),
    the GT cloud and the cloud decoded from z_rgb, both coloured by depth.

    Args:
      images: (K, S, S, 3) RGB in [0, 1].
      gt_pose, pred_pose: (K, 21, 3) poses in one frame and unit.
      gt_cloud: (K, N, 3) input clouds, same frame and unit.
      pred_cloud: (K, N', 3) decoded clouds, or None when the model has no cloud decoder (the
        decoded-cloud column is then left out).
      path: output image file.

    Returns:
      path.
    """
    images = _check("images", images, (None, None, None, 3))
    k = images.shape[0]
    gt_pose = _check("gt_pose", gt_pose, (k, protocol.NUM_KEYPOINTS, 3))
    pred_pose = _check("pred_pose", pred_pose, (k, protocol.NUM_KEYPOINTS, 3))
    gt_cloud = _check("gt_cloud", gt_cloud, (k, None, 3))
    if pred_cloud is not None:
        pred_cloud = _check("pred_cloud", pred_cloud, (k, None, 3))
    columns = 3 if pred_cloud is None else 4
    fig = plt.figure(figsize=(3 * columns, 3 * k))
    for i in range(k):
        ax = fig.add_subplot(k, columns, i * columns + 1)
        ax.imshow(np.clip(images[i], 0.0, 1.0))
        ax.set_axis_off()
        ax.set_title("RGB", fontsize=9)

        ax = fig.add_subplot(k, columns, i * columns + 2, projection="3d")
        draw_pose(ax, gt_pose[i], GT_COLOUR, "GT")
        draw_pose(ax, pred_pose[i], PRED_COLOUR, "from z_rgb")
        setup_3d(ax, np.concatenate([gt_pose[i], pred_pose[i]]), "pose: GT blue, pred red")

        clouds = [(gt_cloud[i], "GT cloud")]
        if pred_cloud is not None:
            clouds.append((pred_cloud[i], "cloud from z_rgb"))
        every = np.concatenate([c for c, _ in clouds])
        depth_range = (float(every[:, 2].min()), float(every[:, 2].max()))
        for c, (cloud, title) in enumerate(clouds):
            ax = fig.add_subplot(k, columns, i * columns + 3 + c, projection="3d")
            draw_cloud(ax, cloud, depth_range)
            setup_3d(ax, every, title)
    return save_figure(fig, path)


def plot_interpolation(poses, clouds, path: str) -> str:
    """Paper Fig. 4: poses (and clouds) decoded along a line between two latent codes.

    Args:
      poses: (T, 21, 3) decoded poses, T steps from the first code to the second.
      clouds: (T, N, 3) decoded clouds, or None when the model has no cloud decoder.
      path: output image file.

    Returns:
      path.
    """
    poses = _check("poses", poses, (None, protocol.NUM_KEYPOINTS, 3))
    steps = poses.shape[0]
    if steps < 2:
        raise ValueError(f"plot_interpolation needs at least 2 steps, got {steps}")
    if clouds is not None:
        clouds = _check("clouds", clouds, (steps, None, 3))
    rows = 1 if clouds is None else 2
    fig = plt.figure(figsize=(2.2 * steps, 2.4 * rows))
    pose_box = poses.reshape(-1, 3)
    alphas = np.linspace(0.0, 1.0, steps)
    for t in range(steps):
        ax = fig.add_subplot(rows, steps, t + 1, projection="3d")
        draw_pose(ax, poses[t], PRED_COLOUR)
        setup_3d(ax, pose_box, f"a = {alphas[t]:.2f}")
    if clouds is not None:
        cloud_box = clouds.reshape(-1, 3)
        depth_range = (float(cloud_box[:, 2].min()), float(cloud_box[:, 2].max()))
        for t in range(steps):
            ax = fig.add_subplot(rows, steps, steps + t + 1, projection="3d")
            draw_cloud(ax, clouds[t], depth_range)
            setup_3d(ax, cloud_box, "")
    fig.suptitle("decoded from (1 - a) z_1 + a z_2", fontsize=10)
    return save_figure(fig, path)
