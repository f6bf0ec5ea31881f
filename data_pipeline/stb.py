"""Reader of the Stereo Hand Pose Tracking Benchmark, SK (Intel RealSense) part (Zhang et al. 2016).

Layout under the root (SPEC 5):
  images/<seq>/SK_color_<i>.png, images/<seq>/SK_depth_<i>.png   i = 0 .. n-1
  labels/<seq>_SK.mat   'handPara': (3, 21, n), millimetres, depth camera frame
with <seq> in B1..B6 x {Counting, Random}. STB's keypoint order is 0 palm centre, then little,
ring, middle, index, thumb, each MCP..tip. Every frame shows one left hand; there are no masks.
"""
import collections.abc
import operator
import os

import cv2
import numpy as np
import scipy.io

from data_pipeline import io
from data_pipeline.sample import NUM_KEYPOINTS, DataError, RawSample

SEQUENCES = {
    "train": tuple(f"B{b}{kind}" for b in range(2, 7) for kind in ("Counting", "Random")),
    "test": ("B1Counting", "B1Random"),
}

# Intrinsics of the depth and colour cameras, pixels (SPEC 5).
K_DEPTH = np.array([[475.62768, 0.0, 336.41179],
                    [0.0, 474.77709, 238.77962],
                    [0.0, 0.0, 1.0]])
K_COLOR = np.array([[607.92271, 0.0, 314.78337],
                    [0.0, 607.88192, 236.42484],
                    [0.0, 0.0, 1.0]])
# Extrinsics between them: X_colour = R^T (X_depth - T), R = Rodrigues(rotvec), T in mm.
DEPTH_TO_COLOR_ROTVEC = np.array([0.00531, -0.01196, 0.00301])
DEPTH_TO_COLOR_T_MM = np.array([-24.0381, -0.4563, -1.2326])

PALM_CENTRE = 0  # STB index of the palm centre
STB_MIDDLE_MCP = 9  # STB index of the middle MCP (little 1-4, ring 5-8, middle 9-12)

# Canonical keypoint k (k >= 1) is STB keypoint 21 - k: reversing 1-20 turns "little..thumb,
# MCP..tip" into "thumb..little, tip..MCP". Slot 0 (the palm centre) becomes the wrist.
STB_TO_CANONICAL = np.array([PALM_CENTRE] + list(range(NUM_KEYPOINTS - 1, 0, -1)))


def depth_to_color_transform():
    """The rigid transform from the depth to the colour camera frame.

    Returns:
      (4, 4) float64 T, metres, with X_colour = T[:3, :3] X_depth + T[:3, 3], i.e.
      [[R^T, -R^T t], [0, 1]] for R = Rodrigues(DEPTH_TO_COLOR_ROTVEC), t = T_mm / 1000.
    """
    rotation, _ = cv2.Rodrigues(DEPTH_TO_COLOR_ROTVEC.reshape(3, 1))
    transform = np.eye(4)
    transform[:3, :3] = rotation.T
    transform[:3, 3] = -rotation.T @ (DEPTH_TO_COLOR_T_MM / 1000.0)
    return transform


def to_canonical(stb_keypoints):
    """STB keypoint order to the canonical one, with a wrist made from the palm centre.

    STB annotates the palm centre, not the wrist. The wrist is put on the line from the middle
    MCP through the palm centre, as far beyond the palm centre as the MCP is before it:
    wrist = middle_MCP + 2 (palm - middle_MCP). Public STB readers extrapolate from the middle
    or the ring MCP; this one uses the middle MCP.

    Args:
      stb_keypoints: (21, 3) in STB order (any unit, any frame).

    Returns:
      (21, 3) in canonical order (SPEC 5), same unit and frame.
    """
    stb_keypoints = np.asarray(stb_keypoints, np.float64)
    canonical = stb_keypoints[STB_TO_CANONICAL]
    palm = stb_keypoints[PALM_CENTRE]
    middle_mcp = stb_keypoints[STB_MIDDLE_MCP]
    canonical[0] = middle_mcp + 2.0 * (palm - middle_mcp)
    return canonical


def decode_depth(bgr):
    """Decodes STB's depth PNG: millimetres = R + 256 G.

    Args:
      bgr: (H, W, 3) uint8, the depth PNG as OpenCV loads it (B, G, R).

    Returns:
      (H, W) float32 depth, metres; 0 where the sensor gave none.
    """
    millimetres = bgr[..., 2].astype(np.float64) + 256.0 * bgr[..., 1]
    return (millimetres / 1000.0).astype(np.float32)


