"""Augmentation consistency across image, keypoints, heatmaps, pose and cloud (SPEC 5)."""
import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import augment
from data_pipeline import geometry

S = 64


def _params(scale=1.1, translation=(3.0, -2.0), angle=0.7, hue=0.0):
    return {"scale": tf.constant(scale, tf.float32),
            "translation": tf.constant(translation, tf.float32),
            "angle": tf.constant(angle, tf.float32), "hue": tf.constant(hue, tf.float32)}


def _keypoints(rng, n=21):
    return rng.uniform(S * 0.3, S * 0.7, (n, 2)).astype(np.float32)


def test_sample_params_ranges_and_reproducibility():
    draws = [augment.sample_params(tf.constant([7, i], tf.int64), 256) for i in range(200)]
    scales = np.array([d["scale"] for d in draws])
    shifts = np.array([d["translation"] for d in draws])
    angles = np.array([d["angle"] for d in draws])
    hues = np.array([d["hue"] for d in draws])
    assert scales.min() >= 1.0 and scales.max() <= 1.2
    assert np.abs(shifts).max() <= 20.0 and np.abs(shifts).max() > 15.0
    assert np.abs(angles).max() <= np.pi and np.abs(angles).max() > 2.8
    assert np.abs(hues).max() <= 0.1
    again = augment.sample_params(tf.constant([7, 3], tf.int64), 256)
    np.testing.assert_array_equal(again["angle"], draws[3]["angle"])
    small = augment.sample_params(tf.constant([7, 3], tf.int64), 64)
    np.testing.assert_allclose(small["translation"], draws[3]["translation"] / 4, rtol=1e-5)


def test_image_content_moves_with_the_keypoints():
    rng = np.random.default_rng(0)
    for angle in (-2.5, 0.4, 3.0):
        point = _keypoints(rng, 1)
        u, v = np.round(point[0]).astype(int)
        image = np.zeros((S, S, 3), np.float32)
        image[v, u] = 1.0
        kp = np.tile([[u, v]], (21, 1))
        params = _params(angle=angle)
        out, kp_out, _, _ = augment.augment(tf.constant(image), tf.constant(kp, tf.float32),
                                            tf.zeros([21, 3]), tf.zeros([5, 3]), params)
        out = out.numpy()[..., 0]
        rows, cols = np.indices(out.shape)
        centroid = np.array([(out * cols).sum(), (out * rows).sum()]) / out.sum()
        np.testing.assert_allclose(centroid, kp_out.numpy()[0], atol=0.5)


