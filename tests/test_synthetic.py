"""Tests of the synthetic data generator (data_pipeline.synthetic).

Small sets are generated once per module; checks decode the files with SPEC 5's formulas, march
rays through the solids with their distance functions (independently of the analytic ray caster),
and recompute joint angles from the keypoints' geometry.
"""
import json
import os
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.io
from scipy.spatial.transform import Rotation

from data_pipeline.synthetic import builder
from data_pipeline.synthetic import generate
from data_pipeline.synthetic import hand_model
from data_pipeline.synthetic import renderer
from data_pipeline.synthetic import rhd_writer
from data_pipeline.synthetic import scene
from data_pipeline.synthetic import stb_writer

SEED = 7
RHD_COUNTS = {"train": 6, "test": 3}
STB_COUNTS = {"train": 10, "test": 2}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The largest solid around any keypoint (the forearm at the wrist, for the largest hands) plus the
# depth test's slack: a visible keypoint's surface lies at most this far in front of it.
MAX_TOLERANCE = scene.FOREARM_RADIUS * hand_model.GLOBAL_SCALE_RANGE[1] + scene.VISIBILITY_SLACK
DEPTH_STEP = 5.0 / 65535  # RHD's depth quantum, metres


@pytest.fixture(scope="module")
def rhd_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("rhd") / "set")
    generate("rhd", root, RHD_COUNTS["train"], RHD_COUNTS["test"], SEED, workers=1)
    return root


@pytest.fixture(scope="module")
def stb_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("stb") / "set")
    generate("stb", root, STB_COUNTS["train"], STB_COUNTS["test"], SEED, workers=1)
    return root


def _rhd_split(root, split):
    name = rhd_writer.SPLITS[split]
    with open(os.path.join(root, name, f"anno_{name}.pickle"), "rb") as f:
        return os.path.join(root, name), pickle.load(f)


def _decode_rhd_depth(path):
    bgr = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    return (bgr[..., 2].astype(np.float64) * 256 + bgr[..., 1]) / 65535 * 5


def _rendered_hand(anno):
    """'left' or 'right', and the 21-row slice of the rendered (visible) hand."""
    left_visible = anno["uv_vis"][:21, 2].sum()
    right_visible = anno["uv_vis"][21:, 2].sum()
    return ("left", slice(0, 21)) if left_visible > right_visible else ("right", slice(21, 42))


def _inside(solids, points):
    """(n,) whether points (n, 3) are inside any solid, by distance functions: a capsule holds
    the points within its radius of its segment; the slab the points inside all its planes."""
    inside = np.all(points @ solids.slab_normals.T <= solids.slab_offsets, axis=1)
    for a, b, r in zip(solids.capsule_start, solids.capsule_end, solids.capsule_radius):
        s = np.clip((points - a) @ (b - a) / ((b - a) @ (b - a)), 0.0, 1.0)
        inside |= np.linalg.norm(points - (a + s[:, None] * (b - a)), axis=1) <= r
    return inside


def _march_depth(solids, ray, z_near, z_far, step=4e-4, fine=1e-5):
    """Depth of the first point along ray (x, y, 1) inside any solid, by sampling with `step`
    and refining with `fine` (inf if none). The smallest solid (about 11 mm across) cannot hide
    between samples except at grazing incidence."""
    t = np.arange(z_near, z_far, step)
    hits = np.nonzero(_inside(solids, t[:, None] * ray))[0]
    if not len(hits):
        return np.inf
    t = np.arange(t[hits[0]] - step, t[hits[0]] + fine, fine)
    return t[np.nonzero(_inside(solids, t[:, None] * ray))[0][0]]


def _pixel_ray(K, u, v):
    return np.array([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0])


# ------------------------------------------------------------------------------------ files