def _load_hand_para(path):
    """Loads labels/<seq>_SK.mat: (3, 21, n) float64 mm. Raises DataError naming the file."""
    try:
        contents = scipy.io.loadmat(path)
    except Exception as err:  # loadmat raises many types on truncated or foreign files.
        raise DataError(f"{path}: cannot be read as an STB label file "
                        f"({type(err).__name__}: {err})") from err
    if "handPara" not in contents:
        raise DataError(f"{path}: no 'handPara' variable (found {sorted(contents)})")
    hand_para = np.asarray(contents["handPara"], np.float64)
    if hand_para.ndim != 3 or hand_para.shape[:2] != (3, NUM_KEYPOINTS) or hand_para.shape[2] < 1:
        raise DataError(f"{path}: 'handPara' must have shape (3, {NUM_KEYPOINTS}, n >= 1), got "
                        f"{hand_para.shape}")
    return hand_para


class STBReader(collections.abc.Sequence):
    """The frames of one STB split: its sequences in SEQUENCES order, frames 0..n-1 each.

    `reader[i]` returns a RawSample with the keypoints in the colour camera frame (metres);
    `reader.sample_ids[i]` is its (sequence, frame). Labels are loaded here, images on access.
    """

    def __init__(self, root: str, split: str):
        """Opens a split.

        Args:
          root: the STB directory (containing images/ and labels/).
          split: 'train' (B2-B6 x {Counting, Random}) or 'test' (B1Counting, B1Random).

        Raises:
          ValueError: unknown split.
          DataError: a label file or image directory of the split is missing or malformed.
        """
        if split not in SEQUENCES:
            raise ValueError(f"STB: split must be one of {sorted(SEQUENCES)}, got {split!r}")
        self.root = root
        self.split = split
        self.sequences = SEQUENCES[split]
        self._hand_para = {}
        self.sample_ids = []
        for seq in self.sequences:
            label_path = self._label_path(seq)
            image_dir = os.path.join(root, "images", seq)
            for expected in (label_path, image_dir):
                if os.path.exists(expected):
                    continue
                if not all(os.path.isdir(os.path.join(root, d)) for d in ("images", "labels")):
                    raise DataError(f"STB: expected {expected}; download the STB data set and "
                                    f"point DataConfig.data_dir at its "
                                    f"directory (with images/ and labels/)")
                raise DataError(f"STB: expected {expected}: sequence {seq} of the {split} "
                                f"split is missing")
            self._hand_para[seq] = _load_hand_para(label_path)
            self.sample_ids.extend((seq, f) for f in range(self._hand_para[seq].shape[2]))
        self.sample_ids = tuple(self.sample_ids)
        self._depth_to_color = depth_to_color_transform()

    def __len__(self):
        return len(self.sample_ids)

    def _label_path(self, seq):
        return os.path.join(self.root, "labels", f"{seq}_SK.mat")

    def _image_path(self, kind, seq, frame):
        return os.path.join(self.root, "images", seq, f"SK_{kind}_{frame}.png")

    def describe(self, i: int) -> str:
        """The colour file of sample i, for messages."""
        return self._image_path("color", *self.sample_ids[operator.index(i)])

    def keypoints(self, i: int) -> np.ndarray:
        """Sample i's canonical keypoints, (21, 3) metres, colour camera frame (no image I/O)."""
        seq, frame = self.sample_ids[operator.index(i)]
        stb_depth_mm = self._hand_para[seq][:, :, frame].T
        if not np.all(np.isfinite(stb_depth_mm)):
            raise DataError(f"{self._label_path(seq)}: frame {frame}: 'handPara' has NaN or "
                            f"infinite values")
        depth_frame = to_canonical(stb_depth_mm) / 1000.0
        return depth_frame @ self._depth_to_color[:3, :3].T + self._depth_to_color[:3, 3]

    def __getitem__(self, i: int) -> RawSample:
        keypoints = self.keypoints(i)
        seq, frame = self.sample_ids[operator.index(i)]
        color_path = self._image_path("color", seq, frame)
        return RawSample(
            color=io.read_rgb(color_path),
            depth=decode_depth(io.read_bgr(self._image_path("depth", seq, frame))),
            hand_mask=None,
            K_color=K_COLOR.copy(),
            K_depth=K_DEPTH.copy(),
            depth_to_color=self._depth_to_color.copy(),
            keypoints=keypoints,
            visible=np.ones(NUM_KEYPOINTS, bool),
            hand="left",
            source=color_path)
