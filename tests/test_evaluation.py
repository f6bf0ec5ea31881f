"""The SPEC 6 protocol on hand-computed cases; streaming; inference over a dataset; figures."""
import json
import os

import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from evaluation import figures, files, inference, mean_pose, protocol, report

K = protocol.NUM_KEYPOINTS
T = protocol.pck_thresholds_mm()


def _with_errors(errors_mm, seed=0):
    """(gt, pred) whose keypoint errors are `errors_mm` (M, 21), in random 3D directions."""
    rng = np.random.default_rng(seed)
    errors_mm = np.asarray(errors_mm, np.float64)
    gt = rng.normal(scale=40.0, size=errors_mm.shape + (3,))
    direction = rng.normal(size=errors_mm.shape + (3,))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    return gt, gt + errors_mm[..., None] * direction


def test_thresholds_are_linspace_0_50_20_and_20_50_20():
    assert T.shape == (20,)
    assert T[0] == 0.0 and T[-1] == 50.0
    np.testing.assert_array_equal(T, np.linspace(0, 50, 20))
    # "AUC 20-50": EvalUtil.get_measures(20, 50, 20), a grid of its own.
    np.testing.assert_array_equal(protocol.pck_thresholds_mm(20.0), np.linspace(20, 50, 20))


def test_two_samples_with_known_pck_and_auc():
    # Every keypoint: 10 mm in sample 0, 30 mm in sample 1.
    gt, pred = _with_errors(np.tile([[10.0], [30.0]], (1, K)))
    m = protocol.evaluate_pose(pred, gt)
    assert m["epe_mean_mm"] == pytest.approx(20.0)
    assert m["epe_median_mm"] == pytest.approx(20.0)
    # t_k = 50 k / 19: t_3 = 7.9 < 10 <= t_4 = 10.5; t_11 = 28.9 < 30 <= t_12 = 31.6.
    expected_pck = [0.0] * 4 + [0.5] * 8 + [1.0] * 8
    np.testing.assert_allclose(m["pck"], expected_pck)
    np.testing.assert_allclose(m["pck_thresholds_mm"], np.linspace(0, 50, 20))
    # Trapezoids on a uniform grid: (sum - (first + last) / 2) / 19 intervals.
    assert m["auc_0_50"] == pytest.approx((0.5 * 8 + 8 - 0.5) / 19)
    # AUC 20-50 on its own grid u_k = 20 + 30 k / 19: 10 <= u_0; u_6 = 29.5 < 30 <= u_7 = 31.1,
    # so p_0..p_6 = 0.5, p_7..p_19 = 1, over 19 intervals (the tail t_8..t_19 of the 0-50 grid
    # would give (0.5 * 4 + 8 - 0.75) / 11 = 0.841 instead).
    assert m["auc_20_50"] == pytest.approx((0.5 * 7 + 13 - (0.5 + 1.0) / 2) / 19)
    assert list(m) == ["epe_mean_mm", "epe_median_mm", "auc_0_50", "auc_20_50",
                       "pck_thresholds_mm", "pck"]
    json.dumps(m)  # plain floats and lists only


def test_perfect_prediction():
    gt, _ = _with_errors(np.zeros((3, K)))
    m = protocol.evaluate_pose(gt, gt)
    assert m["epe_mean_mm"] == 0.0 and m["epe_median_mm"] == 0.0
    # e <= t counts at t = 0, so the curve is 1 everywhere.
    assert m["pck"] == [1.0] * 20
    assert m["auc_0_50"] == pytest.approx(1.0) and m["auc_20_50"] == pytest.approx(1.0)


def test_median_differs_from_mean():
    gt, pred = _with_errors(np.tile([[0.0], [0.0], [30.0]], (1, K)))
    m = protocol.evaluate_pose(pred, gt)
    assert m["epe_mean_mm"] == pytest.approx(10.0)
    assert m["epe_median_mm"] == pytest.approx(0.0, abs=1e-9)