def test_rhd_files_and_shapes(rhd_root):
    with open(os.path.join(rhd_root, builder.MARKER)) as f:
        assert json.load(f)["num_train"] == RHD_COUNTS["train"]
    for split, count in RHD_COUNTS.items():
        split_dir, annotations = _rhd_split(rhd_root, split)
        assert sorted(annotations) == list(range(count))
        for index, anno in annotations.items():
            name = "%05d.png" % index
            color = cv2.imread(os.path.join(split_dir, "color", name), cv2.IMREAD_UNCHANGED)
            depth = cv2.imread(os.path.join(split_dir, "depth", name), cv2.IMREAD_UNCHANGED)
            mask = cv2.imread(os.path.join(split_dir, "mask", name), cv2.IMREAD_UNCHANGED)
            assert color.shape == (320, 320, 3) and color.dtype == np.uint8
            assert depth.shape == (320, 320, 3) and depth.dtype == np.uint8
            assert mask.shape == (320, 320) and mask.dtype == np.uint8
            assert anno["xyz"].shape == (42, 3) and anno["uv_vis"].shape == (42, 3)
            K = anno["K"]
            assert K.shape == (3, 3)
            assert K[0, 2] == 160 and K[1, 2] == 160 and K[0, 0] == K[1, 1]
            assert 250 <= K[0, 0] <= 350
            # uv is the projection of xyz with K; visibility is 0 or 1.
            uv = anno["xyz"] @ K.T
            np.testing.assert_allclose(uv[:, :2] / uv[:, 2:], anno["uv_vis"][:, :2], atol=1e-2)
            assert set(np.unique(anno["uv_vis"][:, 2])) <= {0.0, 1.0}
            # The root (middle MCP) of the rendered hand lies 0.3-0.8 m away.
            _, rows = _rendered_hand(anno)
            assert 0.3 <= anno["xyz"][rows][12, 2] <= 0.8 + 1e-6


def test_rhd_masks_and_the_other_hand(rhd_root):
    for split in RHD_COUNTS:
        split_dir, annotations = _rhd_split(rhd_root, split)
        for index, anno in annotations.items():
            mask = cv2.imread(os.path.join(split_dir, "mask", "%05d.png" % index),
                              cv2.IMREAD_UNCHANGED)
            assert mask.max() <= 33
            left = ((mask >= 2) & (mask <= 17)).sum()
            right = (mask >= 18).sum()
            hand, rows = _rendered_hand(anno)
            # Only the rendered hand has mask pixels, and it has many (so it is the dominant one).
            assert (left, right)[hand == "left"] == 0
            assert max(left, right) > 200
            other = slice(21, 42) if hand == "left" else slice(0, 21)
            assert not anno["uv_vis"][other, 2].any()
            u, v = anno["uv_vis"][other, :2].T
            assert np.all((u < 0) | (u >= 320) | (v < 0) | (v >= 320))
            # The hand is mostly inside the image.
            u, v = anno["uv_vis"][rows, :2].T
            assert np.mean((u >= 0) & (u < 320) & (v >= 0) & (v < 320)) >= 0.9


def test_rhd_depth_at_visible_keypoints_is_the_surface_near_them(rhd_root):
    checked = 0
    for split in RHD_COUNTS:
        split_dir, annotations = _rhd_split(rhd_root, split)
        for index, anno in annotations.items():
            depth = _decode_rhd_depth(os.path.join(split_dir, "depth", "%05d.png" % index))
            _, rows = _rendered_hand(anno)
            xyz, uv_vis = anno["xyz"][rows], anno["uv_vis"][rows]
            for (u, v, visible), z in zip(uv_vis, xyz[:, 2]):
                if visible:
                    surface = depth[int(round(v)), int(round(u))]
                    # The keypoint is inside the solid whose surface the pixel sees.
                    assert -DEPTH_STEP <= z - surface <= MAX_TOLERANCE + DEPTH_STEP
                    checked += 1
            # The background is a far plane behind the hand.
            mask = cv2.imread(os.path.join(split_dir, "mask", "%05d.png" % index),
                              cv2.IMREAD_UNCHANGED)
            assert depth[mask == 0].min() > xyz[:, 2].max()
    assert checked > 50


def test_rhd_visibility_is_the_depth_test_on_marched_rays(rhd_root):
    """Re-renders the set's samples from their seeds, checks the files hold them, and checks the
    annotated visibility against first hits found by marching each keypoint's pixel ray."""
    occluded = 0
    for split in RHD_COUNTS:
        _, annotations = _rhd_split(rhd_root, split)
        for index, anno in annotations.items():
            sample = rhd_writer.render_sample(builder.sample_rng(SEED, "rhd", split, index))
            for key in ("xyz", "uv_vis", "K"):
                np.testing.assert_array_equal(sample.annotation[key], anno[key])
            posed = sample.posed
            _, rows = _rendered_hand(anno)
            K = anno["K"].astype(np.float64)
            uv_vis = anno["uv_vis"][rows]
            for k, ((u, v, visible), point) in enumerate(zip(uv_vis, posed.keypoints)):
                col, row = int(round(u)), int(round(v))
                if not (0 <= col < 320 and 0 <= row < 320):
                    assert not visible
                    continue
                first = _march_depth(posed.solids, _pixel_ray(K, col, row), 0.1, point[2] + 0.01)
                # The analytic caster agrees with marching (to the fine step).
                assert abs(sample.depth[row, col] - first) <= 2e-5
                assert bool(visible) == bool(point[2] - first <= posed.tolerance[k])
                occluded += not visible
    assert occluded > 0  # the set does contain self-occlusion


