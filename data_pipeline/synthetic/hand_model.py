"""An articulated hand: 21 keypoints from bone lengths and anatomical joint angles.

The model is built as a right hand in a local frame (metres): origin at the wrist, x radial
(towards the thumb), y distal (along the middle metacarpal), z palmar. This frame is right-handed,
which is what makes the construction a right hand; a left hand is its mirror image (x -> -x).

Keypoints follow the project's canonical (RHD) order: 0 wrist; 1-4 thumb tip..base; 5-8 index
tip..MCP; 9-12 middle; 13-16 ring; 17-20 little. For finger f (0 thumb .. 4 little) the keypoints
are tip = 1 + 4f, then 2 + 4f, 3 + 4f and the base 4 + 4f. For the thumb the base is the CMC joint
and the three bones are metacarpal, proximal and distal phalanx; for the other fingers the base is
the MCP joint and the bones are the proximal, middle and distal phalanges.

Joint model: each non-thumb finger has MCP flexion and abduction, PIP and DIP flexion (planar
flexion about one lateral axis, as a hinge chain after the MCP's abduction). The thumb has CMC
flexion and abduction about its own axes, MCP and IP flexion. Flexion is positive towards the palm.
"""
import dataclasses

import numpy as np

from data_pipeline.sample import NUM_KEYPOINTS

NUM_FINGERS = 5
FINGERS = ("thumb", "index", "middle", "ring", "little")

# Mean adult bone lengths (metres), per finger, base-to-tip: (base bone, second, distal). The
# distal length runs to the fingertip surface.
MEAN_BONE_LENGTHS = np.array([
    [0.046, 0.033, 0.029],  # thumb: metacarpal (CMC-MCP), proximal, distal
    [0.042, 0.025, 0.022],  # index: proximal, middle, distal phalanx
    [0.046, 0.029, 0.023],
    [0.043, 0.027, 0.023],
    [0.034, 0.020, 0.020],  # little
])

# Finger bases in the palm (the rigid part of the hand), right-hand local frame, metres. The
# wrist-to-middle-MCP distance (about 9 cm) and MCP spacing are typical adult values.
MEAN_BASES = np.array([
    [0.021, 0.027, 0.010],  # thumb CMC, slightly palmar
    [0.025, 0.083, 0.0],  # index MCP
    [0.004, 0.089, 0.0],  # middle MCP
    [-0.016, 0.083, 0.0],  # ring MCP
    [-0.033, 0.071, 0.0],  # little MCP
])

# Rest splay of each finger's metacarpal direction in the palm plane, radians, positive radial.
REST_SPLAY = np.deg2rad([0.0, 6.0, 0.0, -7.0, -15.0])

# Per-sample size variation: a global scale (adult hands from small to large) times a per-bone
# factor.
GLOBAL_SCALE_RANGE = (0.85, 1.15)
BONE_FACTOR_RANGE = (0.92, 1.08)

# Anatomical joint limits, degrees, as (low, high). Non-thumb fingers share these, except that
# the middle finger abducts less.
MCP_FLEXION = (-20.0, 90.0)
MCP_ABDUCTION = {1: (-20.0, 20.0), 2: (-12.0, 12.0), 3: (-18.0, 18.0), 4: (-25.0, 25.0)}
PIP_FLEXION = (0.0, 110.0)
DIP_FLEXION = (0.0, 85.0)
THUMB_CMC_FLEXION = (-15.0, 50.0)
THUMB_CMC_ABDUCTION = (-10.0, 50.0)
THUMB_MCP_FLEXION = (-10.0, 60.0)
THUMB_IP_FLEXION = (-15.0, 80.0)

# Thumb rest frame at the CMC (right hand, local frame): the metacarpal points radially and
# distally and somewhat palmar; it flexes across the palm (ulnar and palmar).
_THUMB_REST_DIRECTION = np.array([0.60, 0.70, 0.38])
_THUMB_FLEXION_DIRECTION = np.array([-0.75, 0.0, 0.66])


@dataclasses.dataclass(frozen=True)
class HandPose:
    """One sampled hand, in the right-hand local frame.

    Attributes:
      bone_lengths: (5, 3) metres, per finger base-to-tip (see MEAN_BONE_LENGTHS).
      bases: (5, 3) metres, finger bases in the palm (thumb CMC, then MCPs).
      flexion: (5, 3) degrees, per finger base-to-tip (thumb: CMC, MCP, IP; others: MCP, PIP,
        DIP).
      abduction: (5,) degrees (thumb: CMC abduction; others: MCP abduction).
      scale: the global size factor the bones and bases were multiplied by.
    """

    bone_lengths: np.ndarray
    bases: np.ndarray
    flexion: np.ndarray
    abduction: np.ndarray
    scale: float


def flexion_limits():
    """(5, 3, 2) degrees: low/high flexion limits per finger joint, base to tip."""
    finger = [MCP_FLEXION, PIP_FLEXION, DIP_FLEXION]
    thumb = [THUMB_CMC_FLEXION, THUMB_MCP_FLEXION, THUMB_IP_FLEXION]
    return np.array([thumb] + [finger] * 4)


def abduction_limits():
    """(5, 2) degrees: low/high abduction limits per finger."""
    return np.array([THUMB_CMC_ABDUCTION] + [MCP_ABDUCTION[f] for f in range(1, 5)])


