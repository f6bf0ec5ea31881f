"""Pre-processing of one raw sample into a training example (SPEC 5 "Pre-processing").

RawSample -> Example: a square crop of the hand at S x S pixels seen by a virtual camera turned
towards the hand's centre (viewpoint correction, a switch), the crop's 2D keypoints, the
normalised pose and the normalised point cloud candidates, all in that one virtual camera frame:

  X_virtual = R_view X_camera,   crop pixel = project(K_crop, X_virtual),
  pose = R_view (X - root) / scale, cloud likewise.

The crop is centred on the root's projection; its half-width is the largest distance of a hand
point (RHD: hand-mask pixels; STB: projected keypoints) from that centre, times a margin, so the
hand stays inside the crop under any in-plane rotation (augmentation rotates by up to pi).

Three kinds of example (docs/pipeline.md):
- labelled (training and validation): as above, root and scale from the 3D label. Samples the
  pipeline cannot use (empty mask, root outside the image, too few depth points) raise DataError
  and are skipped.
- test (keep_incomplete=True): every sample with an image and a usable label is kept, since SPEC 6
  scores every test sample: the root may project outside the image, an RHD sample without hand
  pixels is cropped by its projected keypoints, and the cloud may have any number of points,
  none included. Inference needs only the crop.
- unlabelled (weak supervision, paper Fig. 8; unlabelled_scale given): nothing is derived from
  the 3D label. `detect_hand` takes the centre from the mask box (RHD) or the keypoint box that
  stands in for a hand detector (STB, no masks) and the depth of the hand's pixels; the scale is
  the data set's mean bone length, given by the caller. The pose, 2D keypoints, visibility and
  pose_cam of the example are zeros.
"""
import dataclasses
from typing import Optional

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
MIN_CLOUD_POINTS = 32  # fewer depth points near the root than this: a training sample is unusable
# Unlabelled STB samples: the hand is the nearest surface in its box; depth points up to this far
# behind the box's near depth (its 5th percentile, robust to sensor speckle) are the hand's.
HAND_DEPTH_BAND = 0.1
NEAR_PERCENTILE = 5


