"""Synthetic samples in the STB format (SPEC 5, "STB").

Layout under the root: images/<seq>/SK_color_<i>.png and SK_depth_<i>.png (640 x 480, i from 0)
and labels/<seq>_SK.mat with 'handPara' (3, 21, n_frames), millimetres, depth camera frame, STB
keypoint order (0 palm centre, then little, ring, middle, index, thumb, each MCP..tip).
Sequences B1..B6 x {Counting, Random}; B2-B6 hold the training frames, B1 the test frames.
STB's hands are left hands. The colour image is rendered from the colour camera and the depth
image from the depth camera, with STB's intrinsics and extrinsics.
"""
import os

import cv2
import numpy as np
import scipy.io

from data_pipeline.synthetic import hand_model
from data_pipeline.synthetic import renderer
from data_pipeline.synthetic import scene
from data_pipeline.synthetic import texture

WIDTH, HEIGHT = 640, 480
K_DEPTH = np.array([[475.62768, 0.0, 336.41179], [0.0, 474.77709, 238.77962], [0.0, 0.0, 1.0]])
K_COLOR = np.array([[607.92271, 0.0, 314.78337], [0.0, 607.88192, 236.42484], [0.0, 0.0, 1.0]])
# Colour from depth frame: X_colour = R^T (X_depth - T), R = Rodrigues(r), T in millimetres.
ROTATION_VECTOR = np.array([0.00531, -0.01196, 0.00301])
TRANSLATION_MM = np.array([-24.0381, -0.4563, -1.2326])
SEQUENCES = {
    "train": [f"B{b}{kind}" for b in range(2, 7) for kind in ("Counting", "Random")],
    "test": ["B1Counting", "B1Random"],
}
MAX_DEPTH_MM = 65535


def color_to_depth():
    """(R, T): X_depth = R X_colour + T (metres), the inverse of SPEC 5's X_colour = R^T
    (X_depth - T)."""
    R, _ = cv2.Rodrigues(ROTATION_VECTOR)
    return R, TRANSLATION_MM / 1000.0


def to_stb_order(keypoints):
    """(21, 3) canonical keypoints -> (21, 3) STB order: the palm centre, then canonical 20..1.

    The palm centre is the midpoint of the wrist and the middle MCP, so that readers recover the
    wrist as middle_MCP + 2 (palm - middle_MCP).
    """
    palm = 0.5 * (keypoints[0] + keypoints[12])
    return np.concatenate([palm[None], keypoints[20:0:-1]])


def frame_layout(split, num_frames):
    """Assigns a split's frames to its sequences, spread evenly (earlier sequences get the
    remainder).

    Returns:
      A list of (sequence, frame index in the sequence), one per sample index, and
      {sequence: number of frames}.
    """
    sequences = SEQUENCES[split]
    counts = {seq: num_frames // len(sequences) + (k < num_frames % len(sequences))
              for k, seq in enumerate(sequences)}
    layout = [(seq, i) for seq in sequences for i in range(counts[seq])]
    return layout, counts


def encode_depth(depth):
    """(H, W) metres -> (H, W, 3) uint8 BGR with depth in mm = R + 256 G (STB's encoding)."""
    value = np.clip(np.round(depth * 1000.0), 0, MAX_DEPTH_MM).astype(np.uint16)
    bgr = np.zeros(depth.shape + (3,), np.uint8)
    bgr[..., 2] = value & 0xFF
    bgr[..., 1] = value >> 8
    return bgr


def render_sample(rng, counting):
    """Renders one STB-style frame of a left hand.

    Args:
      rng: numpy Generator.
      counting: a 'Counting' sequence (counting gestures) rather than 'Random'.

    Returns:
      color: (480, 640, 3) uint8 RGB from the colour camera.
      depth: (480, 640) float64 metres from the depth camera.
      keypoints_depth: (21, 3) metres, depth camera frame, canonical order.
      posed: the scene.PosedHand in the colour camera frame.
    """
    R, T = color_to_depth()
    pose = hand_model.sample_hand_pose(rng, counting=counting)
    cameras = [(K_COLOR, np.eye(3), np.zeros(3)), (K_DEPTH, R, T)]
    posed = scene.place_hand(rng, pose, "left", cameras, HEIGHT, WIDTH)
    _, part, normal = renderer.cast(posed.solids, K_COLOR, HEIGHT, WIDTH)
    albedo = texture.part_albedo(rng, posed.is_forearm)
    color = texture.compose(part, texture.shade(part, normal, albedo, rng),
                            texture.background(rng, HEIGHT, WIDTH))
    solids_depth = scene.transform_solids(posed.solids, R, T)
    depth_hand, _, _ = renderer.cast(solids_depth, K_DEPTH, HEIGHT, WIDTH)
    wall_normal, wall_offset = scene.sample_wall(rng, scene.hand_extent_depth(solids_depth), 1.5)
    depth = np.minimum(depth_hand,
                       renderer.plane_depth(K_DEPTH, HEIGHT, WIDTH, wall_normal, wall_offset))
    return color, depth, posed.keypoints @ R.T + T, posed


def write_sample(root, sequence, frame, rng):
    """Renders one frame, writes its two PNGs, and returns its (21, 3) keypoints in STB order,
    millimetres, depth camera frame."""
    color, depth, keypoints, _ = render_sample(rng, counting=sequence.endswith("Counting"))
    for name, image in ((f"SK_color_{frame}.png", cv2.cvtColor(color, cv2.COLOR_RGB2BGR)),
                        (f"SK_depth_{frame}.png", encode_depth(depth))):
        path = os.path.join(root, "images", sequence, name)
        if not cv2.imwrite(path, image):
            raise OSError(f"could not write {path}")
    return to_stb_order(keypoints) * 1000.0


def make_dirs(root):
    """Creates images/<seq>/ for every sequence and labels/."""
    for sequences in SEQUENCES.values():
        for seq in sequences:
            os.makedirs(os.path.join(root, "images", seq), exist_ok=True)
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)


def write_labels(root, sequence, keypoints_mm):
    """Writes labels/<seq>_SK.mat with handPara (3, 21, n) from (n, 21, 3) millimetres."""
    hand_para = np.transpose(np.asarray(keypoints_mm, np.float64).reshape(-1, 21, 3), (2, 1, 0))
    scipy.io.savemat(os.path.join(root, "labels", f"{sequence}_SK.mat"), {"handPara": hand_para})
