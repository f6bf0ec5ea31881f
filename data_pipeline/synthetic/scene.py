"""A posed hand in front of a camera: its solids, placement, part labels and a background wall.

The hand model (hand_model.py) gives keypoints in a right-hand local frame; here the hand gets a
body (capsules for the bones, a palm slab, a forearm capsule behind a flexing wrist), a side
(left hands are mirror images), a random orientation and a position 0.3-0.8 m from the camera
with the hand inside the image. All lengths are metres.
"""
import dataclasses

import numpy as np

from data_pipeline.sample import ROOT_KEYPOINT
from data_pipeline.synthetic import hand_model
from data_pipeline.synthetic import renderer

# Bone radii (metres, for a hand of scale 1), per finger base to tip: thumb metacarpal (the
# thenar bulk), proximal, distal; other fingers proximal, middle, distal phalanx.
BONE_RADII = np.array([
    [0.0125, 0.0105, 0.0095],
    [0.0095, 0.0085, 0.0075],
    [0.0098, 0.0088, 0.0078],
    [0.0092, 0.0083, 0.0074],
    [0.0082, 0.0074, 0.0067],
])
TIP_INSET = 0.6  # depth of the fingertip keypoint under the surface, in tip radii
PALM_HALF_THICKNESS = 0.0125
FOREARM_RADIUS = 0.021
FOREARM_LENGTH = 0.45
WRIST_FLEXION = (-50.0, 50.0)  # degrees, hand relative to forearm, palmar positive
WRIST_DEVIATION = (-15.0, 20.0)  # degrees, radial positive
DISTANCE_RANGE = (0.3, 0.8)  # depth of the root keypoint (middle MCP), metres
# Slack added to a keypoint's radius in the depth test: a pixel centre is up to half a pixel
# diagonal away from the keypoint's projection, where an oblique surface can be a little nearer.
VISIBILITY_SLACK = 0.005

# RHD mask labels (SPEC 5): 1 person (the forearm), left hand 2-16 phalanges (3 per finger,
# thumb first, distal first) and 17 palm; the right hand adds 16.
PERSON_LABEL = 1
PALM_LABEL_LEFT = 17
RIGHT_HAND_LABEL_OFFSET = 16

# The forearm may come towards the camera only this much (z of its unit direction), so it rarely
# hides the whole hand.
_MAX_FOREARM_TOWARDS_CAMERA = 0.5
_MIN_FOREARM_END_DEPTH = 0.12
_PLACEMENT_TRIES = 40
_IMAGE_MARGIN_PX = 3


@dataclasses.dataclass(frozen=True)
class PosedHand:
    """A hand body in the camera frame.

    Attributes:
      keypoints: (21, 3) metres, camera frame, canonical order.
      solids: renderer.Solids; capsules are the 15 bones (finger-major, base to tip), then the
        forearm; the palm is the slab.
      part_labels: (17,) RHD mask label of each part index.
      is_forearm: (17,) bool, the part is the forearm (the rest is the hand).
      tolerance: (21,) metres, depth-test tolerance of each keypoint.
      hand: 'left' or 'right'.
    """

    keypoints: np.ndarray
    solids: renderer.Solids
    part_labels: np.ndarray
    is_forearm: np.ndarray
    tolerance: np.ndarray
    hand: str


