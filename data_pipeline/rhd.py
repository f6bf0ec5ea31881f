"""Reader of the Rendered Hand Pose data set (RHD_published_v2, Zimmermann & Brox 2017; SPEC 5).

Layout under the root:
  {training,evaluation}/anno_{training,evaluation}.pickle
      {index: {'xyz': (42, 3) metres, camera frame; 'uv_vis': (42, 3) u, v, visibility;
               'K': (3, 3)}}, keypoints 0-20 the left hand, 21-41 the right, canonical order.
  {training,evaluation}/{color,depth,mask}/%05d.png
Colour, depth and mask come from one camera, so K_color = K_depth = K and depth_to_color is the
identity. Only the dominant hand of a frame (the one with more mask pixels) is returned; a
training frame without hand pixels is an error, an evaluation frame keeps its (empty) mask.
"""
import collections.abc
import operator
import os
import pickle

from absl import logging
import numpy as np

from data_pipeline import io
from data_pipeline.sample import NUM_KEYPOINTS, DataError, RawSample

SPLIT_DIRS = {"train": "training", "test": "evaluation"}

# Mask labels: 0 background, 1 person, 2-17 left hand (17 palm), 18-33 right hand (33 palm).
LEFT_LABELS = (2, 17)
RIGHT_LABELS = (18, 33)

DEPTH_MAX_M = 5.0  # the 16-bit depth code 65535 means 5 m

# Training samples known to be broken in other RHD projects (SPEC 5). They are dropped from the
# training split (the count is logged); the evaluation split is read in full.
BROKEN_TRAINING_IDS = (20500, 28140)


def decode_depth(bgr):
    """Decodes RHD's depth PNG: the 16-bit code is R * 256 + G.

    Args:
      bgr: (H, W, 3) uint8, the depth PNG as OpenCV loads it (B, G, R).

    Returns:
      (H, W) float32 depth, metres: (R * 256 + G) / 65535 * 5.
    """
    code = bgr[..., 2].astype(np.float64) * 256.0 + bgr[..., 1]
    return (code / 65535.0 * DEPTH_MAX_M).astype(np.float32)


def dominant_hand(labels):
    """Picks the hand with more mask pixels.

    Ties go to the right hand, as in Zimmermann & Brox's hand3d reader (left only when strictly
    larger).

    Args:
      labels: (H, W) integer RHD mask labels.

    Returns:
      hand: 'left' or 'right'.
      mask: (H, W) bool, the pixels of that hand.
    """
    left = (labels >= LEFT_LABELS[0]) & (labels <= LEFT_LABELS[1])
    right = (labels >= RIGHT_LABELS[0]) & (labels <= RIGHT_LABELS[1])
    if np.count_nonzero(left) > np.count_nonzero(right):
        return "left", left
    return "right", right


def _load_annotations(path):
    """Loads the anno pickle: {int index: dict}. Raises DataError naming the file."""
    try:
        with open(path, "rb") as f:
            # RHD's pickle was written by Python 2; latin1 lets Python 3 read its NumPy arrays.
            annotations = pickle.load(f, encoding="latin1")
    except Exception as err:  # pickle raises many types on truncated or foreign data.
        raise DataError(f"{path}: cannot be read as an RHD annotation pickle "
                        f"({type(err).__name__}: {err})") from err
    if not isinstance(annotations, dict) or not annotations:
        raise DataError(f"{path}: expected a non-empty dict {{index: annotation}}, got "
                        f"{type(annotations).__name__}")
    bad_keys = [k for k in annotations if not isinstance(k, (int, np.integer))]
    if bad_keys:
        raise DataError(f"{path}: sample indices must be integers, got {bad_keys[0]!r}")
    return annotations