def test_renderer_depth_matches_marching_inside_the_mask():
    rng = np.random.default_rng(3)
    K = np.array([[300.0, 0, 160], [0, 300.0, 160], [0, 0, 1]])
    posed = scene.place_hand(rng, hand_model.sample_hand_pose(rng), "right",
                             [(K, np.eye(3), np.zeros(3))], 320, 320)
    depth, part, normal = renderer.cast(posed.solids, K, 320, 320)
    rows, cols = np.nonzero(part >= 0)
    pick = rng.choice(len(rows), 40, replace=False)
    for row, col in zip(rows[pick], cols[pick]):
        first = _march_depth(posed.solids, _pixel_ray(K, col, row), 0.1, depth[row, col] + 0.01)
        assert abs(depth[row, col] - first) <= 2e-5
    np.testing.assert_allclose(np.linalg.norm(normal[part >= 0], axis=-1), 1.0, atol=1e-9)
    # Pixels outside the mask miss every solid.
    rows, cols = np.nonzero(part < 0)
    for row, col in zip(rows[:20], cols[:20]):
        assert _march_depth(posed.solids, _pixel_ray(K, col, row), 0.1, 2.0) == np.inf


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, rhd_root):
    other = str(tmp_path / "again")
    generate("rhd", other, RHD_COUNTS["train"], RHD_COUNTS["test"], SEED, workers=2)
    for dirpath, _, files in os.walk(rhd_root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as a, open(os.path.join(other, os.path.relpath(path, rhd_root)),
                                             "rb") as b:
                assert a.read() == b.read(), path
    different = str(tmp_path / "different")
    generate("rhd", different, 1, 1, SEED + 1, workers=1)
    with open(os.path.join(rhd_root, "training", "color", "00000.png"), "rb") as a, open(
            os.path.join(different, "training", "color", "00000.png"), "rb") as b:
        assert a.read() != b.read()


# -------------------------------------------------------------------------------- hand model


def _angle(a, b):
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cos = np.einsum("...k,...k->...", a, b) / norms
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _check_anatomy(keypoints, hand):
    """Bone lengths and joint angles recomputed from (21, 3) keypoints in any rigid frame."""
    kp = hand_model.mirror(keypoints) if hand == "left" else keypoints  # a right hand now
    scale_lo = hand_model.GLOBAL_SCALE_RANGE[0] * hand_model.BONE_FACTOR_RANGE[0]
    scale_hi = hand_model.GLOBAL_SCALE_RANGE[1] * hand_model.BONE_FACTOR_RANGE[1]
    tol = 0.5  # degrees
    wrist = kp[0]
    # index MCP x little MCP points palmar for a right hand
    palmar = np.cross(kp[8] - wrist, kp[20] - wrist)
    palmar /= np.linalg.norm(palmar)
    distal = kp[12] - wrist
    distal -= distal @ palmar * palmar
    distal /= np.linalg.norm(distal)
    radial = np.cross(distal, palmar)
    assert radial @ (kp[4] - kp[20]) > 0  # the thumb is on the radial side: a right hand
    for f in range(5):
        chain = kp[[4 + 4 * f, 3 + 4 * f, 2 + 4 * f, 1 + 4 * f]]  # base .. tip
        bones = np.diff(chain, axis=0)
        lengths = np.linalg.norm(bones, axis=1)
        mean = hand_model.MEAN_BONE_LENGTHS[f]
        assert np.all(lengths >= mean * scale_lo - 1e-6)
        assert np.all(lengths <= mean * scale_hi + 1e-6)
        flex_lo, flex_hi = hand_model.flexion_limits()[f].T
        bends = _angle(bones[:-1], bones[1:])
        if f == 0:  # thumb: MCP and IP bend within their range (either way: hyperextension)
            assert np.all(bends <= np.maximum(flex_hi[1:], -flex_lo[1:]) + tol)
            continue
        # PIP and DIP: hinge flexion towards the palm, within range.
        axes = np.cross(bones[:-1], bones[1:])
        assert np.all((axes @ radial >= -1e-9) | (bends < tol))
        assert np.all(bends <= flex_hi[1:] + tol)
        assert abs(np.linalg.det(bones)) <= 1e-9  # the finger bends in one plane
        # MCP: flexion = elevation of the proximal bone out of the palm plane.
        elevation = np.degrees(np.arcsin(bones[0] @ palmar / lengths[0]))
        assert flex_lo[0] - 2.0 <= elevation <= flex_hi[0] + 2.0  # 2 deg: palm plane estimate
        in_plane = bones[0] - bones[0] @ palmar * palmar
        if np.linalg.norm(in_plane) > 0.3 * lengths[0]:
            splay = np.degrees(np.arctan2(in_plane @ radial, in_plane @ distal))
            lo, hi = hand_model.abduction_limits()[f] + np.degrees(hand_model.REST_SPLAY[f])
            assert lo - 4.0 <= splay <= hi + 4.0  # 4 deg: middle-MCP direction vs. palm axis


def test_hand_model_bones_and_joint_limits():
    rng = np.random.default_rng(11)
    for i in range(100):
        pose = hand_model.sample_hand_pose(rng, counting=i % 3 == 0)
        kp = hand_model.forward_kinematics(pose)
        # The sampled angles are within limits, and the keypoints realise the sampled bones.
        lo, hi = np.moveaxis(hand_model.flexion_limits(), -1, 0)
        assert np.all(pose.flexion >= lo) and np.all(pose.flexion <= hi)
        lo, hi = hand_model.abduction_limits().T
        assert np.all(pose.abduction >= lo) and np.all(pose.abduction <= hi)
        for f in range(5):
            chain = kp[[4 + 4 * f, 3 + 4 * f, 2 + 4 * f, 1 + 4 * f]]
            np.testing.assert_allclose(np.linalg.norm(np.diff(chain, axis=0), axis=1),
                                       pose.bone_lengths[f], rtol=1e-12)
        _check_anatomy(kp, "right")
        # Rigid motions keep the anatomy; mirroring makes a left hand.
        R = Rotation.random(random_state=i).as_matrix()
        _check_anatomy(kp @ R.T + 0.5, "right")
        _check_anatomy(hand_model.mirror(kp) @ R.T, "left")


def test_hand_model_mirror_is_not_a_rotation():
    kp = hand_model.forward_kinematics(hand_model.sample_hand_pose(np.random.default_rng(0)))
    with pytest.raises(AssertionError):
        _check_anatomy(hand_model.mirror(kp), "right")


def test_rhd_annotated_hands_are_anatomical(rhd_root):
    hands = set()
    for split in RHD_COUNTS:
        _, annotations = _rhd_split(rhd_root, split)
        for anno in annotations.values():
            hand, rows = _rendered_hand(anno)
            _check_anatomy(anno["xyz"][rows].astype(np.float64), hand)
            hands.add(hand)
    assert hands == {"left", "right"}


# ---------------------------------------------------------------------------------------- STB


def _stb_camera():
    R, _ = cv2.Rodrigues(np.array([0.00531, -0.01196, 0.00301]))
    return R, np.array([-24.0381, -0.4563, -1.2326]) / 1000.0


def test_stb_files_shapes_and_splits(stb_root):
    for split, sequences in stb_writer.SEQUENCES.items():
        frames = 0
        for seq in sequences:
            para = scipy.io.loadmat(os.path.join(stb_root, "labels", f"{seq}_SK.mat"))["handPara"]
            assert para.shape[:2] == (3, 21)
            for i in range(para.shape[2]):
                for kind in ("color", "depth"):
                    image = cv2.imread(os.path.join(stb_root, "images", seq, f"SK_{kind}_{i}.png"),
                                       cv2.IMREAD_UNCHANGED)
                    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
            assert not os.path.exists(os.path.join(stb_root, "images", seq,
                                                   f"SK_color_{para.shape[2]}.png"))
            frames += para.shape[2]
            # Millimetres, in front of the depth camera; the root (middle MCP, canonical 12, STB
            # index 21 - 12 = 9) at 0.3-0.8 m.
            assert np.all(para[2] > 100) and np.all(para[2] < 1500)
            assert np.all((para[2, 9] >= 300 - 1) & (para[2, 9] <= 800 + 1))
        assert frames == STB_COUNTS[split]
    assert sorted(stb_writer.SEQUENCES["test"]) == ["B1Counting", "B1Random"]
    assert len(stb_writer.SEQUENCES["train"]) == 10


def test_stb_labels_are_the_rendered_hand_in_stb_order(stb_root):
    R, T = _stb_camera()
    for split in STB_COUNTS:
        layout, _ = stb_writer.frame_layout(split, STB_COUNTS[split])
        for index, (seq, frame) in enumerate(layout):
            rng = builder.sample_rng(SEED, "stb", split, index)
            color, depth, kp_depth, posed = stb_writer.render_sample(rng, seq.endswith("Counting"))
            para = scipy.io.loadmat(os.path.join(stb_root, "labels", f"{seq}_SK.mat"))["handPara"]
            stb = para[:, :, frame].T / 1000.0
            # 0 palm centre, then little, ring, middle, index, thumb, each MCP..tip.
            np.testing.assert_allclose(stb[1:], kp_depth[20:0:-1], atol=1e-9)
            middle_mcp = stb[9]
            np.testing.assert_allclose(middle_mcp + 2 * (stb[0] - middle_mcp), kp_depth[0],
                                       atol=1e-9)
            # Labels are in the depth frame: X_colour = R^T (X_depth - T) is the rendered hand.
            np.testing.assert_allclose((kp_depth - T) @ R, posed.keypoints, atol=1e-9)
            _check_anatomy(posed.keypoints, "left")


def test_stb_depth_and_colour_cameras_see_the_labelled_hand(stb_root):
    R, T = _stb_camera()
    K_depth = np.array([[475.62768, 0, 336.41179], [0, 474.77709, 238.77962], [0, 0, 1]])
    K_color = np.array([[607.92271, 0, 314.78337], [0, 607.88192, 236.42484], [0, 0, 1]])
    near, skin_like, seen = 0, 0, 0
    for split in STB_COUNTS:
        layout, _ = stb_writer.frame_layout(split, STB_COUNTS[split])
        for seq, frame in layout:
            para = scipy.io.loadmat(os.path.join(stb_root, "labels", f"{seq}_SK.mat"))["handPara"]
            kp = para[:, :, frame].T[1:] / 1000.0  # STB points other than the palm centre
            bgr = cv2.imread(os.path.join(stb_root, "images", seq, f"SK_depth_{frame}.png"))
            depth = (bgr[..., 2].astype(np.float64) + 256 * bgr[..., 1]) / 1000.0
            color = cv2.imread(os.path.join(stb_root, "images", seq, f"SK_color_{frame}.png"))
            uv = kp @ K_depth.T
            uv = np.round(uv[:, :2] / uv[:, 2:]).astype(int)
            kp_color = (kp - T) @ R
            uvc = kp_color @ K_color.T
            uvc = np.round(uvc[:, :2] / uvc[:, 2:]).astype(int)
            for (u, v), (uc, vc), z in zip(uv, uvc, kp[:, 2]):
                if not (0 <= u < 640 and 0 <= v < 480 and 0 <= uc < 640 and 0 <= vc < 480):
                    continue
                # Each keypoint is inside the hand: nothing behind it is seen at its pixel.
                assert depth[v, u] <= z + 0.001
                if z - depth[v, u] <= MAX_TOLERANCE:
                    near += 1
                    b, g, r = color[vc, uc].astype(int)
                    skin_like += (r >= g - 4) and (g >= b - 4)  # every skin tone has R > G > B
                seen += 1
    assert near >= 0.5 * seen
    assert skin_like >= 0.85 * near


# ---------------------------------------------------------------------- directory handling


def test_existing_directories(tmp_path, rhd_root):
    # A complete set with the same parameters: nothing happens.
    before = os.path.getmtime(os.path.join(rhd_root, builder.MARKER))
    generate("rhd", rhd_root, RHD_COUNTS["train"], RHD_COUNTS["test"], SEED, workers=1)
    assert os.path.getmtime(os.path.join(rhd_root, builder.MARKER)) == before
    with pytest.raises(FileExistsError, match="generated with"):
        generate("rhd", rhd_root, RHD_COUNTS["train"] + 1, RHD_COUNTS["test"], SEED)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a complete synthetic set"):
        generate("rhd", str(foreign), 1, 1, SEED)
    empty = tmp_path / "empty"
    empty.mkdir()
    generate("rhd", str(empty), 1, 1, SEED, workers=1)
    assert os.path.exists(empty / builder.MARKER)


def test_an_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    out = str(tmp_path / "set")
    calls = []

    def failing(root, split, index, rng):
        calls.append(index)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(root, split, index, rng)

    real = rhd_writer.write_sample
    monkeypatch.setattr(rhd_writer, "write_sample", failing)
    with pytest.raises(KeyboardInterrupt):
        generate("rhd", out, 3, 1, SEED, workers=1)
    assert not os.path.exists(out)
    assert os.path.exists(out + ".partial")
    monkeypatch.setattr(rhd_writer, "write_sample", real)
    generate("rhd", out, 3, 1, SEED, workers=1)  # the leftover is replaced
    assert not os.path.exists(out + ".partial")
    assert len(os.listdir(os.path.join(out, "training", "color"))) == 3


def test_bad_arguments_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="generate: fmt must be one of"):
        generate("coco", str(tmp_path / "a"), 1, 1, 0)
    with pytest.raises(ValueError, match="generate: num_train must be a positive"):
        generate("rhd", str(tmp_path / "a"), 0, 1, 0)
    with pytest.raises(ValueError, match="generate: seed must be"):
        generate("rhd", str(tmp_path / "a"), 1, 1, -1)
    with pytest.raises(ValueError, match="generate: num_test must be at least 2 for STB"):
        generate("stb", str(tmp_path / "a"), 10, 1, 0)


