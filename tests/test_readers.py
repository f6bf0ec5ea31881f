"""The RHD and STB readers against tiny data sets written here by hand, with known geometry."""
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
import scipy.io
from scipy.spatial.transform import Rotation

from data_pipeline import rhd, stb
from data_pipeline.sample import DataError

HEIGHT, WIDTH = 24, 32  # deliberately not RHD's 320 x 320 nor STB's 640 x 480


def _write_png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])


# ---------------------------------------------------------------------------------------------
# RHD


def _rhd_mask(dominant):
    """A mask with person pixels, both hands, and 192 pixels of `dominant` against 96."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[13:] = 1  # 352 person pixels: more than either hand, and must not count as a hand
    big, small = ((18, 33), (2, 17)) if dominant == "right" else ((2, 17), (18, 33))
    mask[4:8] = big[0]  # 128 px
    mask[8:10] = big[1]  # 64 px: the palm label counts too
    mask[10:12] = small[0]  # 64 px
    mask[12] = small[1]  # 32 px
    return mask


def _rhd_sample(rng, sample_id, dominant):
    """Files and annotation of one RHD sample; returns what the reader should give back."""
    color_rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    depth_bgr = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    depth_bgr[0, 0] = (17, 255, 255)  # R = G = 255: the largest code, exactly 5 m
    depth_bgr[0, 1] = (255, 0, 0)  # R = G = 0: 0 m whatever the blue channel holds
    depth_bgr[0, 2] = (0, 0, 128)  # R = 128: code 32768
    xyz = np.concatenate([rng.uniform(-0.1, 0.1, (42, 2)), rng.uniform(0.3, 0.8, (42, 1))], 1)
    vis = (np.arange(42) % 4 != 0).astype(np.float32)  # period 4: the two hands differ
    uv_vis = np.concatenate([rng.uniform(0, WIDTH, (42, 2)), vis[:, None]], 1)
    focal = 280.0 + sample_id
    K = np.array([[focal, 0, WIDTH / 2], [0, focal, HEIGHT / 2], [0, 0, 1]])
    anno = {"xyz": xyz.astype(np.float32), "uv_vis": uv_vis.astype(np.float32),
            "K": K.astype(np.float32)}
    code = depth_bgr[..., 2].astype(np.int64) * 256 + depth_bgr[..., 1].astype(np.int64)
    rows = slice(0, 21) if dominant == "left" else slice(21, 42)
    expected = dict(color=color_rgb, depth_m=code * (5.0 / 65535.0), hand=dominant,
                    keypoints=anno["xyz"][rows].astype(np.float64), visible=vis[rows] == 1,
                    K=anno["K"].astype(np.float64), mask=_rhd_mask(dominant))
    files = dict(color=color_rgb[..., ::-1], depth=depth_bgr, mask=expected["mask"])
    return anno, files, expected


def _write_rhd(root, split_dir, dominants):
    """Writes an RHD split with one sample per entry of {sample_id: dominant hand}."""
    rng = np.random.default_rng(0)
    annotations, expected = {}, {}
    for sample_id, dominant in dominants.items():
        anno, files, expected[sample_id] = _rhd_sample(rng, sample_id, dominant)
        annotations[sample_id] = anno
        for kind, image in files.items():
            _write_png(os.path.join(root, split_dir, kind, f"{sample_id:05d}.png"), image)
    with open(os.path.join(root, split_dir, f"anno_{split_dir}.pickle"), "wb") as f:
        pickle.dump(annotations, f, protocol=2)
    return expected


@pytest.fixture
def rhd_train(tmp_path):
    root = str(tmp_path / "RHD_published_v2")
    expected = _write_rhd(root, "training", {3: "right", 11: "left"})
    return root, expected


def test_rhd_reads_dominant_hand_depth_k_and_visibility(rhd_train):
    root, expected = rhd_train
    reader = rhd.RHDReader(root, "train")
    assert len(reader) == 2 and reader.sample_ids == (3, 11)
    for i, sample_id in enumerate(reader.sample_ids):
        sample, want = reader[i], expected[sample_id]
        assert sample.hand == want["hand"]
        np.testing.assert_array_equal(sample.keypoints, want["keypoints"])
        np.testing.assert_array_equal(sample.visible, want["visible"])
        np.testing.assert_array_equal(sample.K_color, want["K"])
        np.testing.assert_array_equal(sample.K_depth, want["K"])
        np.testing.assert_array_equal(sample.depth_to_color, np.eye(4))
        np.testing.assert_array_equal(sample.color, want["color"])  # RGB, not BGR
        assert sample.depth.dtype == np.float32
        np.testing.assert_array_equal(sample.depth, want["depth_m"].astype(np.float32))
        assert sample.depth[0, 0] == 5.0 and sample.depth[0, 1] == 0.0
        lo, hi = (2, 17) if want["hand"] == "left" else (18, 33)
        np.testing.assert_array_equal(sample.hand_mask, (want["mask"] >= lo) & (want["mask"] <= hi))
        assert sample.hand_mask.sum() == 192
        assert sample.source == reader.describe(i)
        assert sample.source.endswith(os.path.join("training", "color", f"{sample_id:05d}.png"))
    assert reader[-1].hand == "left"
    with pytest.raises(IndexError):
        reader[2]


def test_rhd_dominant_hand_labels_and_ties():
    labels = np.array([[1, 2, 17, 18, 33, 34]])
    hand, mask = rhd.dominant_hand(labels)  # 2 left pixels, 2 right: the tie goes right
    assert hand == "right"
    np.testing.assert_array_equal(mask, [[False, False, False, True, True, False]])
    hand, mask = rhd.dominant_hand(np.array([[1, 1, 1, 5, 5, 20]]))
    assert hand == "left"
    np.testing.assert_array_equal(mask, [[False, False, False, True, True, False]])


def test_rhd_split_dirs_and_known_broken_samples(tmp_path):
    root = str(tmp_path)
    _write_rhd(root, "training", {7: "right", 20500: "right", 28140: "left"})
    _write_rhd(root, "evaluation", {5: "left", 20500: "right"})
    train = rhd.RHDReader(root, "train")
    assert train.sample_ids == (7,) and train.excluded_ids == (20500, 28140)
    test = rhd.RHDReader(root, "test")  # the rule only concerns training samples
    assert test.sample_ids == (5, 20500) and test.excluded_ids == ()
    assert "evaluation" in test.describe(1)
    with pytest.raises(ValueError, match="split"):
        rhd.RHDReader(root, "val")


def test_rhd_evaluation_sample_without_hand_pixels_is_kept(tmp_path):
    # SPEC 6 scores every test sample: the reader returns it, pre-processing crops it by its
    # keypoints. A training sample without hand pixels stays an error (RHD_BROKEN below).
    root = str(tmp_path)
    _write_rhd(root, "evaluation", {5: "left", 6: "right"})
    _write_png(os.path.join(root, "evaluation", "mask", "00005.png"),
               np.ones((HEIGHT, WIDTH), np.uint8))
    sample = rhd.RHDReader(root, "test")[0]
    assert not sample.hand_mask.any() and sample.hand == "right"  # the tie rule
    np.testing.assert_array_equal(sample.keypoints,
                                  _rhd_keypoints(root, "evaluation", 5, "right"))


def _rhd_keypoints(root, split_dir, sample_id, hand):
    with open(os.path.join(root, split_dir, f"anno_{split_dir}.pickle"), "rb") as f:
        xyz = pickle.load(f)[sample_id]["xyz"]
    return xyz[slice(0, 21) if hand == "left" else slice(21, 42)]


def _rhd_path(root, *parts):
    return os.path.join(root, "training", *parts)


def _pickle_edit(edit):
    def corrupt(root):
        path = _rhd_path(root, "anno_training.pickle")
        with open(path, "rb") as f:
            annotations = pickle.load(f)
        with open(path, "wb") as f:
            pickle.dump(edit(annotations), f)
    return corrupt


def _nan_in_dominant_hand(annotations):
    annotations[3]["xyz"][30, 1] = np.nan  # sample 3's dominant hand is the right (21-41)
    return annotations


def _mask_without_hand(root):
    _write_png(_rhd_path(root, "mask", "00003.png"), np.ones((HEIGHT, WIDTH), np.uint8))


def _mask_of_wrong_size(root):
    _write_png(_rhd_path(root, "mask", "00003.png"), np.full((HEIGHT, WIDTH + 1), 20, np.uint8))


def _garbage(parts):
    def corrupt(root):
        with open(_rhd_path(root, *parts), "wb") as f:
            f.write(b"this is not a PNG file")
    return corrupt


# (how to break the tree, the path the message must name, raised when opening or reading)
RHD_BROKEN = {
    "no root": (lambda root: shutil.rmtree(root), ("anno_training.pickle",), "open"),
    "no mask dir": (lambda root: shutil.rmtree(_rhd_path(root, "mask")), ("mask",), "open"),
    "truncated pickle": (lambda root: _truncate(_rhd_path(root, "anno_training.pickle")),
                         ("anno_training.pickle",), "open"),
    "pickle not a dict": (_pickle_edit(lambda a: list(a.values())), ("anno_training.pickle",),
                          "open"),
    "entry without K": (_pickle_edit(lambda a: {**a, 3: {"xyz": a[3]["xyz"],
                                                        "uv_vis": a[3]["uv_vis"]}}),
                        ("anno_training.pickle",), "read"),
    "NaN keypoints": (_pickle_edit(_nan_in_dominant_hand), ("anno_training.pickle",), "read"),
    "garbage colour png": (_garbage(("color", "00003.png")), ("color", "00003.png"), "read"),
    "truncated depth png": (lambda root: _truncate(_rhd_path(root, "depth", "00003.png")),
                            ("depth", "00003.png"), "read"),
    "missing depth png": (lambda root: os.remove(_rhd_path(root, "depth", "00003.png")),
                          ("depth", "00003.png"), "read"),
    "mask without hand": (_mask_without_hand, ("mask", "00003.png"), "read"),
    "mask of wrong size": (_mask_of_wrong_size, ("mask", "00003.png"), "read"),
}


@pytest.mark.parametrize("case", sorted(RHD_BROKEN))
def test_rhd_bad_input_names_the_file(rhd_train, case):
    root, _ = rhd_train
    corrupt, parts, when = RHD_BROKEN[case]
    corrupt(root)
    expected_path = _rhd_path(root, *parts)
    with pytest.raises(DataError) as raised:
        reader = rhd.RHDReader(root, "train")
        assert when == "read", "opening the split should have failed"
        reader[0]
    assert expected_path in str(raised.value)
    if when == "read":  # the other sample is still readable
        assert rhd.RHDReader(root, "train")[1].hand == "left"


# ---------------------------------------------------------------------------------------------
# STB

# Frames per sequence: not STB's 1500, and not all equal.
STB_FRAMES = {f"B{b}{kind}": 1 for b in range(1, 7) for kind in ("Counting", "Random")}
STB_FRAMES.update(B1Counting=3, B1Random=2, B4Random=2)

# STB order: 0 palm centre, then each finger MCP..tip from this index.
STB_FINGER_MCP = {"little": 1, "ring": 5, "middle": 9, "index": 13, "thumb": 17}
# Canonical order: 0 wrist, then each finger tip..MCP from this index.
CANONICAL_FINGER_TIP = {"thumb": 1, "index": 5, "middle": 9, "ring": 13, "little": 17}


def _stb_canonical_mm(stb_points):
    """The canonical order written out finger by finger, and the wrist of SPEC 5."""
    canonical = np.zeros((21, 3))
    for finger, mcp in STB_FINGER_MCP.items():
        for joint in range(4):  # 0 MCP .. 3 tip
            canonical[CANONICAL_FINGER_TIP[finger] + 3 - joint] = stb_points[mcp + joint]
    canonical[0] = 2.0 * stb_points[0] - stb_points[STB_FINGER_MCP["middle"]]
    return canonical


def _color_from_depth_m(points_depth_mm):
    """X_colour = R^T (X_depth - T), R from scipy's rotation vector (not OpenCV's Rodrigues)."""
    rotation = Rotation.from_rotvec([0.00531, -0.01196, 0.00301]).as_matrix()
    translation = np.array([-24.0381, -0.4563, -1.2326])
    return (points_depth_mm - translation) @ rotation / 1000.0


def _write_stb(root):
    """Writes every sequence of STB_FRAMES; returns {(seq, frame): expected values}."""
    rng = np.random.default_rng(1)
    expected = {}
    for seq, frames in STB_FRAMES.items():
        hand_para = np.concatenate([rng.uniform(-80, 80, (2, 21, frames)),
                                    rng.uniform(300, 700, (1, 21, frames))])
        os.makedirs(os.path.join(root, "labels"), exist_ok=True)
        scipy.io.savemat(os.path.join(root, "labels", f"{seq}_SK.mat"), {"handPara": hand_para})
        for frame in range(frames):
            color_rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            depth_bgr = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            depth_bgr[0, 0] = (9, 255, 255)  # 255 + 256 * 255 = 65535 mm
            depth_bgr[0, 1] = (0, 0, 1)  # R = 1: 1 mm
            depth_bgr[0, 2] = (0, 1, 0)  # G = 1: 256 mm
            _write_png(os.path.join(root, "images", seq, f"SK_color_{frame}.png"),
                       color_rgb[..., ::-1])
            _write_png(os.path.join(root, "images", seq, f"SK_depth_{frame}.png"), depth_bgr)
            depth_mm = depth_bgr[..., 2].astype(np.int64) + 256 * depth_bgr[..., 1].astype(np.int64)
            expected[seq, frame] = dict(
                color=color_rgb, depth_m=depth_mm / 1000.0,
                keypoints=_color_from_depth_m(_stb_canonical_mm(hand_para[:, :, frame].T)))
    return expected


@pytest.fixture
def stb_tree(tmp_path):
    root = str(tmp_path / "stb")
    return root, _write_stb(root)


def test_stb_split_membership_and_frame_counts(stb_tree):
    root, _ = stb_tree
    train = stb.STBReader(root, "train")
    assert {seq for seq, _ in train.sample_ids} == {
        f"B{b}{kind}" for b in range(2, 7) for kind in ("Counting", "Random")}
    assert len(train) == 11 and ("B4Random", 1) in train.sample_ids
    test = stb.STBReader(root, "test")
    assert test.sample_ids == (("B1Counting", 0), ("B1Counting", 1), ("B1Counting", 2),
                               ("B1Random", 0), ("B1Random", 1))
    assert test.describe(3).endswith(os.path.join("images", "B1Random", "SK_color_0.png"))
    with pytest.raises(ValueError, match="split"):
        stb.STBReader(root, "validation")


def test_stb_sample_geometry_and_depth(stb_tree):
    root, expected = stb_tree
    reader = stb.STBReader(root, "test")
    for i, sample_id in enumerate(reader.sample_ids):
        sample, want = reader[i], expected[sample_id]
        np.testing.assert_allclose(sample.keypoints, want["keypoints"], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(sample.color, want["color"])  # RGB, not BGR
        assert sample.depth.dtype == np.float32
        np.testing.assert_array_equal(sample.depth, want["depth_m"].astype(np.float32))
        assert sample.depth[0, 0] == np.float32(65.535)
        assert sample.depth[0, 1] == np.float32(0.001) and sample.depth[0, 2] == np.float32(0.256)
        assert sample.hand == "left" and sample.hand_mask is None and sample.visible.all()
        np.testing.assert_array_equal(sample.K_color, [[607.92271, 0, 314.78337],
                                                       [0, 607.88192, 236.42484], [0, 0, 1]])
        np.testing.assert_array_equal(sample.K_depth, [[475.62768, 0, 336.41179],
                                                       [0, 474.77709, 238.77962], [0, 0, 1]])
        assert sample.source == reader.describe(i)


def test_stb_depth_to_color_is_the_label_transform(stb_tree):
    root, _ = stb_tree
    transform = stb.STBReader(root, "test")[0].depth_to_color
    rotation = transform[:3, :3]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(rotation), 1.0) and np.array_equal(transform[3], [0, 0, 0, 1])
    points_mm = np.random.default_rng(2).uniform(-500, 500, (5, 3))
    np.testing.assert_allclose(points_mm / 1000.0 @ rotation.T + transform[:3, 3],
                               _color_from_depth_m(points_mm), rtol=0, atol=1e-12)
    # The colour camera centre, T in the depth frame, maps to the colour frame's origin.
    centre_m = np.array([-24.0381, -0.4563, -1.2326]) / 1000.0
    np.testing.assert_allclose(rotation @ centre_m + transform[:3, 3], 0, atol=1e-15)


def test_stb_wrist_from_palm_by_hand():
    stb_points = np.zeros((21, 3))
    stb_points[0] = (10.0, 20.0, 500.0)  # palm centre
    stb_points[9] = (12.0, -10.0, 495.0)  # middle MCP
    stb_points[20] = (1.0, 2.0, 3.0)  # thumb tip
    stb_points[1] = (4.0, 5.0, 6.0)  # little MCP
    canonical = stb.to_canonical(stb_points)
    np.testing.assert_array_equal(canonical[0], (8.0, 50.0, 505.0))  # the palm is the midpoint
    np.testing.assert_array_equal(canonical[12], stb_points[9])  # root: the middle MCP
    np.testing.assert_array_equal(canonical[1], stb_points[20])
    np.testing.assert_array_equal(canonical[20], stb_points[1])
    ordered = np.random.default_rng(3).normal(size=(21, 3))
    np.testing.assert_allclose(stb.to_canonical(ordered), _stb_canonical_mm(ordered), atol=1e-12)


def _stb_label(root, seq="B1Counting"):
    return os.path.join(root, "labels", f"{seq}_SK.mat")


def _stb_image(root, kind, frame=1):
    return os.path.join(root, "images", "B1Counting", f"SK_{kind}_{frame}.png")


def _savemat(variables):
    def corrupt(root):
        scipy.io.savemat(_stb_label(root), variables)
    return corrupt


def _nan_at_frame_1(root):
    hand_para = scipy.io.loadmat(_stb_label(root))["handPara"]
    hand_para[2, 7, 1] = np.nan
    scipy.io.savemat(_stb_label(root), {"handPara": hand_para})


def _garbage_png(root):
    with open(_stb_image(root, "color"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really")


# (how to break the tree, the path the message must name, raised when opening or reading)
STB_BROKEN = {
    "no root": (lambda root: shutil.rmtree(root), lambda root: _stb_label(root), "open"),
    "missing label file": (lambda root: os.remove(_stb_label(root, "B1Random")),
                           lambda root: _stb_label(root, "B1Random"), "open"),
    "missing image dir": (lambda root: shutil.rmtree(os.path.join(root, "images", "B1Counting")),
                          lambda root: os.path.join(root, "images", "B1Counting"), "open"),
    "truncated mat": (lambda root: _truncate(_stb_label(root)), _stb_label, "open"),
    "mat without handPara": (_savemat({"other": np.zeros((3, 21, 3))}), _stb_label, "open"),
    "handPara of wrong shape": (_savemat({"handPara": np.zeros((3, 20, 3))}), _stb_label,
                                "open"),
    "NaN keypoints": (_nan_at_frame_1, _stb_label, "read"),
    "corrupt colour png": (_garbage_png, lambda root: _stb_image(root, "color"), "read"),
    "truncated depth png": (lambda root: _truncate(_stb_image(root, "depth")),
                            lambda root: _stb_image(root, "depth"), "read"),
    "missing depth png": (lambda root: os.remove(_stb_image(root, "depth")),
                          lambda root: _stb_image(root, "depth"), "read"),
}


@pytest.mark.parametrize("case", sorted(STB_BROKEN))
def test_stb_bad_input_names_the_file(stb_tree, case):
    root, _ = stb_tree
    corrupt, expected_path, when = STB_BROKEN[case]
    corrupt(root)
    with pytest.raises(DataError) as raised:
        reader = stb.STBReader(root, "test")
        assert when == "read", "opening the split should have failed"
        reader[1]  # B1Counting frame 1
    assert expected_path(root) in str(raised.value)
    if when == "read":  # the neighbouring frames are still readable
        assert stb.STBReader(root, "test")[0].hand == "left"
