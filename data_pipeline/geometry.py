"""Camera geometry of the pre-processing (SPEC 5): projection, R_view, normalisation, crop warp.

Pure NumPy functions. Conventions: points are (..., 3) in metres in a right-handed camera frame
(x right, y down, z forward); pixels are (..., 2) as (u, v) = (column, row), pixel centres at
integer coordinates (OpenCV's convention); intrinsics K are (3, 3) pinhole matrices.
"""
import numpy as np

from data_pipeline.sample import ROOT_KEYPOINT, SCALE_BONE


def project(K, X):
    """Pinhole projection.

    Args:
      K: (3, 3) intrinsics, pixels.
      X: (..., 3) points in that camera's frame, metres, z > 0.

    Returns:
      (..., 2) pixel coordinates (u, v).
    """
    X = np.asarray(X, np.float64)
    p = X @ np.asarray(K, np.float64).T
    return p[..., :2] / p[..., 2:3]


def back_project(K, uv, depth):
    """Inverse of `project` for a known depth along the optical axis.

    Args:
      K: (3, 3) intrinsics, pixels.
      uv: (..., 2) pixel coordinates.
      depth: (...) z of each point, metres.

    Returns:
      (..., 3) points in the camera frame, metres.
    """
    uv = np.asarray(uv, np.float64)
    ones = np.ones(uv.shape[:-1] + (1,))
    rays = np.concatenate([uv, ones], axis=-1) @ np.linalg.inv(K).T  # z = 1 rays
    return rays * np.asarray(depth, np.float64)[..., None]


def transform_points(T, X):
    """Applies a (4, 4) rigid transform to (..., 3) points."""
    T = np.asarray(T, np.float64)
    return np.asarray(X, np.float64) @ T[:3, :3].T + T[:3, 3]


def rot_x(angle):
    """(3, 3) right-handed rotation by `angle` radians about the x axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle):
    """(3, 3) right-handed rotation by `angle` radians about the y axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle):
    """(3, 3) right-handed rotation by `angle` radians about the z (viewing) axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def view_rotation(root):
    """Viewpoint correction R_view (SPEC 5): turns the camera to look straight at the root.

    R_view = rot_x(atan2(y, z')) rot_y(-atan2(x, z)), z' = sqrt(x^2 + z^2), so that
    R_view @ root = (0, 0, |root|).

    Args:
      root: (3,) root keypoint in the camera frame, metres.

    Returns:
      (3, 3) rotation matrix.
    """
    x, y, z = np.asarray(root, np.float64)
    return rot_x(np.arctan2(y, np.hypot(x, z))) @ rot_y(-np.arctan2(x, z))


def bone_scale(keypoints):
    """Normalisation scale s = ||X_12 - X_11|| (middle MCP-PIP bone), metres; keypoints (21, 3)."""
    keypoints = np.asarray(keypoints, np.float64)
    return float(np.linalg.norm(keypoints[SCALE_BONE[1]] - keypoints[SCALE_BONE[0]]))


def normalise(points, root, scale, R_view):
    """The normalising transform of SPEC 5: R_view (X - root) / scale.

    Args:
      points: (..., 3) camera-frame points, metres.
      root: (3,) root keypoint, metres.
      scale: bone length s, metres.
      R_view: (3, 3) view rotation (the identity without viewpoint correction).

    Returns:
      (..., 3) normalised points (units of s, root at the origin).
    """
    return (np.asarray(points, np.float64) - root) @ np.asarray(R_view).T / scale


def normalise_pose(keypoints, R_view=None):
    """Root-relative, scale-normalised pose.

    Args:
      keypoints: (21, 3) camera-frame keypoints, metres, canonical order.
      R_view: optional (3, 3) view rotation; the identity when None.

    Returns:
      (pose, root, scale): pose (21, 3) = R_view (X - X_12) / s, root (3,) metres, scale s metres.
    """
    keypoints = np.asarray(keypoints, np.float64)
    root = keypoints[ROOT_KEYPOINT]
    scale = bone_scale(keypoints)
    R = np.eye(3) if R_view is None else R_view
    return normalise(keypoints, root, scale, R), root, scale


def crop_intrinsics(focal, center, image_size):
    """Intrinsics of a square crop of side `image_size` px.

    Args:
      focal: focal length of the crop, pixels (same on both axes).
      center: (2,) normalised image coordinates (x/z, y/z) that land on the crop centre.
      image_size: crop side S, pixels; the centre pixel is ((S - 1) / 2, (S - 1) / 2).

    Returns:
      (3, 3) intrinsics K_crop.
    """
    c = (image_size - 1) / 2.0
    return np.array([[focal, 0.0, c - focal * center[0]],
                     [0.0, focal, c - focal * center[1]],
                     [0.0, 0.0, 1.0]])


def crop_homography(K, R_view, K_crop):
    """Homography K_crop R_view K^-1 from source pixels to crop pixels (SPEC 5).

    A camera rotation about its centre moves pixels by this homography, so warping the image with
    it shows the scene as the rotated camera with intrinsics K_crop would see it.

    Args:
      K: (3, 3) source intrinsics.
      R_view: (3, 3) view rotation.
      K_crop: (3, 3) crop intrinsics.

    Returns:
      (3, 3) homography acting on homogeneous (u, v, 1).
    """
    return K_crop @ R_view @ np.linalg.inv(K)