@dataclasses.dataclass(frozen=True)
class Example:
    """One pre-processed sample, before per-step point sampling, augmentation and heatmaps.

    Attributes:
      image: (S, S, 3) uint8 RGB crop.
      keypoints_2d: (21, 2) float32, crop pixels (u, v) = project(K_crop, R_view pose_cam).
      pose: (21, 3) float32, R_view (pose_cam - root) / scale.
      cloud: (M, 3) float32, same transform as pose; M in [MIN_CLOUD_POINTS, max_points], or in
        [0, max_points] for a test example.
      scale: bone 11-12 length, metres (unlabelled: the data set's mean bone length).
      visible: (21,) bool.
      pose_cam: (21, 3) float64, keypoints in the colour camera frame, metres.
      root: (3,) float64, pose_cam[12] (unlabelled: the centre `detect_hand` estimates).
      R_view: (3, 3) float64, the identity without viewpoint correction.
      K_crop: (3, 3) float64, intrinsics of the crop in the rotated frame (see module doc).
      hand: 'left' or 'right'.
      source: the raw sample's source, for messages.
      labelled: False for an unlabelled example, whose keypoints_2d, pose, visible and pose_cam
        are zeros.
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
    labelled: bool = True


def _mask_pixels(sample):
    """(P, 2) colour-image pixels of the hand mask; DataError when it is empty."""
    rows, cols = np.nonzero(sample.hand_mask)
    if rows.size == 0:
        raise DataError(f"{sample.source}: the hand mask is empty")
    return np.stack([cols, rows], axis=-1).astype(np.float64)


def _keypoint_pixels(sample):
    """(21, 2) projections of the keypoints into the colour image."""
    if np.any(sample.keypoints[:, 2] <= 0):
        raise DataError(f"{sample.source}: a keypoint lies behind the camera")
    return geometry.project(sample.K_color, sample.keypoints)


def _check_in_image(sample, uv, what):
    height, width = sample.color.shape[:2]
    u, v = uv
    if not (0 <= u <= width - 1 and 0 <= v <= height - 1):
        raise DataError(f"{sample.source}: the hand is outside the image ({what} projects to "
                        f"({u:.1f}, {v:.1f}) in a {width}x{height} image)")


def labelled_view(sample, keep_incomplete=False):
    """Centre and outline of a labelled sample's crop: the root and the hand's pixels.

    Args:
      sample: RawSample.
      keep_incomplete: a test sample (module doc): the root may project outside the image, and
        an empty mask falls back to the projected keypoints.

    Returns:
      (centre (3,) = the root, metres; pixels (P, 2) outlining the hand; crop margin).

    Raises:
      DataError: the root lies behind the camera; unless keep_incomplete, the root projects
        outside the image or the mask is empty.
    """
    root = sample.keypoints[ROOT_KEYPOINT]
    if root[2] <= 0:
        raise DataError(f"{sample.source}: the root keypoint lies behind the camera")
    if not keep_incomplete:
        _check_in_image(sample, geometry.project(sample.K_color, root), "the root")
    if sample.hand_mask is not None and (sample.hand_mask.any() or not keep_incomplete):
        return root, _mask_pixels(sample), CROP_MARGIN_MASK
    return root, _keypoint_pixels(sample), CROP_MARGIN_KEYPOINTS


def box_corners(lo, hi):
    """The 4 corners (4, 2) of the box [lo, hi] (pixels): top-left, top-right, bottom-left,
    bottom-right."""
    return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]]])


def detect_hand(sample):
    """Centre and outline of an unlabelled sample's crop, from what such a sample has.

    RHD (a hand mask): the centre is the mask's bounding-box centre, back-projected at the median
    depth of the mask pixels. STB (no masks): the bounding box of the projected keypoints stands
    in for a hand detector's box (only its corners are used, never the keypoints' depths); the
    centre is the box centre, back-projected at the median depth of the depth points that project
    into the box and lie within HAND_DEPTH_BAND of the box's near depth (the hand is the nearest
    surface in its box).

    Returns:
      (centre (3,) metres in the colour frame, pixels (P, 2) outlining the hand, crop margin).

    Raises:
      DataError: empty mask or box, the box centre outside the image, no depth on the hand.
    """
    if sample.hand_mask is not None:
        pixels = _mask_pixels(sample)
        margin = CROP_MARGIN_MASK
        # Mask and depth share one camera (RawSample), so depth values are colour-frame z.
        depths = sample.depth[sample.hand_mask & (sample.depth > 0)]
    else:
        keypoints_px = _keypoint_pixels(sample)
        pixels = box_corners(keypoints_px.min(axis=0), keypoints_px.max(axis=0))
        margin = CROP_MARGIN_KEYPOINTS
        depths = _box_depths(sample, pixels[0], pixels[3])
    lo, hi = pixels.min(axis=0), pixels.max(axis=0)
    centre_px = (lo + hi) / 2.0
    _check_in_image(sample, centre_px, "the hand box's centre")
    if depths.size == 0:
        raise DataError(f"{sample.source}: no valid depth on the hand")
    centre = geometry.back_project(sample.K_color, centre_px, np.median(depths))
    return centre, pixels, margin


def _box_depths(sample, lo, hi):
    """Colour-frame z of the hand's depth points inside the colour-image box [lo, hi]."""
    rows, cols = np.nonzero(sample.depth > 0)
    uv = np.stack([cols, rows], axis=-1).astype(np.float64)
    points = geometry.back_project(sample.K_depth, uv, sample.depth[rows, cols])
    points = geometry.transform_points(sample.depth_to_color, points)
    points = points[points[:, 2] > 0]
    projected = geometry.project(sample.K_color, points)
    inside = np.all((projected >= lo) & (projected <= hi), axis=-1)
    z = points[inside, 2]
    if z.size == 0:
        return z
    return z[z <= np.percentile(z, NEAR_PERCENTILE) + HAND_DEPTH_BAND]


def crop_camera(K, centre, pixels, margin, image_size, view_correction, source=""):
    """The virtual crop camera: (R_view, K_crop) looking at `centre` (see module doc).

    Args:
      K: (3, 3) colour camera intrinsics.
      centre: (3,) point the crop is centred on (the root), metres, colour frame.
      pixels: (P, 2) colour-image pixels outlining the hand.
      margin: factor on the largest distance of `pixels` from the centre.
      image_size: crop side S, pixels.
      view_correction: whether R_view turns the camera towards `centre` (else the identity).
      source: the sample, for messages.

    Returns:
      R_view (3, 3), K_crop (3, 3).

    Raises:
      DataError: the hand spans more than the virtual camera's half-space.
    """
    R_view = geometry.view_rotation(centre) if view_correction else np.eye(3)
    rays = geometry.back_project(K, pixels, np.ones(len(pixels))) @ R_view.T
    if np.any(rays[:, 2] <= 0):
        raise DataError(f"{source}: the hand spans more than the virtual camera's view")
    normalised = rays[:, :2] / rays[:, 2:3]
    centre_view = R_view @ centre
    centre_xy = centre_view[:2] / centre_view[2]
    radius = margin * np.max(np.linalg.norm(normalised - centre_xy, axis=-1))
    radius = max(radius, 1e-3)  # a one-pixel mask still gives a finite zoom
    focal = image_size / (2.0 * radius)
    return R_view, geometry.crop_intrinsics(focal, centre_xy, image_size)


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