def _rotation(axis, angle):
    """(3, 3) rotation by `angle` radians about unit `axis` (Rodrigues' formula)."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def _unit(v):
    return v / np.linalg.norm(v)


def _sample_curls(rng, counting):
    """(5,) curl of each finger in [0, 1] (0 straight, 1 fist), thumb first.

    A mixture of open hands, fists, counting/pointing gestures and independent curls, so the data
    covers both common gestures and the whole joint range.
    """
    mode = 2 if counting else rng.integers(4)
    if mode == 0:  # open hand
        return rng.uniform(0.0, 0.25, 5)
    if mode == 1:  # fist
        return rng.uniform(0.65, 1.0, 5)
    if mode == 2:  # counting / pointing: each finger either extended or curled
        extended = rng.random(5) < 0.5
        return np.where(extended, rng.uniform(0.0, 0.15, 5), rng.uniform(0.7, 1.0, 5))
    return rng.uniform(0.0, 1.0, 5)


def sample_hand_pose(rng, counting=False):
    """Samples bone lengths and joint angles within the anatomical limits.

    Args:
      rng: a numpy Generator.
      counting: draw counting gestures (each finger extended or curled) rather than the mixture.

    Returns:
      A HandPose.
    """
    scale = rng.uniform(*GLOBAL_SCALE_RANGE)
    bone_lengths = MEAN_BONE_LENGTHS * scale * rng.uniform(*BONE_FACTOR_RANGE, (5, 3))
    bases = MEAN_BASES * scale + rng.normal(0.0, 0.0015, (5, 3)) * np.array([1.0, 1.0, 0.3])
    curls = _sample_curls(rng, counting)
    flex_lo, flex_hi = np.moveaxis(flexion_limits(), -1, 0)
    abd_lo, abd_hi = abduction_limits().T
    # Joints of one finger flex together (DIP follows PIP, a tendon coupling), with noise.
    flexion = np.empty((5, 3))
    flexion[1:, 0] = -10.0 + curls[1:] * 95.0 + rng.normal(0.0, 12.0, 4)
    flexion[1:, 1] = curls[1:] * 105.0 + rng.normal(0.0, 10.0, 4)
    flexion[1:, 2] = flexion[1:, 1] * 0.67 + rng.normal(0.0, 10.0, 4)
    flexion[0, 0] = -5.0 + curls[0] * 50.0 + rng.normal(0.0, 8.0)
    flexion[0, 1] = curls[0] * 55.0 + rng.normal(0.0, 8.0)
    flexion[0, 2] = -5.0 + curls[0] * 75.0 + rng.normal(0.0, 10.0)
    flexion = np.clip(flexion, flex_lo, flex_hi)
    # Flexed fingers spread less.
    abduction = rng.uniform(abd_lo, abd_hi) * np.where(np.arange(5) == 0, 1.0, 1.0 - 0.7 * curls)
    abduction = np.clip(abduction, abd_lo, abd_hi)
    return HandPose(bone_lengths, bases, flexion, abduction, float(scale))


def _chain(base, direction, bend_axis, flexion_deg, lengths):
    """Positions of a planar hinge chain: (3, 3), the three joints after `base`, base to tip."""
    points = []
    position = base
    for angle, length in zip(np.deg2rad(flexion_deg), lengths):
        direction = _rotation(bend_axis, angle) @ direction
        position = position + length * direction
        points.append(position)
    return np.array(points)


def forward_kinematics(pose):
    """Keypoints of a right hand in its local frame.

    Args:
      pose: a HandPose.

    Returns:
      (21, 3) float64, metres, canonical order.
    """
    keypoints = np.zeros((NUM_KEYPOINTS, 3))
    palmar = np.array([0.0, 0.0, 1.0])
    for f in range(1, NUM_FINGERS):
        splay = REST_SPLAY[f] + np.deg2rad(pose.abduction[f])
        # Radial abduction turns the distal axis towards +x: a rotation about -z.
        direction = _rotation(-palmar, splay) @ np.array([0.0, 1.0, 0.0])
        bend_axis = np.cross(direction, palmar)  # rotating about it moves the finger palmar
        joints = _chain(pose.bases[f], direction, bend_axis, pose.flexion[f],
                        pose.bone_lengths[f])
        base_index = 4 + 4 * f
        keypoints[base_index] = pose.bases[f]
        keypoints[base_index - 3:base_index] = joints[::-1]
    # Thumb: CMC abduction swings the metacarpal about its flexion direction, then the chain of
    # CMC, MCP and IP flexion bends towards that direction.
    rest = _unit(_THUMB_REST_DIRECTION)
    towards = _unit(_THUMB_FLEXION_DIRECTION - _THUMB_FLEXION_DIRECTION @ rest * rest)
    bend_axis = np.cross(rest, towards)
    abduct = _rotation(towards, -np.deg2rad(pose.abduction[0]))
    joints = _chain(pose.bases[0], abduct @ rest, abduct @ bend_axis, pose.flexion[0],
                    pose.bone_lengths[0])
    keypoints[4] = pose.bases[0]
    keypoints[1:4] = joints[::-1]
    return keypoints


def mirror(points):
    """Mirror image (x -> -x) of (..., 3) points: a right hand becomes a left hand."""
    return np.asarray(points) * np.array([-1.0, 1.0, 1.0])
