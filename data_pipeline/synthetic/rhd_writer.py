"""Synthetic samples in the RHD format (SPEC 5, "RHD").

Layout under the root: {training,evaluation}/{color,depth,mask}/%05d.png (320 x 320) and
{training,evaluation}/anno_{training,evaluation}.pickle = {index: {'xyz': (42, 3) metres,
'uv_vis': (42, 3) u, v, visibility, 'K': (3, 3)}}, keypoints 0-20 left hand, 21-41 right hand.
One hand is rendered per image; the other hand's entries are a hand placed outside the view
with visibility 0 and no mask pixels, so a reader's dominant-hand rule picks the rendered one.
"""
import dataclasses
import os
import pickle

import cv2
import numpy as np

from data_pipeline.synthetic import hand_model
from data_pipeline.synthetic import renderer
from data_pipeline.synthetic import scene
from data_pipeline.synthetic import texture

SIZE = 320
PRINCIPAL_POINT = 160.0
FOCAL_RANGE = (250.0, 350.0)  # pixels; varies per image as in RHD
MAX_DEPTH = 5.0  # metres encoded by (R * 256 + G) / 65535
SPLITS = {"train": "training", "test": "evaluation"}
ANNOTATION_KEYS = ("xyz", "uv_vis", "K")
# Where the unrendered hand is put: far to the side, so it projects outside the image.
_OTHER_HAND_OFFSET = np.array([3.0, 0.0, 0.0])


def encode_depth(depth):
    """(H, W) metres -> (H, W, 3) uint8 in OpenCV's BGR order: R = high byte, G = low byte of
    round(depth / 5 * 65535), B = 0 (RHD's encoding)."""
    value = np.round(np.clip(depth, 0.0, MAX_DEPTH) / MAX_DEPTH * 65535.0).astype(np.uint16)
    bgr = np.zeros(depth.shape + (3,), np.uint8)
    bgr[..., 2] = value >> 8
    bgr[..., 1] = value & 0xFF
    return bgr


@dataclasses.dataclass(frozen=True)
class RenderedSample:
    """One RHD-style sample before encoding.

    Attributes:
      color: (320, 320, 3) uint8 RGB.
      depth: (320, 320) float64 metres.
      mask: (320, 320) uint8 RHD part labels.
      annotation: {'xyz': (42, 3) float32, 'uv_vis': (42, 3) float32, 'K': (3, 3) float32}.
      posed: the rendered scene.PosedHand (camera frame).
    """

    color: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    annotation: dict
    posed: scene.PosedHand


def render_sample(rng):
    """Renders one RHD-style sample (a RenderedSample) from its random generator."""
    focal = rng.uniform(*FOCAL_RANGE)
    K = np.array([[focal, 0.0, PRINCIPAL_POINT], [0.0, focal, PRINCIPAL_POINT], [0.0, 0.0, 1.0]])
    hand = "left" if rng.random() < 0.5 else "right"
    pose = hand_model.sample_hand_pose(rng)
    posed = scene.place_hand(rng, pose, hand, [(K, np.eye(3), np.zeros(3))], SIZE, SIZE)
    depth_hand, part, normal = renderer.cast(posed.solids, K, SIZE, SIZE)
    wall_normal, wall_offset = scene.sample_wall(rng, scene.hand_extent_depth(posed.solids), 1.0)
    depth = np.minimum(depth_hand, renderer.plane_depth(K, SIZE, SIZE, wall_normal, wall_offset))
    mask = np.where(part >= 0, posed.part_labels[part.clip(0)], 0).astype(np.uint8)
    albedo = texture.part_albedo(rng, posed.is_forearm)
    color = texture.compose(part, texture.shade(part, normal, albedo, rng),
                            texture.background(rng, SIZE, SIZE))
    visible = renderer.depth_test_visibility(posed.keypoints, K, depth, posed.tolerance)
    other = hand_model.mirror(posed.keypoints - posed.keypoints[0]) + posed.keypoints[0]
    other = other + _OTHER_HAND_OFFSET
    rendered_first = hand == "left"
    xyz = np.concatenate([posed.keypoints, other] if rendered_first else [other, posed.keypoints])
    vis = np.concatenate([visible, np.zeros(21, bool)] if rendered_first
                         else [np.zeros(21, bool), visible])
    uv = xyz @ K.T
    uv = uv[:, :2] / uv[:, 2:3]
    annotation = dict(zip(ANNOTATION_KEYS, (
        xyz.astype(np.float32),
        np.concatenate([uv, vis[:, None]], axis=1).astype(np.float32),
        K.astype(np.float32))))
    return RenderedSample(color, depth, mask, annotation, posed)


def write_sample(root, split, index, rng):
    """Renders sample `index` of `split` ('train' or 'test') and writes its three PNGs.

    Returns:
      Its annotation dict (see render_sample).
    """
    sample = render_sample(rng)
    split_dir = os.path.join(root, SPLITS[split])
    name = "%05d.png" % index
    for sub, image in (("color", cv2.cvtColor(sample.color, cv2.COLOR_RGB2BGR)),
                       ("depth", encode_depth(sample.depth)), ("mask", sample.mask)):
        path = os.path.join(split_dir, sub, name)
        if not cv2.imwrite(path, image):
            raise OSError(f"could not write {path}")
    return sample.annotation


def make_dirs(root):
    """Creates the split/modality directories under root."""
    for split_dir in SPLITS.values():
        for sub in ("color", "depth", "mask"):
            os.makedirs(os.path.join(root, split_dir, sub), exist_ok=True)


def write_annotations(root, split, annotations):
    """Writes anno_<split>.pickle from a list of per-index annotation dicts."""
    split_dir = SPLITS[split]
    path = os.path.join(root, split_dir, f"anno_{split_dir}.pickle")
    content = {index: {key: anno[key] for key in ANNOTATION_KEYS}
               for index, anno in enumerate(annotations)}
    with open(path, "wb") as f:
        pickler = pickle.Pickler(f, protocol=pickle.HIGHEST_PROTOCOL)
        # No memo: with it the bytes would depend on object identity (shared dtype and key
        # objects), i.e. on which process produced each annotation.
        pickler.fast = True
        pickler.dump(content)