def test_heatmap_peaks_sit_at_the_transformed_keypoints():
    rng = np.random.default_rng(1)
    for i in range(5):
        kp = _keypoints(rng)
        params = augment.sample_params(tf.constant([0, i], tf.int64), S)
        _, kp_out, _, _ = augment.augment(tf.zeros([S, S, 3]), tf.constant(kp), tf.zeros([21, 3]),
                                          tf.zeros([4, 3]), params)
        maps = augment.heatmaps(kp_out, S).numpy()
        assert maps.shape == (S // 4, S // 4, 21)
        for j in range(21):
            row, col = np.unravel_index(np.argmax(maps[..., j]), maps.shape[:2])
            cell_centre = np.array([4 * col + 1.5, 4 * row + 1.5])
            if np.all((kp_out[j] >= 0) & (kp_out[j] < S)):
                assert np.abs(cell_centre - kp_out[j].numpy()).max() <= 2.0 + 1e-4
                assert maps[row, col, j] > 0.8


def test_heatmap_is_an_exact_gaussian():
    kp = np.full((21, 2), 21.5, np.float32)  # centre of cell (5, 5)
    maps = augment.heatmaps(tf.constant(kp), S, sigma=1.5).numpy()
    assert maps[5, 5, 0] == pytest.approx(1.0)
    assert maps[5, 7, 0] == pytest.approx(np.exp(-4 / (2 * 1.5 ** 2)), rel=1e-5)


def test_pose_and_cloud_rotate_with_the_image():
    """The augmented intrinsics must stay a pinhole matrix (equal focal lengths, no skew): true
    only when the image and the 3D points rotate the same way."""
    rng = np.random.default_rng(2)
    root = np.array([0.03, -0.02, 0.5])
    R_view = geometry.view_rotation(root)
    K_crop = geometry.crop_intrinsics(600.0, (0.0, 0.0), S)
    keypoints = root + rng.uniform(-0.05, 0.05, (21, 3))
    keypoints[12] = root
    pose, _, scale = geometry.normalise_pose(keypoints, R_view)
    cloud = pose[:5] + rng.normal(0, 0.05, (5, 3))
    kp2d = geometry.project(K_crop, keypoints @ R_view.T)
    for angle in (-3.0, -1.0, 0.5, 2.0):
        params = _params(angle=angle, scale=1.15, translation=(-4.0, 5.0))
        _, kp_out, pose_out, cloud_out = augment.augment(
            tf.zeros([S, S, 3]), tf.constant(kp2d, tf.float32), tf.constant(pose, tf.float32),
            tf.constant(cloud, tf.float32), params)
        K_aug = augment.augmented_intrinsics(K_crop, params, S)
        assert K_aug[0, 1] == pytest.approx(0.0, abs=1e-3)
        assert K_aug[1, 0] == pytest.approx(0.0, abs=1e-3)
        assert K_aug[0, 0] == pytest.approx(K_aug[1, 1], rel=1e-5)
        assert K_aug[0, 0] == pytest.approx(600.0 * 1.15, rel=1e-5)
        np.testing.assert_allclose(K_aug[2], [0, 0, 1], atol=1e-6)
        # The rotated pose, back in metres, projects onto the augmented keypoints.
        R_aug = geometry.rot_z(angle) @ R_view
        np.testing.assert_allclose(pose_out.numpy(), (keypoints - root) @ R_aug.T / scale,
                                   atol=1e-5)
        np.testing.assert_allclose(geometry.project(K_aug, keypoints @ R_aug.T), kp_out.numpy(),
                                   atol=1e-3)
        # Rigid: cloud points near keypoints stay near the same keypoints.
        before = np.linalg.norm(cloud[:, None] - pose[None], axis=-1)
        after = np.linalg.norm(cloud_out.numpy()[:, None] - pose_out.numpy()[None], axis=-1)
        np.testing.assert_allclose(after, before, atol=1e-5)


def test_rotations_from_tensorflow_graphics_equal_the_closed_forms():
    """Rz(theta) = [[c, -s, 0], [s, c, 0], [0, 0, 1]] and A = [[s R2, t + c - s R2 c], [0, 0, 1]],
    the formulas the augmentation was written with, over the whole circle."""
    centre = (S - 1) / 2.0
    for angle in np.linspace(-np.pi, np.pi, 13):
        c, s = np.cos(angle), np.sin(angle)
        expected_rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        rz = augment.rotation_z(tf.constant(angle, tf.float32))
        assert rz.dtype == tf.float32 and rz.shape == (3, 3)
        np.testing.assert_allclose(rz.numpy(), expected_rz, atol=1e-7)
        params = _params(scale=1.15, translation=(-4.0, 5.0), angle=angle)
        rot = 1.15 * expected_rz[:2, :2]
        offset = np.array([-4.0, 5.0]) + centre - rot @ [centre, centre]
        expected_a = np.vstack([np.hstack([rot, offset[:, None]]), [0.0, 0.0, 1.0]])
        np.testing.assert_allclose(augment.pixel_transform(params, S).numpy(), expected_a,
                                   atol=1e-5)


def test_augment_rotates_a_cloud_of_unknown_size_in_the_data_pipeline():
    """Inside tf.data the cloud's point count may be unknown; the rotation must not depend on it
    (tensorflow_graphics' `rotate` broadcasts such a count to 1 and fails)."""
    rng = np.random.default_rng(4)
    cloud = rng.normal(size=(7, 3)).astype(np.float32)
    pose = rng.normal(size=(21, 3)).astype(np.float32)
    params = _params(angle=2.0)
    ds = tf.data.Dataset.from_generator(
        lambda: iter([cloud]), output_signature=tf.TensorSpec([None, 3], tf.float32))
    out = ds.map(lambda c: augment.augment(tf.zeros([S, S, 3]), tf.zeros([21, 2]),
                                           tf.constant(pose), c, params)[3])
    rz = geometry.rot_z(2.0)
    np.testing.assert_allclose(next(iter(out)).numpy(), cloud @ rz.T, atol=1e-5)


def test_hue_changes_colour_but_keeps_range():
    image = tf.constant(np.random.default_rng(3).uniform(0, 1, (S, S, 3)), tf.float32)
    out, _, _, _ = augment.augment(image, tf.zeros([21, 2]), tf.zeros([21, 3]), tf.zeros([2, 3]),
                                   _params(scale=1.0, translation=(0.0, 0.0), angle=0.0, hue=0.1))
    out = out.numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - image.numpy()).mean() > 0.01
    # Hue keeps the value channel (max of RGB).
    np.testing.assert_allclose(out.max(-1), image.numpy().max(-1), atol=1e-4)
