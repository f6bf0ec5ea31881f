"""Pre-processing of one raw sample into a training example (SPEC 5 "Pre-processing").

RawSample -> Example: a square crop of the hand at S x S pixels seen by a virtual camera turned
towards the root (viewpoint correction, a switch), the crop's 2D keypoints, the normalised pose
and the normalised point cloud candidates, all in that one virtual camera frame:

  X_virtual = R_view X_camera,   crop pixel = project(K_crop, X_virtual),
  pose = R_view (X - root) / scale, cloud likewise.

The crop is centred on the root's projection; its half-width is the largest distance of a hand
point (RHD: hand-mask pixels; STB: projected keypoints) from that centre, times a margin, so the
hand stays inside the crop under any in-plane rotation (augmentation rotates by up to pi).
"""
import dataclasses

import cv2
import numpy as np

from data_pipeline import geometry
from data_pipeline.sample import NUM_KEYPOINTS, ROOT_KEYPOINT, DataError, RawSample

# Margins on the crop radius: a mask already covers the whole hand; keypoints are joint centres,
# so the fingertips' and palm's flesh lies outside them.
CROP_MARGIN_MASK = 1.1
CROP_MARGIN_KEYPOINTS = 1.3
CLOUD_RADIUS = 0.2  # metres around the root (paper, section 4)
MAX_CLOUD_POINTS = 1024  # candidates kept per sample; N = 256 are drawn from them per step
MIN_CLOUD_POINTS = 32  # fewer depth points near the root than this: the sample is unusable


@dataclasses.dataclass(frozen=True)
class Example:
    """One pre-processed sample, before per-step point sampling, augmentation and heatmaps.

    Attributes:
      image: (S, S, 3) uint8 RGB crop.
      keypoints_2d: (21, 2) float32, crop pixels (u, v) = project(K_crop, R_view pose_cam).
      pose: (21, 3) float32, R_view (pose_cam - root) / scale.
      cloud: (M, 3) float32, M in [MIN_CLOUD_POINTS, max_points], same transform as pose.
      scale: bone 11-12 length, metres.
      visible: (21,) bool.
      pose_cam: (21, 3) float64, keypoints in the colour camera frame, metres.
      root: (3,) float64, pose_cam[12].
      R_view: (3, 3) float64, the identity without viewpoint correction.
      K_crop: (3, 3) float64, intrinsics of the crop in the rotated frame (see module doc).
      hand: 'left' or 'right'.
      source: the raw sample's source, for messages.
    """

    image: np.ndarray
    keypoints_2d: np.ndarray
    pose: np.ndarray
    cloud: np.ndarray
    scale: float
    visible: np.ndarray
    pose_cam: np.ndarray
    root: np.ndarray
    R_view: np.ndarray
    K_crop: np.ndarray
    hand: str
    source: str


def _hand_pixels(sample):
    """(P, 2) colour-image pixels that outline the hand, and the crop margin for them."""
    if sample.hand_mask is not None:
        rows, cols = np.nonzero(sample.hand_mask)
        if rows.size == 0:
            raise DataError(f"{sample.source}: the hand mask is empty")
        return np.stack([cols, rows], axis=-1).astype(np.float64), CROP_MARGIN_MASK
    if np.any(sample.keypoints[:, 2] <= 0):
        raise DataError(f"{sample.source}: a keypoint lies behind the camera")
    return geometry.project(sample.K_color, sample.keypoints), CROP_MARGIN_KEYPOINTS


def crop_camera(sample, image_size, view_correction):
    """The virtual crop camera: (R_view, K_crop) for a sample (see module doc).

    Args:
      sample: RawSample.
      image_size: crop side S, pixels.
      view_correction: whether R_view turns the camera towards the root (else the identity).

    Returns:
      R_view (3, 3), K_crop (3, 3).

    Raises:
      DataError: the hand's root projects outside the image, or the mask is empty.
    """
    root = sample.keypoints[ROOT_KEYPOINT]
    height, width = sample.color.shape[:2]
    if root[2] <= 0:
        raise DataError(f"{sample.source}: the root keypoint lies behind the camera")
    u, v = geometry.project(sample.K_color, root)
    if not (0 <= u <= width - 1 and 0 <= v <= height - 1):
        raise DataError(f"{sample.source}: the hand is outside the image (root projects to "
                        f"({u:.1f}, {v:.1f}) in a {width}x{height} image)")
    R_view = geometry.view_rotation(root) if view_correction else np.eye(3)
    pixels, margin = _hand_pixels(sample)
    rays = geometry.back_project(sample.K_color, pixels, np.ones(len(pixels))) @ R_view.T
    if np.any(rays[:, 2] <= 0):
        raise DataError(f"{sample.source}: the hand spans more than the virtual camera's view")
    normalised = rays[:, :2] / rays[:, 2:3]
    root_view = R_view @ root
    center = root_view[:2] / root_view[2]
    radius = margin * np.max(np.linalg.norm(normalised - center, axis=-1))
    radius = max(radius, 1e-3)  # a one-pixel mask still gives a finite zoom
    focal = image_size / (2.0 * radius)
    return R_view, geometry.crop_intrinsics(focal, center, image_size)


