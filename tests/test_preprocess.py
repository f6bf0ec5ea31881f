"""Pre-processing of raw samples with known geometry (SPEC 5), independent of the readers.

`make_sample` builds a RawSample analytically: a flat disc of "hand" (radius 8 cm) facing the
camera at the root's depth, keypoints scattered over it, bright dots drawn at the keypoints'
projections, and a depth map ray-cast onto the disc (RHD-like: one camera and a mask; STB-like:
a separate depth camera with its own intrinsics and extrinsics, no mask).
"""
import numpy as np
import pytest

from data_pipeline import geometry
from data_pipeline import preprocess
from data_pipeline.sample import DataError, RawSample

K_COLOR = np.array([[280.0, 0.0, 160.0], [0.0, 280.0, 160.0], [0.0, 0.0, 1.0]])
K_DEPTH = np.array([[240.0, 0.0, 150.0], [0.0, 238.0, 165.0], [0.0, 0.0, 1.0]])
DISC_RADIUS = 0.08
BACKGROUND_DEPTH = 1.5


def _depth_to_color():
    T = np.eye(4)
    T[:3, :3] = geometry.rot_x(0.02) @ geometry.rot_y(-0.03)
    T[:3, 3] = [-0.024, -0.0005, -0.0012]
    return T


def _disc_depth(K, T, root, shape):
    """Depth along K's optical axis of the disc z = root_z (colour frame), seen through the
    camera whose frame maps to the colour frame by T; the hand mask; background elsewhere."""
    rows, cols = np.indices(shape)
    rays = geometry.back_project(K, np.stack([cols, rows], -1).astype(float), np.ones(shape))
    normal = T[:3, :3].T @ np.array([0.0, 0.0, 1.0])  # disc normal in this camera's frame
    lam = (root[2] - T[2, 3]) / (rays @ normal)
    points = geometry.transform_points(T, rays * lam[..., None])
    hand = np.linalg.norm(points[..., :2] - root[:2], axis=-1) < DISC_RADIUS
    return np.where(hand, lam, BACKGROUND_DEPTH).astype(np.float32), hand


def make_sample(seed=0, root=(0.05, -0.03, 0.5), stereo=False, source="sample.png",
                mask_override=None, depth_override=None):
    """A RawSample with known geometry (see module doc)."""
    rng = np.random.default_rng(seed)
    root = np.asarray(root, float)
    keypoints = root + np.concatenate(
        [rng.uniform(-0.06, 0.06, (21, 2)), rng.uniform(-0.01, 0.01, (21, 1))], axis=1)
    keypoints[12] = root
    keypoints[11] = root + [0.0, -0.03, 0.0]
    color = np.full((320, 320, 3), 40, np.uint8)
    depth_c, mask = _disc_depth(K_COLOR, np.eye(4), root, (320, 320))
    color[mask] = (170, 120, 100)
    for u, v in np.round(geometry.project(K_COLOR, keypoints)).astype(int):
        color[v - 1:v + 2, u - 1:u + 2] = 255
    if stereo:
        T = _depth_to_color()
        depth, _ = _disc_depth(K_DEPTH, T, root, (240, 320))
        K_depth, hand_mask = K_DEPTH, None
    else:
        T, depth, K_depth, hand_mask = np.eye(4), np.where(mask, depth_c, 0.0), K_COLOR, mask
    if mask_override is not None:
        hand_mask = mask_override
    if depth_override is not None:
        depth = depth_override
    return RawSample(color=color, depth=depth.astype(np.float32), hand_mask=hand_mask,
                     K_color=K_COLOR, K_depth=K_depth, depth_to_color=T, keypoints=keypoints,
                     visible=np.ones(21, bool), hand="right", source=source)


