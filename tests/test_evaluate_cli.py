"""evaluate.py --predictions end to end, and its errors for bad prediction files."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipeline.config import DataConfig
from evaluation import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 21


def _evaluate(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, os.path.join(REPO, "evaluate.py"), *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def _predictions(errors_mm):
    """gt (M, 21, 3) and pred displaced from it along x by `errors_mm` (M, 21)."""
    errors_mm = np.asarray(errors_mm, np.float64)
    gt = np.random.default_rng(0).normal(scale=30.0, size=errors_mm.shape + (3,))
    pred = gt.copy()
    pred[..., 0] += errors_mm
    return pred, gt


def test_scores_a_predictions_file(tmp_path):
    # Sample 0 is 10 mm off everywhere, sample 1 30 mm; keypoint 5 of sample 1 is not visible.
    errors = np.tile([[10.0], [30.0]], (1, K))
    visible = np.ones((2, K))
    visible[1, 5] = 0
    pred, gt = _predictions(errors)
    npz = tmp_path / "method.npz"
    np.savez(npz, pred=pred, gt=gt, visible=visible)
    out = tmp_path / "eval"
    result = _evaluate(f"--predictions={npz}", f"--out={out}")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    # 20 keypoints with errors {10, 30} (mean 20) and keypoint 5 with {10} alone.
    assert metrics["epe_mean_mm"] == pytest.approx((20 * 20.0 + 10.0) / K)
    assert metrics["epe_median_mm"] == pytest.approx((20 * 20.0 + 10.0) / K)
    assert metrics["num_samples"] == 2
    # At t_4 = 10.5 mm: 20 keypoints at 1/2, keypoint 5 at 1.
    assert metrics["pck"][4] == pytest.approx((20 * 0.5 + 1.0) / K)
    assert metrics["pck"][12] == 1.0 and metrics["pck"][3] == 0.0
    assert len(metrics["pck_thresholds_mm"]) == 20
    assert (out / "pck.png").stat().st_size > 0
    assert str(out / "metrics.json") in result.stdout
    # Without an 'index' the rows are taken as distinct samples, unchecked, and that is said.
    assert metrics["indices_checked"] is False
    assert (f"note: {npz} has no 'index' key: each of its 2 rows is taken as a distinct sample, "
            f"which cannot be checked") in result.stdout
    np.savez(npz, pred=pred, gt=gt, visible=visible, index=np.array([3, 8]))
    indexed, _ = report.score_predictions(str(npz), str(tmp_path / "indexed"))
    assert indexed["indices_checked"] is True
    assert indexed["epe_mean_mm"] == metrics["epe_mean_mm"]


def test_missing_key_fails_with_its_name(tmp_path):
    npz = tmp_path / "bad.npz"
    pred, _ = _predictions(np.ones((3, K)))
    np.savez(npz, pred=pred)
    result = _evaluate(f"--predictions={npz}", f"--out={tmp_path / 'eval'}")
    assert result.returncode != 0
    assert "has no key 'gt'" in result.stderr and str(npz) in result.stderr
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_load_predictions_errors_name_the_problem(tmp_path):
    pred, gt = _predictions(np.ones((4, K)))
    cases = {
        "shape.npz": (dict(pred=pred[:, :20], gt=gt), r"key 'pred' has shape \(4, 20, 3\)"),
        "count.npz": (dict(pred=pred, gt=gt[:3]), r"'pred' has shape \(4, 21, 3\) but key 'gt'"),
        "vis.npz": (dict(pred=pred, gt=gt, visible=np.ones((4, 20))),
                    r"key 'visible' has shape \(4, 20\), expected \(4, 21\)"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(ValueError, match=message):
            report.load_predictions(str(tmp_path / name))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.load_predictions(str(tmp_path / "absent.npz"))
    (tmp_path / "text.npz").write_text("not an npz")
    with pytest.raises(ValueError, match="not a readable .npz"):
        report.load_predictions(str(tmp_path / "text.npz"))
    nan = pred.copy()
    nan[2, 0, 0] = np.inf
    np.savez(tmp_path / "nan.npz", pred=nan, gt=gt)
    with pytest.raises(ValueError, match="nan.npz: key 'pred' of sample 2 is not finite at "
                                         "keypoint 0"):
        report.score_predictions(str(tmp_path / "nan.npz"), str(tmp_path / "eval"))
    np.savez(tmp_path / "index.npz", pred=pred, gt=gt, index=np.arange(3))
    with pytest.raises(ValueError, match=r"key 'index' has shape \(3,\), expected \(4,\)"):
        report.load_predictions(str(tmp_path / "index.npz"))


def test_a_predictions_file_scoring_a_sample_twice_is_refused(tmp_path):
    pred, gt = _predictions(np.ones((4, K)))
    npz = tmp_path / "twice.npz"
    np.savez(npz, pred=pred, gt=gt, index=np.array([10, 17, 17, 42]))
    result = _evaluate(f"--predictions={npz}", f"--out={tmp_path / 'eval'}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"error: --predictions: {npz}: key 'index' holds 1 samples more than once "
            f"(indices 17)") in result.stderr
    assert not (tmp_path / "eval").exists()


def test_scored_indices_are_checked_not_their_count():
    # Sample 1 twice and sample 2 missing: five rows for a split of five.
    with pytest.raises(ValueError, match=r"scored 5 of the 5 samples of the rhd test split, but "
                                         r"1 scored more than once \(indices 1\); 1 not scored "
                                         r"\(indices 2\)"):
        report.check_scored_indices([0, 1, 1, 3, 4], 5, data="rhd", split="test")
    many = np.r_[np.arange(10), np.arange(8)]  # 0..7 twice, 10..17 missing
    with pytest.raises(ValueError, match=r"8 scored more than once \(indices 0, 1, 2, 3, 4, "
                                         r"\.\.\.\); 8 not scored \(indices 10, 11, 12, 13, "
                                         r"14, \.\.\.\)"):
        report.check_scored_indices(many, 18, data="rhd", split="test")
    with pytest.raises(ValueError, match=r"1 outside 0\.\.4 \(indices 5\)"):
        report.check_scored_indices([0, 1, 2, 3, 5], 5, data="rhd", split="test")
    # --max_batches may leave samples out, never score one twice.
    assert not report.check_scored_indices([0, 1], 5, data="rhd", split="test", partial=True)
    with pytest.raises(ValueError, match=r"more than once \(indices 1\)"):
        report.check_scored_indices([1, 1], 5, data="rhd", split="test", partial=True)
    # val and train number their samples in the training split: only duplicates are known bad.
    assert report.check_scored_indices([3, 17, 40], 3, data="rhd", split="val")
    assert not report.check_scored_indices([3, 17], 3, data="rhd", split="val")
    with pytest.raises(ValueError, match=r"rhd val split, but 1 scored more than once"):
        report.check_scored_indices([3, 17, 17], 3, data="rhd", split="val")
    assert report.check_scored_indices([4, 2, 0, 1, 3], 5, data="rhd", split="test")


def test_non_finite_predictions_are_refused_naming_the_sample(tmp_path):
    pred, gt = _predictions(np.ones((4, K)))
    pred[1, 7, 2] = np.nan
    pred[3, 0, 0] = -np.inf
    npz = tmp_path / "nan.npz"
    np.savez(npz, pred=pred, gt=gt, index=np.array([10, 17, 23, 42]))
    result = _evaluate(f"--predictions={npz}", f"--out={tmp_path / 'eval'}")
    assert result.returncode != 0
    assert (f"{npz}: key 'pred' of sample 1 (index 17) is not finite at keypoint 7"
            in result.stderr), result.stderr
    assert "2 of 4 samples have non-finite values" in result.stderr
    assert not (tmp_path / "eval" / "metrics.json").exists()
    # The ground truth likewise.
    gt[2, 20, 1] = np.inf
    np.savez(npz, pred=_predictions(np.ones((4, K)))[0], gt=gt)
    with pytest.raises(ValueError, match="key 'gt' of sample 2 is not finite at keypoint 20"):
        report.load_predictions(str(npz))


def test_a_test_split_that_left_out_samples_is_refused():
    meta = {"num_raw": 5, "num_examples": 4, "num_skipped": 1,
            "skipped": [[3, "color/00003.png: cannot be read"]]}
    with pytest.raises(ValueError, match=r"test split has 5 samples but only 4 .*"
                                         r"/cache/x/meta.json.*sample 3: color/00003.png"):
        report.require_every_test_sample(meta, "test", "/cache/x")
    report.require_every_test_sample(meta, "val", "/cache/x")  # training splits may skip
    report.require_every_test_sample(dict(meta, num_examples=5), "test", "/cache/x")


def test_mode_flags_are_checked(tmp_path):
    result = _evaluate(f"--out={tmp_path}")
    assert result.returncode != 0 and "exactly one of --predictions" in result.stderr
    result = _evaluate(f"--predictions={tmp_path / 'p.npz'}")
    assert result.returncode != 0 and "--predictions needs --out" in result.stderr


def test_evaluation_settings_follow_the_run(tmp_path):
    from model import presets, run_config  # pylint: disable=import-outside-toplevel

    data = presets.data_config("cpu", data_dir="/data/synth", view_correction=False,
                               labelled_fraction=0.25, labelled_only=True)
    run = run_config.RunConfig(presets.model_config("cpu", data), data,
                               run_config.TrainConfig())
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    config, out = report.evaluation_settings(run, str(model_dir))
    # The run's data and pre-processing, every sample labelled.
    assert config == dataclasses.replace(data, labelled_fraction=1.0, labelled_only=False)
    assert out == str(model_dir / "eval_test")
    # A checkpoint prefix writes next to it; another data set drops the run's directory but keeps
    # its pre-processing.
    config, out = report.evaluation_settings(run, str(model_dir / "ckpt-8"), data="stb",
                                             split="train")
    assert (config.data, config.data_dir, config.image_size) == ("stb", None, 64)
    assert out == str(model_dir / "eval_train")
    config, out = report.evaluation_settings(run, str(model_dir), data_dir="/elsewhere",
                                             out_dir="o", cache_dir="/c")
    assert (config.data_dir, config.cache_dir, out) == ("/elsewhere", "/c", "o")
    # A weak run of the paired design (Fig. 8): its unlabelled batch has no place in evaluation.
    weak = presets.data_config("cpu", data_dir="/data/synth", labelled_fraction=0.1,
                               unlabelled_batch_size=32)
    run = run_config.RunConfig(presets.model_config("cpu", weak), weak, run_config.TrainConfig())
    config, _ = report.evaluation_settings(run, str(model_dir))
    assert config == dataclasses.replace(weak, labelled_fraction=1.0, unlabelled_batch_size=0)


def test_ckpt_errors_name_the_flag(tmp_path):
    result = _evaluate(f"--ckpt={tmp_path}")
    assert result.returncode != 0
    assert f"error: --ckpt: load_run_config: no checkpoint in {tmp_path}" in result.stderr


@pytest.mark.slow
def test_restored_model_is_evaluated_from_rgb_alone(tmp_path):
    """Mode 2 with the real model: a tiny S4 model saved as train.py does, restored, evaluated."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from model import config as model_config  # pylint: disable=import-outside-toplevel
    from model import run_config, strategies  # pylint: disable=import-outside-toplevel

    cfg = model_config.ModelConfig(
        strategy="poe", image_size=32, latent_dim=8, num_points=16, resnet_widths=(4, 4, 4, 4),
        cloud_widths=(4, 4), pose_hidden=8, heatmap_channels=8, fold_hidden=8)
    tf.keras.utils.set_random_seed(1)
    model = strategies.build_model(cfg)
    # Weights unlike any fresh initialisation, so only a real restore reproduces them.
    for v in model.trainable_variables:
        v.assign_add(tf.random.normal(v.shape, stddev=0.1))
    model_dir = tmp_path / "run"
    checkpoint = tf.train.Checkpoint(model=model).save(str(model_dir / "ckpt"))
    data_cfg = DataConfig(image_size=32, num_points=16)
    run_config.save_run_config(str(model_dir),
                               run_config.RunConfig(cfg, data_cfg, run_config.TrainConfig()))

    restored, run, path = run_config.restore_model(str(model_dir))
    assert path == checkpoint
    rng = np.random.default_rng(0)
    data = {"image": rng.uniform(size=(5, 32, 32, 3)).astype(np.float32),
            "pose": rng.normal(size=(5, K, 3)).astype(np.float32),
            "cloud": rng.normal(size=(5, 16, 3)).astype(np.float32),
            "scale": np.full(5, 0.01, np.float32),
            "visible": np.ones((5, K), np.float32),
            "index": np.arange(5, dtype=np.int64)}
    ds = tf.data.Dataset.from_tensor_slices(data).batch(2)
    evaluated, out_dir = report.evaluation_settings(run, str(model_dir))
    with pytest.raises(ValueError, match="scored 5 of the 6 samples of the synthetic test"):
        report.evaluate_restored(restored, "poe", path, ds, data="synthetic", split="test",
                                 out_dir=out_dir, split_size=6)
    metrics, paths = report.evaluate_restored(
        restored, run.model.strategy, path, ds, data=evaluated.data, split="test", out_dir=out_dir,
        split_size=5, num_figure_samples=2, interpolation_steps=3)
    assert out_dir == str(model_dir / "eval_test")
    assert set(paths) == {"metrics", "predictions", "pck", "fig3", "fig4"}
    assert all(os.path.getsize(p) > 0 for p in paths.values())
    assert (metrics["strategy"], metrics["num_samples"], metrics["checkpoint"]) == (
        "poe", 5, checkpoint)
    assert (metrics["split_size"], metrics["complete"]) == (5, True)
    assert json.loads(open(paths["metrics"]).read())["split_size"] == 5
    # --max_batches scores part of the split, and says so.
    partial, _ = report.evaluate_restored(
        restored, "poe", path, ds, data="synthetic", split="test",
        out_dir=str(tmp_path / "partial"), split_size=5, max_batches=1, num_figure_samples=2,
        interpolation_steps=3)
    assert (partial["num_samples"], partial["split_size"], partial["complete"]) == (2, 5, False)
    # The saved predictions are the trained weights' RGB-only poses (z = mean), in mm.
    with np.load(paths["predictions"]) as saved:
        expected = model.predict_pose(tf.constant(data["image"]), training=False).numpy() * 10.0
        np.testing.assert_allclose(saved["pred"], expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(saved["gt"], data["pose"] * 10.0, rtol=1e-6)


def test_figures_show_samples_that_have_a_cloud():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    def batches(has_cloud):
        count = len(has_cloud)
        return tf.data.Dataset.from_tensor_slices({
            "image": np.zeros((count, 4, 4, 3), np.float32),
            "has_cloud": np.asarray(has_cloud, np.float32),
            "index": np.arange(count, dtype=np.int64)}).batch(2)

    # Test samples may lack depth points; Fig. 3 draws the ground-truth cloud, so it skips them.
    np.testing.assert_array_equal(report._first_samples(batches([0, 1, 0, 1, 1]), 2)["index"],
                                  [1, 3])
    np.testing.assert_array_equal(report._first_samples(batches([0, 0, 0]), 2)["index"], [0, 1])