def _local_body(pose, keypoints, wrist_flexion, wrist_deviation):
    """Capsules, palm slab and keypoint radii in the right-hand local frame."""
    s = pose.scale
    starts, ends, radii = [], [], []
    for f in range(hand_model.NUM_FINGERS):
        chain = keypoints[[4 + 4 * f, 3 + 4 * f, 2 + 4 * f, 1 + 4 * f]]  # base .. tip
        for j in range(3):
            a, b = chain[j], chain[j + 1]
            r = BONE_RADII[f, j] * s
            if j == 2:
                # The fingertip keypoint sits just inside the tip's surface (by TIP_INSET r), so
                # the ray through its pixel meets the fingertip rather than grazing past it.
                direction = (b - a) / np.linalg.norm(b - a)
                b = b - (1.0 - TIP_INSET) * r * direction
            starts.append(a)
            ends.append(b)
            radii.append(r)
    # The forearm leaves the wrist along -y, turned by the wrist's flexion and deviation.
    fx, fz = np.deg2rad(wrist_flexion), np.deg2rad(wrist_deviation)
    forearm = np.array([np.sin(fz), -np.cos(fz) * np.cos(fx), -np.cos(fz) * np.sin(fx)])
    starts.append(keypoints[0])
    ends.append(keypoints[0] + FOREARM_LENGTH * s * forearm)
    radii.append(FOREARM_RADIUS * s)
    # Palm outline, counter-clockwise in the (x, y) plane: wrist radial, thumb side, the four
    # MCPs (a little distal and outward), wrist ulnar. Outward normal of edge e: (e_y, -e_x).
    b = pose.bases
    outline = np.array([
        [0.024 * s, 0.0],
        b[0, :2] + [0.009 * s, 0.008 * s],
        b[1, :2] + [0.007 * s, 0.003 * s],
        b[2, :2] + [0.0, 0.004 * s],
        b[3, :2] + [0.0, 0.004 * s],
        b[4, :2] + [-0.007 * s, 0.002 * s],
        [-0.026 * s, 0.0],
    ])
    edges = np.roll(outline, -1, axis=0) - outline
    side_normals = np.stack([edges[:, 1], -edges[:, 0], np.zeros(len(edges))], axis=1)
    side_normals /= np.linalg.norm(side_normals, axis=1, keepdims=True)
    side_offsets = np.einsum("nk,nk->n", side_normals[:, :2], outline)
    half = PALM_HALF_THICKNESS * s
    normals = np.concatenate([side_normals, [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]])
    offsets = np.concatenate([side_offsets, [half, half]])
    vertices = np.concatenate([np.c_[outline, np.full(len(outline), z)] for z in (-half, half)])
    # Keypoint radii: the largest solid around each joint.
    kp_radius = np.zeros(hand_model.NUM_KEYPOINTS)
    kp_radius[0] = FOREARM_RADIUS * s
    for f in range(hand_model.NUM_FINGERS):
        r = BONE_RADII[f] * s
        base = 4 + 4 * f
        kp_radius[base] = max(r[0], PALM_HALF_THICKNESS * s) if f else r[0]
        kp_radius[base - 1] = max(r[0], r[1])
        kp_radius[base - 2] = max(r[1], r[2])
        kp_radius[base - 3] = r[2]
    return (np.array(starts), np.array(ends), np.array(radii), normals, offsets, vertices,
            kp_radius, forearm)