def test_visibility_masks_errors_and_keypoints_are_weighed_equally():
    errors = np.full((3, K), 1e4)  # huge errors that must never count
    visible = np.zeros((3, K))
    errors[:, 0], visible[:, 0] = [3.0, 3.0, 6.0], 1  # keypoint 0: mean 4, median 3
    errors[0, 1], visible[0, 1] = 10.0, 1  # keypoint 1: only sample 0, 10 mm
    gt, pred = _with_errors(errors)
    m = protocol.evaluate_pose(pred, gt, visible)
    # Mean of per-keypoint means (4 + 10) / 2, not the pooled mean 22 / 4; keypoints 2-20 are
    # visible nowhere and left out.
    assert m["epe_mean_mm"] == pytest.approx(7.0)
    assert m["epe_median_mm"] == pytest.approx((3.0 + 10.0) / 2)
    # t_1 = 2.6, t_2 = 5.3 (keypoint 0: 2/3), t_3 = 7.9 (keypoint 0: 1), t_4 = 10.5 (both: 1).
    np.testing.assert_allclose(m["pck"][:5], [0.0, 0.0, 1.0 / 3.0, 0.5, 1.0])
    np.testing.assert_allclose(m["pck"][5:], 1.0)
    # Boolean visibility means the same.
    assert protocol.evaluate_pose(pred, gt, visible.astype(bool)) == m


def test_auc_is_the_mean_of_per_keypoint_aucs():
    # hand3d integrates each keypoint's curve and averages; trapz is linear, so it is the same.
    rng = np.random.default_rng(3)
    errors = rng.uniform(0.0, 60.0, size=(7, K))
    gt, pred = _with_errors(errors)
    m = protocol.evaluate_pose(pred, gt)
    per_keypoint = [np.trapz((errors[:, j, None] <= T).mean(0), T) / 50.0 for j in range(K)]
    assert m["auc_0_50"] == pytest.approx(np.mean(per_keypoint))
    u = np.linspace(20.0, 50.0, 20)
    per_keypoint = [np.trapz((errors[:, j, None] <= u).mean(0), u) / 30.0 for j in range(K)]
    assert m["auc_20_50"] == pytest.approx(np.mean(per_keypoint))
    assert m["epe_mean_mm"] == pytest.approx(errors.mean())
    assert m["epe_median_mm"] == pytest.approx(np.median(errors, axis=0).mean())


def test_bad_shapes_and_values_are_named():
    gt, pred = _with_errors(np.ones((2, K)))
    with pytest.raises(ValueError, match=r"pred must have shape \(M, 21, 3\), got \(2, 20, 3\)"):
        protocol.evaluate_pose(pred[:, :20], gt)
    with pytest.raises(ValueError, match="gt has 1 samples but pred has 2"):
        protocol.evaluate_pose(pred, gt[:1])
    with pytest.raises(ValueError, match=r"visible must have shape \(2, 21\)"):
        protocol.evaluate_pose(pred, gt, np.ones((2, 20)))
    with pytest.raises(ValueError, match="0/1"):
        protocol.evaluate_pose(pred, gt, np.full((2, K), 0.5))
    with pytest.raises(ValueError, match="no visible keypoint"):
        protocol.evaluate_pose(pred, gt, np.zeros((2, K)))
    bad = pred.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="pred has non-finite values .* sample 1"):
        protocol.evaluate_pose(bad, gt)


def test_streaming_equals_one_shot():
    rng = np.random.default_rng(1)
    errors = rng.gamma(2.0, 8.0, size=(11, K))
    visible = (rng.uniform(size=(11, K)) < 0.7).astype(np.float32)
    gt, pred = _with_errors(errors)
    evaluator = protocol.PoseEvaluator()
    with pytest.raises(ValueError, match="no samples"):
        evaluator.result()
    for lo, hi in [(0, 4), (4, 5), (5, 11)]:
        evaluator.add(pred[lo:hi], gt[lo:hi], visible[lo:hi])
    assert evaluator.num_samples == 11
    streamed = evaluator.result()
    one_shot = protocol.evaluate_pose(pred, gt, visible)
    assert streamed.keys() == one_shot.keys()
    for key in streamed:
        np.testing.assert_allclose(streamed[key], one_shot[key], rtol=1e-12)


class FakeModel:
    """The model contract of evaluation.inference with a known, image-dependent output.

    z = per-channel image mean (B, 3); pose = a fixed pose + 0.1 z per keypoint; cloud (optional)
    = 16 points at z.
    """

    def __init__(self, with_cloud=True):
        self.base = tf.constant(np.random.default_rng(5).normal(size=(K, 3)), tf.float32)
        self.with_cloud = with_cloud

    def encode_rgb(self, image, training=False):
        mu = tf.reduce_mean(image, axis=[1, 2])
        return mu, tf.zeros_like(mu)

    def decode(self, z, training=False):
        out = {"pose": self.base[None] + 0.1 * z[:, None, :]}
        if self.with_cloud:
            out["cloud"] = tf.tile(z[:, None, :], [1, 16, 1])
        return out

    def predict_pose(self, image, training=False):
        return self.decode(self.encode_rgb(image)[0])["pose"]


