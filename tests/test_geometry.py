"""Camera geometry: projection, R_view, normalisation and the crop homography (SPEC 5)."""
import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_pipeline import geometry

K = np.array([[280.0, 0.0, 160.0], [0.0, 285.0, 150.0], [0.0, 0.0, 1.0]])


def random_points(rng, n):
    return np.stack([rng.uniform(-0.3, 0.3, n), rng.uniform(-0.3, 0.3, n),
                     rng.uniform(0.3, 0.9, n)], axis=-1)


def test_project_matches_opencv_and_back_project_inverts_it():
    rng = np.random.default_rng(0)
    X = random_points(rng, 50)
    uv = geometry.project(K, X)
    reference, _ = cv2.projectPoints(X, np.zeros(3), np.zeros(3), K, None)
    np.testing.assert_allclose(uv, reference[:, 0], atol=1e-9)
    np.testing.assert_allclose(geometry.back_project(K, uv, X[:, 2]), X, atol=1e-12)


@pytest.mark.parametrize("axis,fn", [("x", geometry.rot_x), ("y", geometry.rot_y),
                                     ("z", geometry.rot_z)])
def test_elementary_rotations_match_scipy(axis, fn):
    for angle in (-2.0, 0.3, 1.2):
        np.testing.assert_allclose(fn(angle), Rotation.from_euler(axis, angle).as_matrix(),
                                   atol=1e-12)


def test_view_rotation_maps_root_onto_positive_z():
    rng = np.random.default_rng(1)
    for root in random_points(rng, 100):
        R = geometry.view_rotation(root)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(R @ root, [0.0, 0.0, np.linalg.norm(root)], atol=1e-12)


def test_view_rotation_is_the_spec_formula():
    x, y, z = 0.1, -0.2, 0.5
    expected = (Rotation.from_euler("x", np.arctan2(y, np.hypot(x, z))).as_matrix()
                @ Rotation.from_euler("y", -np.arctan2(x, z)).as_matrix())
    np.testing.assert_allclose(geometry.view_rotation([x, y, z]), expected, atol=1e-12)
    np.testing.assert_allclose(geometry.view_rotation([0.0, 0.0, 0.7]), np.eye(3), atol=1e-12)


def test_normalise_pose_root_at_origin_and_unit_bone():
    rng = np.random.default_rng(2)
    keypoints = random_points(rng, 21)
    R = geometry.view_rotation(keypoints[12])
    pose, root, scale = geometry.normalise_pose(keypoints, R)
    np.testing.assert_allclose(root, keypoints[12])
    assert scale == pytest.approx(np.linalg.norm(keypoints[12] - keypoints[11]))
    np.testing.assert_allclose(pose[12], 0.0, atol=1e-12)
    assert np.linalg.norm(pose[12] - pose[11]) == pytest.approx(1.0)
    # Distances scale by 1/s, rotation preserves them.
    np.testing.assert_allclose(np.linalg.norm(pose[3] - pose[7]),
                               np.linalg.norm(keypoints[3] - keypoints[7]) / scale)


def test_crop_homography_is_the_rotated_camera_projection():
    rng = np.random.default_rng(3)
    X = random_points(rng, 30)
    R = geometry.view_rotation(X[0])
    K_crop = geometry.crop_intrinsics(900.0, (0.02, -0.01), 64)
    H = geometry.crop_homography(K, R, K_crop)
    uv = geometry.project(K, X)
    mapped = np.concatenate([uv, np.ones((30, 1))], axis=1) @ H.T
    np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], geometry.project(K_crop, X @ R.T),
                               atol=1e-8)
    # The point whose normalised coordinates are the centre lands on the centre pixel.
    np.testing.assert_allclose(geometry.project(K_crop, [0.02, -0.01, 1.0]), [31.5, 31.5])


def test_transform_points_applies_rotation_then_translation():
    T = np.eye(4)
    T[:3, :3] = geometry.rot_z(0.5)
    T[:3, 3] = [0.1, 0.2, 0.3]
    X = np.array([[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(geometry.transform_points(T, X),
                               [[np.cos(0.5) + 0.1, np.sin(0.5) + 0.2, 0.3]], atol=1e-12)