def cloud_points(sample, root):
    """Depth points of the hand in the colour camera frame, within CLOUD_RADIUS of `root`.

    Back-projects depth pixels with K_depth and moves them to the colour frame with
    depth_to_color. With a hand mask (RHD: colour and depth share one camera) only hand pixels
    are used; without (STB) every valid pixel within the radius.

    Args:
      sample: RawSample.
      root: (3,) the cloud's centre, metres, colour frame.

    Returns:
      (P, 3) float64 points, metres, colour camera frame.
    """
    depth = sample.depth
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
               max_points: int = MAX_CLOUD_POINTS, seed: int = 0, *,
               keep_incomplete: bool = False,
               unlabelled_scale: Optional[float] = None) -> Example:
    """Pre-processes one raw sample (SPEC 5; the three kinds of example in the module doc).

    Args:
      sample: RawSample from a reader.
      image_size: crop side S, pixels.
      view_correction: the paper's viewpoint correction (Fig. 5 ablation); without it R_view is
        the identity and the warp is a plain crop and resize.
      max_points: most cloud candidates kept (a random subset, drawn with `seed`).
      seed: seed of that subset, e.g. the sample index, so the cache is reproducible.
      keep_incomplete: a test sample: keep it whenever it has an image and a usable label.
      unlabelled_scale: when given, an unlabelled example with this scale (metres): nothing is
        derived from sample.keypoints except, on STB, their 2D box (`detect_hand`).

    Returns:
      Example.

    Raises:
      DataError (naming sample.source): non-finite keypoints, degenerate bone, root behind the
        camera; unless keep_incomplete: hand outside the image, empty mask, fewer than
        MIN_CLOUD_POINTS depth points within CLOUD_RADIUS of the root.
    """
    labelled = unlabelled_scale is None
    if labelled:
        keypoints = np.asarray(sample.keypoints, np.float64)
        if not np.all(np.isfinite(keypoints)):
            raise DataError(f"{sample.source}: keypoints are not finite")
        scale = geometry.bone_scale(keypoints)
        if scale < 1e-4:
            raise DataError(f"{sample.source}: the 11-12 bone has length {scale:g} m")
        root, pixels, margin = labelled_view(sample, keep_incomplete)
    else:
        if keep_incomplete:
            raise ValueError("test examples are labelled: keep_incomplete excludes "
                             "unlabelled_scale")
        if not unlabelled_scale > 0:
            raise ValueError(f"unlabelled_scale must be positive, got {unlabelled_scale}")
        scale = float(unlabelled_scale)
        root, pixels, margin = detect_hand(sample)
    R_view, K_crop = crop_camera(sample.K_color, root, pixels, margin, image_size,
                                 view_correction, sample.source)
    image = warp_image(sample.color, sample.K_color, R_view, K_crop, image_size)

    points = cloud_points(sample, root)
    if len(points) < MIN_CLOUD_POINTS and not keep_incomplete:
        raise DataError(f"{sample.source}: only {len(points)} depth points lie within "
                        f"{CLOUD_RADIUS} m of the hand root (need {MIN_CLOUD_POINTS})")
    if len(points) > max_points:
        keep = np.random.default_rng(seed).choice(len(points), max_points, replace=False)
        points = points[keep]
    cloud = geometry.normalise(points, root, scale, R_view).reshape(-1, 3)

    if labelled:
        pose = geometry.normalise(keypoints, root, scale, R_view)
        keypoints_2d = geometry.project(K_crop, keypoints @ R_view.T)
        visible = np.asarray(sample.visible, bool).reshape(NUM_KEYPOINTS)
    else:
        keypoints = pose = np.zeros((NUM_KEYPOINTS, 3))
        keypoints_2d = np.zeros((NUM_KEYPOINTS, 2))
        visible = np.zeros(NUM_KEYPOINTS, bool)
    return Example(
        image=image, keypoints_2d=keypoints_2d.astype(np.float32),
        pose=pose.astype(np.float32), cloud=cloud.astype(np.float32), scale=scale,
        visible=visible, pose_cam=keypoints, root=root, R_view=R_view, K_crop=K_crop,
        hand=sample.hand, source=sample.source, labelled=labelled)


# Worker side of the cache writer's process pool (spawned, so this module must not import
# TensorFlow: forking a process whose TensorFlow runtime has started can deadlock).
_WORKER = {}


def init_worker(samples, image_size, view_correction, max_points, keep_incomplete):
    """Pool initializer: keeps the sample sequence and settings for `preprocess_index`."""
    cv2.setNumThreads(1)  # the pool provides the parallelism
    _WORKER.update(samples=samples, image_size=image_size, view_correction=view_correction,
                   max_points=max_points, keep_incomplete=keep_incomplete)


def try_preprocess(samples, index, image_size, view_correction, max_points,
                   keep_incomplete=False, unlabelled_scale=None):
    """Reads and pre-processes samples[index] (seed = index) without raising DataError.

    Returns:
      (index, Example, None), or (index, None, message) when reading or pre-processing raised
      DataError.
    """
    try:
        return index, preprocess(samples[index], image_size, view_correction, max_points,
                                 seed=index, keep_incomplete=keep_incomplete,
                                 unlabelled_scale=unlabelled_scale), None
    except DataError as e:
        return index, None, str(e)


def preprocess_index(task):
    """Pool task (index, unlabelled_scale or None): `try_preprocess` with the worker's settings."""
    index, unlabelled_scale = task
    return try_preprocess(_WORKER["samples"], index, _WORKER["image_size"],
                          _WORKER["view_correction"], _WORKER["max_points"],
                          _WORKER["keep_incomplete"], unlabelled_scale)