def _random_rotation(rng):
    """A uniformly distributed (3, 3) rotation (from a normalised Gaussian quaternion)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _project(K, points):
    uv = points @ K.T
    return uv[:, :2] / uv[:, 2:3]


def _inside(uv, height, width):
    m = _IMAGE_MARGIN_PX
    return (uv[:, 0] >= m) & (uv[:, 0] <= width - 1 - m) & (uv[:, 1] >= m) & (
        uv[:, 1] <= height - 1 - m)


def place_hand(rng, pose, hand, cameras, height, width):
    """Poses a sampled hand in front of the camera(s).

    The orientation is uniform except that the forearm may not point at the camera; the root's
    depth is uniform in DISTANCE_RANGE; its image position is uniform over positions that keep
    all 21 keypoints inside every given camera's image (the best of several tries otherwise).

    Args:
      rng: numpy Generator.
      pose: hand_model.HandPose.
      hand: 'left' or 'right'.
      cameras: list of (K (3, 3), R (3, 3), T (3,)) such that X_camera_i = R X + T; the first is
        the camera in whose frame the hand is returned, with R = I, T = 0.
      height, width: the images' size.

    Returns:
      A PosedHand in the first camera's frame.
    """
    keypoints_local = hand_model.forward_kinematics(pose)
    wrist = (rng.uniform(*WRIST_FLEXION), rng.uniform(*WRIST_DEVIATION))
    starts, ends, radii, normals, offsets, vertices, kp_radius, forearm = _local_body(
        pose, keypoints_local, *wrist)
    mirror = np.diag([-1.0, 1.0, 1.0]) if hand == "left" else np.eye(3)
    K0_inv = np.linalg.inv(cameras[0][0])
    best = None
    for _ in range(_PLACEMENT_TRIES):
        M = _random_rotation(rng) @ mirror
        if (M @ forearm)[2] < -_MAX_FOREARM_TOWARDS_CAMERA:
            continue
        rotated = (keypoints_local - keypoints_local[ROOT_KEYPOINT]) @ M.T
        depth = rng.uniform(*DISTANCE_RANGE)
        pixel = rng.uniform([0.0, 0.0], [width - 1.0, height - 1.0])
        root = depth * (K0_inv @ np.array([pixel[0], pixel[1], 1.0]))
        t = root - M @ keypoints_local[ROOT_KEYPOINT]
        forearm_end = M @ ends[-1] + t
        if forearm_end[2] < _MIN_FOREARM_END_DEPTH:
            continue
        keypoints = rotated + root
        n_inside = min(int(_inside(_project(K, keypoints @ R.T + T), height, width).sum())
                       for K, R, T in cameras)
        if best is None or n_inside > best[0]:
            best = (n_inside, M, t)
        if n_inside == hand_model.NUM_KEYPOINTS:
            break
    if best is None:
        raise RuntimeError("no hand placement found; the placement constraints are inconsistent")
    _, M, t = best
    solids = renderer.Solids(
        capsule_start=starts @ M.T + t,
        capsule_end=ends @ M.T + t,
        capsule_radius=radii,
        slab_normals=normals @ M.T,
        slab_offsets=offsets + (normals @ M.T) @ t,
        slab_vertices=vertices @ M.T + t,
    )
    side_offset = RIGHT_HAND_LABEL_OFFSET if hand == "right" else 0
    bone_labels = [2 + 3 * f + (2 - j) for f in range(5) for j in range(3)]
    part_labels = np.array(bone_labels + [PERSON_LABEL - side_offset, PALM_LABEL_LEFT])
    part_labels = part_labels + side_offset
    is_forearm = np.zeros(len(part_labels), bool)
    is_forearm[len(bone_labels)] = True
    return PosedHand(
        keypoints=keypoints_local @ M.T + t,
        solids=solids,
        part_labels=part_labels,
        is_forearm=is_forearm,
        tolerance=kp_radius + VISIBILITY_SLACK,
        hand=hand,
    )


def transform_solids(solids, R, T):
    """The solids seen from another camera: X' = R X + T (R a rotation)."""
    normals = solids.slab_normals @ R.T
    return renderer.Solids(
        capsule_start=solids.capsule_start @ R.T + T,
        capsule_end=solids.capsule_end @ R.T + T,
        capsule_radius=solids.capsule_radius,
        slab_normals=normals,
        slab_offsets=solids.slab_offsets + normals @ T,
        slab_vertices=solids.slab_vertices @ R.T + T,
    )


def sample_wall(rng, nearest_depth, max_extra):
    """A background plane behind everything up to `nearest_depth` at every pixel.

    The plane's slopes are at most 0.3, so along a ray (x, y, 1) with |x| + |y| <= 1.5 (both
    cameras' image corners) its depth is at least its axial depth / 1.45; the axial depth is
    1.45 nearest_depth plus up to `max_extra` metres.

    Returns:
      normal: (3,) unit normal; offset: the plane is {x : normal . x = offset}.
    """
    tilt = rng.uniform(-0.3, 0.3, 2)
    normal = np.array([tilt[0], tilt[1], 1.0])
    normal /= np.linalg.norm(normal)
    axial = 1.45 * nearest_depth + rng.uniform(0.0, max_extra)
    return normal, normal[2] * axial


def hand_extent_depth(solids):
    """The largest depth of any point of the solids (metres), a bound for the wall."""
    ends = np.concatenate([solids.capsule_start, solids.capsule_end])
    radii = np.concatenate([solids.capsule_radius] * 2)
    return float(max((ends[:, 2] + radii).max(), solids.slab_vertices[:, 2].max()))