@pytest.mark.parametrize("stereo", [False, True])
@pytest.mark.parametrize("view_correction", [False, True])
def test_example_is_consistent_with_the_crop_camera(stereo, view_correction):
    sample = make_sample(stereo=stereo)
    ex = preprocess.preprocess(sample, 64, view_correction=view_correction)
    assert ex.image.shape == (64, 64, 3) and ex.image.dtype == np.uint8
    root = sample.keypoints[12]
    if view_correction:
        np.testing.assert_allclose(ex.R_view @ root, [0, 0, np.linalg.norm(root)], atol=1e-12)
    else:
        np.testing.assert_allclose(ex.R_view, np.eye(3))
    # The root lands on the crop centre, every keypoint inside the crop.
    np.testing.assert_allclose(ex.keypoints_2d[12], [31.5, 31.5], atol=1e-4)
    assert np.all((ex.keypoints_2d >= 0) & (ex.keypoints_2d <= 63))
    np.testing.assert_allclose(
        ex.keypoints_2d, geometry.project(ex.K_crop, sample.keypoints @ ex.R_view.T), atol=1e-4)
    # pose = R_view (X - root) / s, unit 11-12 bone.
    np.testing.assert_allclose(
        ex.pose, (sample.keypoints - root) @ ex.R_view.T / ex.scale, atol=1e-6)
    assert np.linalg.norm(ex.pose[12] - ex.pose[11]) == pytest.approx(1.0, abs=1e-6)
    # The warped image shows the bright keypoint dots at keypoints_2d.
    for u, v in np.round(ex.keypoints_2d).astype(int):
        assert ex.image[v, u].min() > 200


@pytest.mark.parametrize("stereo", [False, True])
def test_cloud_points_map_back_onto_their_depth_pixels(stereo):
    sample = make_sample(seed=1, stereo=stereo)
    ex = preprocess.preprocess(sample, 32, view_correction=True, max_points=300)
    assert preprocess.MIN_CLOUD_POINTS <= len(ex.cloud) <= 300
    camera = ex.cloud.astype(np.float64) * ex.scale @ ex.R_view + ex.root  # colour frame
    assert np.all(np.linalg.norm(camera - ex.root, axis=-1) < preprocess.CLOUD_RADIUS + 1e-6)
    depth_frame = geometry.transform_points(np.linalg.inv(sample.depth_to_color), camera)
    uv = geometry.project(sample.K_depth, depth_frame)
    pixels = np.round(uv).astype(int)
    np.testing.assert_allclose(uv, pixels, atol=1e-3)
    np.testing.assert_allclose(sample.depth[pixels[:, 1], pixels[:, 0]], depth_frame[:, 2],
                               atol=1e-5)
    if not stereo:  # RHD-like: hand-mask pixels only
        assert sample.hand_mask[pixels[:, 1], pixels[:, 0]].all()


def test_cloud_subset_is_reproducible_for_a_seed():
    sample = make_sample(seed=2)
    a = preprocess.preprocess(sample, 32, max_points=100, seed=5).cloud
    b = preprocess.preprocess(sample, 32, max_points=100, seed=5).cloud
    np.testing.assert_array_equal(a, b)


def test_view_correction_on_and_off_agree_up_to_the_rotation():
    sample = make_sample(seed=3, root=(0.12, 0.08, 0.45))
    on = preprocess.preprocess(sample, 32, view_correction=True, max_points=200, seed=0)
    off = preprocess.preprocess(sample, 32, view_correction=False, max_points=200, seed=0)
    R = on.R_view
    np.testing.assert_allclose(on.pose, off.pose @ R.T, atol=1e-5)
    np.testing.assert_allclose(on.cloud, off.cloud @ R.T, atol=1e-5)


def test_bad_samples_raise_data_error_naming_the_source():
    with pytest.raises(DataError, match="empty.png.*mask is empty"):
        preprocess.preprocess(
            make_sample(source="empty.png", mask_override=np.zeros((320, 320), bool)), 32)
    with pytest.raises(DataError, match="outside.png.*outside the image"):
        preprocess.preprocess(make_sample(source="outside.png", root=(0.6, 0.0, 0.5)), 32)
    with pytest.raises(DataError, match="nodepth.png.*depth points"):
        preprocess.preprocess(make_sample(source="nodepth.png",
                                          depth_override=np.zeros((320, 320), np.float32)), 32)
