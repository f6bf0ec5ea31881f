"""Pre-processing of raw samples with known geometry (SPEC 5), independent of the readers.

`make_sample` builds a RawSample analytically: a flat disc of "hand" (radius 8 cm) facing the
camera at the root's depth, keypoints scattered over it, bright dots drawn at the keypoints'
projections, and a depth map ray-cast onto the disc (RHD-like: one camera and a mask; STB-like:
a separate depth camera with its own intrinsics and extrinsics, no mask).
"""
import dataclasses

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


def test_test_examples_keep_what_training_skips():
    # SPEC 6 scores every test sample: no hand pixels, a root outside the image and no depth
    # near the root all still give an example, with whatever cloud there is.
    no_mask = make_sample(source="empty.png", mask_override=np.zeros((320, 320), bool))
    outside = make_sample(source="outside.png", root=(0.33, 0.0, 0.5))
    no_depth = make_sample(source="nodepth.png", depth_override=np.zeros((320, 320), np.float32))
    assert geometry.project(K_COLOR, outside.keypoints[12])[0] > 319
    assert outside.hand_mask.any()
    for sample in (no_mask, outside, no_depth):
        with pytest.raises(DataError):
            preprocess.preprocess(sample, 32)
        ex = preprocess.preprocess(sample, 32, keep_incomplete=True)
        assert ex.labelled and ex.image.shape == (32, 32, 3)
        np.testing.assert_allclose(ex.keypoints_2d[12], [15.5, 15.5], atol=1e-4)
        np.testing.assert_allclose(
            ex.pose, (sample.keypoints - sample.keypoints[12]) @ ex.R_view.T / ex.scale,
            atol=1e-6)
    # Without a mask the crop comes from the keypoints, which all land inside it.
    ex = preprocess.preprocess(no_mask, 32, keep_incomplete=True)
    assert np.all((ex.keypoints_2d >= 0) & (ex.keypoints_2d <= 31))
    assert ex.cloud.shape == (0, 3)
    assert preprocess.preprocess(no_depth, 32, keep_incomplete=True).cloud.shape == (0, 3)
    assert len(preprocess.preprocess(outside, 32, keep_incomplete=True).cloud) > 0


@pytest.mark.parametrize("stereo", [False, True])
def test_unlabelled_examples_do_not_depend_on_the_3d_label(stereo):
    sample = make_sample(seed=4, stereo=stereo)
    if stereo:
        # STB's detector stand-in sees the keypoints' 2D box: move every keypoint along its
        # camera ray, so the 3D label changes and the box does not.
        other = dataclasses.replace(sample, keypoints=sample.keypoints * 1.15)
    else:
        other = dataclasses.replace(
            sample, keypoints=make_sample(seed=5, root=(0.07, -0.01, 0.52)).keypoints)
    # A labelled example's cloud is centred on the root and scaled by the bone: it differs.
    clouds = [preprocess.preprocess(s, 32).cloud for s in (sample, other)]
    assert clouds[0].shape != clouds[1].shape or not np.array_equal(*clouds)
    a, b = (preprocess.preprocess(s, 32, unlabelled_scale=0.03) for s in (sample, other))
    for field in dataclasses.fields(preprocess.Example):
        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name),
                                      err_msg=field.name)
    assert not a.labelled and a.scale == 0.03
    for field in ("pose", "keypoints_2d", "visible", "pose_cam"):
        assert not np.any(getattr(a, field)), field


@pytest.mark.parametrize("stereo", [False, True])
def test_unlabelled_centre_comes_from_the_hand_box_and_its_depth(stereo):
    sample = make_sample(seed=6, stereo=stereo)
    root = sample.keypoints[12]
    ex = preprocess.preprocess(sample, 32, unlabelled_scale=0.03)
    # The disc is flat at the root's depth, so the median depth of the hand is the root's.
    assert ex.root[2] == pytest.approx(root[2], abs=1e-3)
    if stereo:  # the keypoint box's centre, near the root
        pixels = geometry.project(K_COLOR, sample.keypoints)
        centre = (pixels.min(axis=0) + pixels.max(axis=0)) / 2
        np.testing.assert_allclose(geometry.project(K_COLOR, ex.root), centre, atol=1e-6)
    else:  # the mask box of a disc centred on the root: the root itself, to a pixel
        assert np.linalg.norm(geometry.project(K_COLOR, ex.root)
                              - geometry.project(K_COLOR, root)) < 1.0
    np.testing.assert_allclose(ex.R_view @ ex.root, [0, 0, np.linalg.norm(ex.root)], atol=1e-12)
    # The crop is centred on that centre, and the cloud is normalised by the given scale.
    np.testing.assert_allclose(geometry.project(ex.K_crop, ex.R_view @ ex.root), [15.5, 15.5],
                               atol=1e-6)
    camera = ex.cloud.astype(np.float64) * 0.03 @ ex.R_view + ex.root
    assert len(camera) >= preprocess.MIN_CLOUD_POINTS
    np.testing.assert_allclose(camera[:, 2], root[2], atol=1e-5)