def test_command_line_errors_name_the_flag(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "data_pipeline.synthetic", "--format=stb",
         f"--out={tmp_path / 'b'}", "--num_train=10", "--num_test=1"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "error: --num_test: generate: num_test must be at least 2 for STB" in result.stderr


def test_command_line(tmp_path):
    out = str(tmp_path / "cli")
    result = subprocess.run(
        [sys.executable, "-m", "data_pipeline.synthetic", "--format=rhd", "--out", out,
         "--num_train", "2", "--num_test", "1", "--seed", "3", "--workers", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "rendering: sample 3/3" in result.stdout  # the last progress line is always written
    with open(os.path.join(out, builder.MARKER)) as f:
        assert json.load(f) == {"format": "rhd", "num_train": 2, "num_test": 1, "seed": 3,
                                "generator_version": builder.GENERATOR_VERSION}


# ----------------------------------------------------------- round trip through the readers


def test_rhd_reader_reads_the_synthetic_set(rhd_root):
    from data_pipeline.rhd import RHDReader
    for split, count in RHD_COUNTS.items():
        reader = RHDReader(rhd_root, split)
        assert len(reader) == count
        split_dir, annotations = _rhd_split(rhd_root, split)
        for index in range(count):
            raw = reader[index]
            anno = annotations[index]
            hand, rows = _rendered_hand(anno)
            assert raw.hand == hand
            np.testing.assert_allclose(raw.keypoints, anno["xyz"][rows], rtol=1e-6)
            np.testing.assert_array_equal(raw.visible, anno["uv_vis"][rows, 2] > 0)
            np.testing.assert_allclose(raw.K_color, anno["K"], rtol=1e-6)
            name = "%05d.png" % index
            mask = cv2.imread(os.path.join(split_dir, "mask", name), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(raw.hand_mask, mask >= 2)
            np.testing.assert_allclose(raw.depth, _decode_rhd_depth(
                os.path.join(split_dir, "depth", name)), atol=1e-6)
            sample = rhd_writer.render_sample(builder.sample_rng(SEED, "rhd", split, index))
            np.testing.assert_array_equal(raw.color, sample.color)
            np.testing.assert_allclose(raw.depth, sample.depth, atol=DEPTH_STEP)


def test_stb_reader_reads_the_synthetic_set(stb_root):
    from data_pipeline.stb import STBReader
    for split, count in STB_COUNTS.items():
        reader = STBReader(stb_root, split)
        assert len(reader) == count
        for index in range(count):
            raw = reader[index]
            seq = stb_writer.frame_layout(split, count)[0][index][0]
            color, depth, _, posed = stb_writer.render_sample(
                builder.sample_rng(SEED, "stb", split, index), seq.endswith("Counting"))
            assert raw.hand == "left"
            # Canonical order, colour frame, metres, with the wrist recovered from the palm.
            np.testing.assert_allclose(raw.keypoints, posed.keypoints, atol=1e-9)
            np.testing.assert_array_equal(raw.color, color)
            np.testing.assert_allclose(raw.depth, depth, atol=0.0005 + 1e-9)