def _fake_dataset(num=5, batch=2, size=8, seed=2, index=None):
    """(arrays, batched dataset) of `num` random samples; index defaults to 10, 11, ..."""
    rng = np.random.default_rng(seed)
    data = {
        "image": rng.uniform(size=(num, size, size, 3)).astype(np.float32),
        "pose": rng.normal(size=(num, K, 3)).astype(np.float32),
        "cloud": rng.normal(size=(num, 32, 3)).astype(np.float32),
        "scale": rng.uniform(0.008, 0.012, size=num).astype(np.float32),
        "visible": (rng.uniform(size=(num, K)) < 0.8).astype(np.float32),
        "index": np.arange(10, 10 + num, dtype=np.int64) if index is None else np.asarray(
            index, np.int64),
    }
    return data, tf.data.Dataset.from_tensor_slices(data).batch(batch)


def test_predict_dataset_converts_with_the_ground_truth_scale():
    model = FakeModel()
    data, ds = _fake_dataset()
    out = inference.predict_dataset(model, ds)
    mm = data["scale"].astype(np.float64)[:, None, None] * 1000.0
    expected_pose = model.base.numpy()[None] + 0.1 * data["image"].mean(axis=(1, 2))[:, None, :]
    np.testing.assert_allclose(out["pred_mm"], expected_pose * mm, rtol=1e-5)
    np.testing.assert_allclose(out["gt_mm"], data["pose"] * mm, rtol=1e-6)
    np.testing.assert_array_equal(out["visible"], data["visible"])
    np.testing.assert_array_equal(out["index"], data["index"])
    assert inference.predict_dataset(model, ds, max_batches=2)["pred_mm"].shape == (4, K, 3)

    metrics = inference.evaluate_model(model, ds)
    assert metrics["num_samples"] == 5
    reference = protocol.evaluate_pose(out["pred_mm"], out["gt_mm"], out["visible"])
    for key, value in reference.items():
        np.testing.assert_allclose(metrics[key], value, rtol=1e-12)
    with pytest.raises(ValueError, match="no batch"):
        inference.predict_dataset(model, ds.take(0))


def test_repeated_validation_traces_the_predictor_once():
    """Training validates every few hundred steps; each call used to trace a new tf.function."""
    model = FakeModel()
    calls = []
    predict_pose = model.predict_pose
    model.predict_pose = lambda image, training=False: calls.append(1) or predict_pose(image)
    _, ds = _fake_dataset()  # batches of 2, 2 and 1: two shapes
    for _ in range(3):
        inference.evaluate_model(model, ds)
    assert len(calls) <= 2  # Python runs only while tracing


def test_interpolation_and_decoding():
    z = inference.interpolate_latents(np.zeros(4), np.arange(4.0), 5)
    np.testing.assert_allclose(z[:, 3], [0.0, 0.75, 1.5, 2.25, 3.0])
    with pytest.raises(ValueError, match="at least 2 steps"):
        inference.interpolate_latents(np.zeros(4), np.ones(4), 1)
    decoded = inference.decode_from_rgb(FakeModel(with_cloud=False), np.ones((2, 8, 8, 3)))
    assert sorted(decoded) == ["pose", "z"]
    np.testing.assert_allclose(decoded["z"], 1.0)


def test_skeleton_is_the_canonical_hand_tree():
    bones = figures.SKELETON
    assert len(bones) == 20
    # Every keypoint but the wrist has exactly one parent, and the bones reach all 21.
    children = sorted(b for _, b in bones)
    assert children == list(range(1, K))
    # Each finger runs wrist -> MCP -> PIP -> DIP -> tip with tip..MCP at 4f+1..4f+4.
    for f in range(5):
        tip, mcp = 4 * f + 1, 4 * f + 4
        assert (0, mcp) in bones and (tip + 1, tip) in bones


