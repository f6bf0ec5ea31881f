"""The crop of a new image around a hand box, as the training data's unlabelled crops are made.

A new image is cropped as an unlabelled training sample is (preprocess.detect_hand), with a box
standing in for the hand mask: the crop camera looks at the box centre (`crop_camera` uses only
the centre's direction, so no depth is needed) and its half-width is the farthest box corner
times the data set's margin (RHD and synthetic: the mask box, CROP_MARGIN_MASK; STB: the box of
the projected keypoints, CROP_MARGIN_KEYPOINTS). A box's corners lie at least as far from the
centre as any mask pixel, so an RHD-trained model sees a box crop up to sqrt(2) looser than its
unlabelled training crops: the tighter the box, the closer to training. Labelled training crops
were centred on the root keypoint instead of the box centre (docs/pipeline.md, "Weak
supervision": a median 32 mm apart on the synthetic set).
"""
import dataclasses
from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

from data_pipeline import geometry, preprocess

# The box each data set's detect_hand takes the crop from, and that box's margin.
BOX_MARGINS = {"synthetic": preprocess.CROP_MARGIN_MASK, "rhd": preprocess.CROP_MARGIN_MASK,
               "stb": preprocess.CROP_MARGIN_KEYPOINTS}


@dataclasses.dataclass(frozen=True)
class Crop:
    """The crop of a new image and its camera (preprocess.Example's conventions).

    Attributes:
      image: (S, S, 3) uint8 RGB.
      R_view: (3, 3) the view rotation (the identity without viewpoint correction).
      K_crop: (3, 3) intrinsics of the crop in the rotated frame: crop pixel =
        project(K_crop, R_view X) for a point X of the input camera's frame.
      centre: (3,) the ray through the box centre (z = 1), input camera frame.
      corners_crop: (4, 2) the box corners, crop pixels.
    """

    image: np.ndarray
    R_view: np.ndarray
    K_crop: np.ndarray
    centre: np.ndarray
    corners_crop: np.ndarray


def parse_numbers(text: str, names: Sequence[str]) -> Tuple[float, ...]:
    """'1,2,3' -> (1.0, 2.0, 3.0): len(names) finite comma-separated numbers, else ValueError."""
    expected = f"expected {len(names)} comma-separated numbers {','.join(names)}"
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{expected}, got {text!r}") from None
    if len(values) != len(names) or not np.all(np.isfinite(values)):
        raise ValueError(f"{expected}, got {text!r}")
    return values


def parse_intrinsics(text: str) -> np.ndarray:
    """'fx,fy,cx,cy' (pixels) -> (3, 3) intrinsics; ValueError unless fx, fy > 0."""
    fx, fy, cx, cy = parse_numbers(text, ("fx", "fy", "cx", "cy"))
    if not (fx > 0 and fy > 0):
        raise ValueError(f"focal lengths must be positive, got fx={fx:g}, fy={fy:g}")
    return intrinsics(fx, fy, cx, cy)


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) pinhole intrinsics from focal lengths and principal point, pixels."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """The K assumed for an image without one: fx = fy = the image width (a 53 degree horizontal
    field of view, a common webcam's), principal point at the image centre ((W - 1) / 2,
    (H - 1) / 2), pixel centres at integer coordinates (data_pipeline/geometry.py)."""
    return intrinsics(width, width, (width - 1) / 2.0, (height - 1) / 2.0)


def crop_from_box(color: np.ndarray, K: np.ndarray, box: Sequence[float], image_size: int,
                  view_correction: bool, margin: float, source: str = "") -> Crop:
    """Crops a new image around a hand box as detect_hand crops an unlabelled sample.

    Args:
      color: (H, W, 3) uint8 RGB.
      K: (3, 3) intrinsics of `color`, pixels.
      box: (x, y, w, h) pixels, as cv2.boundingRect gives it: x, y the top-left pixel, w, h >= 1
        the size in pixels, inside the image; its corner pixels are (x, y) and
        (x + w - 1, y + h - 1).
      image_size: crop side S, pixels.
      view_correction: turn the crop camera towards the box centre (SPEC 5).
      margin: factor on the farthest corner's distance from the centre (BOX_MARGINS).
      source: the image, for messages.

    Raises:
      ValueError: the box is malformed or not inside the image.
      DataError: the box spans more than the crop camera's half-space.
    """
    x, y, w, h = (float(v) for v in box)
    height, width = color.shape[:2]
    if not (w >= 1 and h >= 1):
        raise ValueError(f"the box {x:g},{y:g},{w:g},{h:g} must be at least one pixel wide and "
                         "high")
    if not (x >= 0 and y >= 0 and x + w <= width and y + h <= height):
        raise ValueError(f"the box {x:g},{y:g},{w:g},{h:g} (x,y,w,h) is not inside the "
                         f"{width}x{height} image")
    lo, hi = np.array([x, y]), np.array([x + w - 1, y + h - 1])
    corners = preprocess.box_corners(lo, hi)
    centre = geometry.back_project(K, (lo + hi) / 2.0, 1.0)
    R_view, K_crop = preprocess.crop_camera(K, centre, corners, margin, image_size,
                                            view_correction, source)
    image = preprocess.warp_image(color, K, R_view, K_crop, image_size)
    corners_crop = geometry.project(K_crop, geometry.back_project(K, corners, np.ones(4))
                                    @ R_view.T)
    return Crop(image, R_view, K_crop, centre, corners_crop)


def crop_to_input(image: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 crop -> (S, S, 3) float32 in [0, 1], the conversion of
    data_pipeline.dataset.model_inputs."""
    return tf.image.convert_image_dtype(image, tf.float32).numpy()
