"""The raw sample: one annotated frame as a reader returns it, before pre-processing.

Every reader (RHD, STB, and so the synthetic data, which is written in their formats) returns
this one type, so pre-processing never needs to know where a frame came from.
"""
import dataclasses
from typing import Optional

import numpy as np

HANDS = ("left", "right")
NUM_KEYPOINTS = 21
ROOT_KEYPOINT = 12  # middle MCP (SPEC 5, canonical RHD order)
SCALE_BONE = (11, 12)  # middle MCP-PIP: the normalisation bone
# Bones of the canonical skeleton: wrist to each MCP, then MCP -> PIP -> DIP -> tip per finger.
FINGER_MCPS = (4, 8, 12, 16, 20)
SKELETON = tuple(bone for mcp in FINGER_MCPS for bone in ((0, mcp), (mcp, mcp - 1),
                                                         (mcp - 1, mcp - 2), (mcp - 2, mcp - 3)))


class DataError(ValueError):
    """A data set file or sample that cannot be used; the message names the file."""


@dataclasses.dataclass(frozen=True)
class RawSample:
    """One frame of a data set, in the units and frames pre-processing expects.

    Attributes:
      color: (H, W, 3) uint8, RGB (not OpenCV's BGR), from the colour camera.
      depth: (Hd, Wd) float32, metres along the depth camera's optical axis; 0 where invalid.
      hand_mask: (H, W) bool, pixels of the annotated (dominant) hand in the colour image, or
        None where the data set has no masks (STB). Where it is given, colour and depth share one
        camera (RHD), so it also selects the hand's depth pixels.
      K_color: (3, 3) float64, colour camera intrinsics (pixels).
      K_depth: (3, 3) float64, depth camera intrinsics (pixels).
      depth_to_color: (4, 4) float64, rigid transform taking a point in the depth camera frame
        (metres) to the colour camera frame; the identity where both are one camera.
      keypoints: (21, 3) float64, metres, colour camera frame, canonical (RHD) order, unmirrored.
      visible: (21,) bool, keypoint visibility; all True where the data set gives none.
      hand: 'left' or 'right'.
      source: what the frame was read from (a file name), for error messages.
    """

    color: np.ndarray
    depth: np.ndarray
    hand_mask: Optional[np.ndarray]
    K_color: np.ndarray
    K_depth: np.ndarray
    depth_to_color: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    hand: str
    source: str

    def __post_init__(self):
        if self.color.ndim != 3 or self.color.shape[2] != 3 or self.color.dtype != np.uint8:
            raise DataError(f"{self.source}: color must be (H, W, 3) uint8, got "
                             f"{self.color.shape} {self.color.dtype}")
        if self.depth.ndim != 2:
            raise DataError(f"{self.source}: depth must be (H, W), got {self.depth.shape}")
        if self.hand_mask is not None and self.hand_mask.shape != self.color.shape[:2]:
            raise DataError(f"{self.source}: hand_mask {self.hand_mask.shape} does not match "
                             f"the colour image {self.color.shape[:2]}")
        for name, shape in (("K_color", (3, 3)), ("K_depth", (3, 3)),
                            ("depth_to_color", (4, 4)), ("keypoints", (NUM_KEYPOINTS, 3)),
                            ("visible", (NUM_KEYPOINTS,))):
            if np.shape(getattr(self, name)) != shape:
                raise DataError(f"{self.source}: {name} must have shape {shape}, got "
                                 f"{np.shape(getattr(self, name))}")
        if self.hand not in HANDS:
            raise DataError(f"{self.source}: hand must be one of {HANDS}, got {self.hand!r}")