def _png_shape(path):
    return matplotlib.image.imread(path).shape


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    path = figures.plot_pck({"a": (T, np.linspace(0, 1, 20)), "b": (T, np.ones(20))},
                            str(tmp_path / "pck.png"))
    assert _png_shape(path)[2] in (3, 4)
    poses = rng.normal(size=(2, K, 3))
    for cloud in (rng.normal(size=(2, 64, 3)), None):
        path = figures.plot_samples(rng.uniform(size=(2, 16, 16, 3)), poses, poses + 0.1,
                                    rng.normal(size=(2, 64, 3)), cloud, str(tmp_path / "f3.png"))
        assert os.path.getsize(path) > 0
    path = figures.plot_interpolation(rng.normal(size=(4, K, 3)), rng.normal(size=(4, 32, 3)),
                                      str(tmp_path / "f4.png"))
    assert _png_shape(path)[1] > _png_shape(path)[0]  # steps side by side
    with pytest.raises(ValueError, match=r"pred_pose must have shape \(2, 21, 3\)"):
        figures.plot_samples(rng.uniform(size=(2, 16, 16, 3)), poses, poses[:1],
                             rng.normal(size=(2, 64, 3)), None, str(tmp_path / "bad.png"))
    with pytest.raises(ValueError, match="curve 'x'"):
        figures.plot_pck({"x": (T, np.ones(5))}, str(tmp_path / "bad.png"))
    assert not (tmp_path / "bad.png").exists()


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("good")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.atomic_write(str(path), fail)
    assert path.read_text() == "good"
    assert os.listdir(tmp_path) == ["metrics.json"]
    files.atomic_write(str(path), lambda f: f.write(b"new"))
    assert path.read_text() == "new" and oct(path.stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("with_cloud", [True, False])
def test_evaluate_restored_writes_everything_consistently(tmp_path, with_cloud):
    model = FakeModel(with_cloud)
    _, ds = _fake_dataset(index=np.arange(5))  # a test split's indices: 0 .. size - 1
    metrics, paths = report.evaluate_restored(
        model, "poe", "run/ckpt-4", ds, data="synthetic", split="test",
        out_dir=str(tmp_path), split_size=5, num_figure_samples=2, interpolation_steps=3)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["metrics.json", "predictions.npz", "pck.png", "fig3_samples.png",
         "fig4_interpolation.png"])
    assert set(paths) == {"metrics", "predictions", "pck", "fig3", "fig4"}
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == metrics
    assert (saved["strategy"], saved["data"], saved["split"], saved["checkpoint"],
            saved["num_samples"]) == ("poe", "synthetic", "test", "run/ckpt-4", 5)
    # Rescoring the saved predictions (evaluate.py --predictions) gives the same numbers.
    rescored, _ = report.score_predictions(paths["predictions"], str(tmp_path / "rescored"))
    for key in ("epe_mean_mm", "epe_median_mm", "auc_0_50", "auc_20_50", "pck"):
        np.testing.assert_allclose(rescored[key], metrics[key], rtol=1e-12)


def test_a_test_split_scored_with_a_sample_twice_and_one_missing_is_refused(tmp_path):
    _, ds = _fake_dataset(index=[0, 1, 1, 3, 4])
    with pytest.raises(ValueError, match=r"scored 5 of the 5 samples of the synthetic test split, "
                                         r"but 1 scored more than once \(indices 1\); 1 not "
                                         r"scored \(indices 2\)"):
        report.evaluate_restored(FakeModel(), "poe", "run/ckpt-4", ds, data="synthetic",
                                 split="test", out_dir=str(tmp_path), split_size=5)
    assert os.listdir(tmp_path) == []


def test_mean_pose_reference_predicts_the_training_mean_in_mm():
    train = np.zeros((2, 21, 3))
    train[0, :, 0], train[1, :, 0] = 1.0, 3.0  # mean: x = 2 bone lengths everywhere
    test = np.ones((3, 21, 3))
    scale = np.array([0.02, 0.03, 0.04])  # metres
    out = mean_pose.mean_pose_predictions(train, test, scale, np.ones((3, 21)))
    np.testing.assert_allclose(out["pred"][:, :, 0], np.repeat([[40.0], [60.0], [80.0]], 21, 1))
    np.testing.assert_allclose(out["pred"][:, :, 1:], 0.0)
    np.testing.assert_allclose(out["gt"][:, 5], [[20.0] * 3, [30.0] * 3, [40.0] * 3])
    assert out["visible"].dtype == np.float32 and out["visible"].shape == (3, 21)