def warp_image(color, K, R_view, K_crop, image_size):
    """Warps the colour image into the crop camera (bilinear, black outside the source).

    Where the crop shrinks the image by more than 2x, the source is blurred first so that the
    bilinear sampling does not alias.
    """
    zoom = K_crop[0, 0] / K[0, 0]
    if zoom < 0.5:
        sigma = 0.5 / zoom
        color = cv2.GaussianBlur(color, (0, 0), sigmaX=sigma, sigmaY=sigma)
    H = geometry.crop_homography(K, R_view, K_crop)
    return cv2.warpPerspective(color, H, (image_size, image_size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def cloud_points(sample):
    """Depth points of the hand in the colour camera frame, within CLOUD_RADIUS of the root.

    Back-projects depth pixels with K_depth and moves them to the colour frame with
    depth_to_color. With a hand mask (RHD: colour and depth share one camera) only hand pixels
    are used; without (STB) every valid pixel within the radius.

    Returns:
      (P, 3) float64 points, metres, colour camera frame.
    """
    depth = sample.depth
    root = sample.keypoints[ROOT_KEYPOINT]
    valid = depth > 0
    if sample.hand_mask is not None:
        if sample.hand_mask.shape != depth.shape:
            raise DataError(f"{sample.source}: depth {depth.shape} and hand mask "
                            f"{sample.hand_mask.shape} differ in size")
        valid &= sample.hand_mask
    else:
        # Cheap pre-filter on depth alone before back-projecting the whole frame.
        root_depth = np.linalg.solve(sample.depth_to_color,
                                     np.append(root, 1.0))[2]
        valid &= np.abs(depth - root_depth) < CLOUD_RADIUS
    rows, cols = np.nonzero(valid)
    uv = np.stack([cols, rows], axis=-1).astype(np.float64)
    points = geometry.back_project(sample.K_depth, uv, depth[rows, cols])
    points = geometry.transform_points(sample.depth_to_color, points)
    return points[np.linalg.norm(points - root, axis=-1) < CLOUD_RADIUS]


def preprocess(sample: RawSample, image_size: int, view_correction: bool = True,
               max_points: int = MAX_CLOUD_POINTS, seed: int = 0) -> Example:
    """Pre-processes one raw sample (SPEC 5).

    Args:
      sample: RawSample from a reader.
      image_size: crop side S, pixels.
      view_correction: the paper's viewpoint correction (Fig. 5 ablation); without it R_view is
        the identity and the warp is a plain crop and resize.
      max_points: most cloud candidates kept (a random subset, drawn with `seed`).
      seed: seed of that subset, e.g. the sample index, so the cache is reproducible.

    Returns:
      Example.

    Raises:
      DataError (naming sample.source): hand outside the image, empty mask, degenerate bone,
        fewer than MIN_CLOUD_POINTS depth points within CLOUD_RADIUS of the root.
    """
    keypoints = np.asarray(sample.keypoints, np.float64)
    if not np.all(np.isfinite(keypoints)):
        raise DataError(f"{sample.source}: keypoints are not finite")
    scale = geometry.bone_scale(keypoints)
    if scale < 1e-4:
        raise DataError(f"{sample.source}: the 11-12 bone has length {scale:g} m")
    R_view, K_crop = crop_camera(sample, image_size, view_correction)
    pose, root, _ = geometry.normalise_pose(keypoints, R_view)
    image = warp_image(sample.color, sample.K_color, R_view, K_crop, image_size)
    keypoints_2d = geometry.project(K_crop, keypoints @ R_view.T)

    points = cloud_points(sample)
    if len(points) < MIN_CLOUD_POINTS:
        raise DataError(f"{sample.source}: only {len(points)} depth points lie within "
                        f"{CLOUD_RADIUS} m of the hand root (need {MIN_CLOUD_POINTS})")
    if len(points) > max_points:
        keep = np.random.default_rng(seed).choice(len(points), max_points, replace=False)
        points = points[keep]
    cloud = geometry.normalise(points, root, scale, R_view)

    return Example(
        image=image, keypoints_2d=keypoints_2d.astype(np.float32),
        pose=pose.astype(np.float32), cloud=cloud.astype(np.float32), scale=scale,
        visible=np.asarray(sample.visible, bool).reshape(NUM_KEYPOINTS), pose_cam=keypoints,
        root=root, R_view=R_view, K_crop=K_crop, hand=sample.hand, source=sample.source)


# Worker side of the cache writer's process pool (spawned, so this module must not import
# TensorFlow: forking a process whose TensorFlow runtime has started can deadlock).
_WORKER = {}


def init_worker(samples, image_size, view_correction, max_points):
    """Pool initializer: keeps the sample sequence and settings for `preprocess_index`."""
    cv2.setNumThreads(1)  # the pool provides the parallelism
    _WORKER.update(samples=samples, image_size=image_size, view_correction=view_correction,
                   max_points=max_points)


def try_preprocess(samples, index, image_size, view_correction, max_points):
    """Reads and pre-processes samples[index] (seed = index) without raising DataError.

    Returns:
      (index, Example, None), or (index, None, message) when reading or pre-processing raised
      DataError.
    """
    try:
        return index, preprocess(samples[index], image_size, view_correction, max_points,
                                 seed=index), None
    except DataError as e:
        return index, None, str(e)


def preprocess_index(index):
    """Pool task: `try_preprocess` on the worker's sequence and settings."""
    return try_preprocess(_WORKER["samples"], index, _WORKER["image_size"],
                          _WORKER["view_correction"], _WORKER["max_points"])