class RHDReader(collections.abc.Sequence):
    """The samples of one RHD split, in the order of their annotation indices.

    `reader[i]` (0 <= i < len(reader)) reads the files of `reader.sample_ids[i]` and returns a
    RawSample. The annotation pickle is loaded once, here; images are read on access.
    """

    def __init__(self, root: str, split: str):
        """Opens a split.

        Args:
          root: the RHD_published_v2 directory (containing training/ and evaluation/).
          split: 'train' (training/) or 'test' (evaluation/).

        Raises:
          ValueError: unknown split.
          DataError: the directory does not have RHD's layout, or the pickle is malformed.
        """
        if split not in SPLIT_DIRS:
            raise ValueError(f"RHD: split must be one of {sorted(SPLIT_DIRS)}, got {split!r}")
        name = SPLIT_DIRS[split]
        self.root = root
        self.split = split
        self._dir = os.path.join(root, name)
        self.annotation_path = os.path.join(self._dir, f"anno_{name}.pickle")
        for expected in (self.annotation_path,
                         *(os.path.join(self._dir, sub) for sub in ("color", "depth", "mask"))):
            if not os.path.exists(expected):
                raise DataError(f"RHD: expected {expected}; download RHD_published_v2 and point "
                                f"DataConfig.data_dir at its directory (with training/ and "
                                f"evaluation/)")
        self._annotations = _load_annotations(self.annotation_path)
        ids = sorted(int(k) for k in self._annotations)
        broken = set(BROKEN_TRAINING_IDS) if split == "train" else set()
        self.excluded_ids = tuple(i for i in ids if i in broken)
        self.sample_ids = tuple(i for i in ids if i not in broken)
        if self.excluded_ids:
            logging.info("RHD %s: skipped %d known-broken samples %s", split,
                         len(self.excluded_ids), list(self.excluded_ids))

    def __len__(self):
        return len(self.sample_ids)

    def _path(self, kind, sample_id):
        return os.path.join(self._dir, kind, f"{sample_id:05d}.png")

    def describe(self, i: int) -> str:
        """The colour file of sample i, for messages."""
        return self._path("color", self.sample_ids[operator.index(i)])

    def _annotation(self, sample_id):
        """The sample's (xyz, uv_vis, K) as float64 arrays, checked."""
        where = f"{self.annotation_path}: sample {sample_id}"
        anno = self._annotations[sample_id]
        if not isinstance(anno, dict):
            raise DataError(f"{where}: expected a dict, got {type(anno).__name__}")
        arrays = []
        for key, shape in (("xyz", (2 * NUM_KEYPOINTS, 3)), ("uv_vis", (2 * NUM_KEYPOINTS, 3)),
                           ("K", (3, 3))):
            if key not in anno:
                raise DataError(f"{where}: missing {key!r}")
            value = np.asarray(anno[key], np.float64)
            if value.shape != shape:
                raise DataError(f"{where}: {key!r} must have shape {shape}, got {value.shape}")
            arrays.append(value)
        return arrays

    def __getitem__(self, i: int) -> RawSample:
        sample_id = self.sample_ids[operator.index(i)]
        xyz, uv_vis, K = self._annotation(sample_id)
        color_path = self._path("color", sample_id)
        mask_path = self._path("mask", sample_id)
        depth_path = self._path("depth", sample_id)
        color = io.read_rgb(color_path)
        labels = io.read_labels(mask_path)
        depth = decode_depth(io.read_bgr(depth_path))
        for path, shape in ((mask_path, labels.shape), (depth_path, depth.shape)):
            if shape != color.shape[:2]:
                raise DataError(f"{path}: size {shape} differs from the colour image "
                                f"{color.shape[:2]} ({color_path})")
        hand, hand_mask = dominant_hand(labels)
        # The evaluation split keeps such a sample: SPEC 6 scores every test sample, and
        # pre-processing crops it by its keypoints instead.
        if not hand_mask.any() and self.split != "test":
            raise DataError(f"{mask_path}: the mask has no hand pixels (labels 2-33)")
        hand_rows = slice(0, NUM_KEYPOINTS) if hand == "left" else slice(NUM_KEYPOINTS, None)
        keypoints = xyz[hand_rows]
        where = f"{self.annotation_path}: sample {sample_id}"
        if not np.all(np.isfinite(keypoints)):
            raise DataError(f"{where}: the {hand} hand's 'xyz' has NaN or infinite values")
        if not np.all(np.isfinite(K)):
            raise DataError(f"{where}: 'K' has NaN or infinite values")
        return RawSample(
            color=color,
            depth=depth,
            hand_mask=hand_mask,
            K_color=K,
            K_depth=K.copy(),
            depth_to_color=np.eye(4),
            keypoints=keypoints,
            visible=uv_vis[hand_rows, 2] > 0.5,
            hand=hand,
            source=color_path)
