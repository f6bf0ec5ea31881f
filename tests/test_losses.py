"""Eqs. 7-11 of model/losses.py against numpy / scipy references."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize, spatial

from model import losses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def _rand(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_pose_error_is_the_norm_of_the_63_vector():
    pred, gt = _rand(0, (3, 21, 3)), _rand(1, (3, 21, 3))
    expected = np.linalg.norm((pred - gt).reshape(3, 63), axis=1)
    np.testing.assert_allclose(losses.pose_error(pred, gt).numpy(), expected, rtol=1e-5)


def test_pose_error_gradient_is_finite_at_a_perfect_prediction():
    gt = tf.constant(_rand(2, (2, 21, 3)))
    pred = tf.Variable(gt)
    with tf.GradientTape() as tape:
        err = tf.reduce_sum(losses.pose_error(pred, gt))
    grad = tape.gradient(err, pred).numpy()
    assert float(err) == 0.0 and np.all(grad == 0.0)


def test_heatmap_error_sums_frobenius_norms_over_keypoints():
    pred, gt = _rand(3, (2, 8, 8, 21)), _rand(4, (2, 8, 8, 21))
    diff = pred - gt
    expected = np.array([sum(np.linalg.norm(diff[b, :, :, j], "fro") for j in range(21))
                         for b in range(2)])
    np.testing.assert_allclose(losses.heatmap_error(pred, gt).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("error, shape", [(losses.pose_error, (2, 21, 3)),
                                          (losses.heatmap_error, (2, 8, 8, 21))])
def test_nan_gives_a_nan_error_and_zero_distance_a_finite_gradient(error, shape):
    """Sample 0 is a perfect prediction, sample 1 has one NaN value: its error must be NaN (a
    NaN prediction is never a perfect score), while sample 0 keeps a zero error whose gradient
    is finite (zero), not 0 / 0."""
    gt = tf.constant(_rand(9, shape))
    nan = np.zeros(shape, np.float32)
    nan[(1,) + (0,) * (len(shape) - 1)] = np.nan
    for pred, target in ((gt + nan, gt), (gt, gt + nan)):
        pred = tf.Variable(pred)
        with tf.GradientTape() as tape:
            err = error(pred, target)
            perfect = err[0]
        assert float(perfect) == 0.0 and np.isnan(float(err[1]))
        grad = tape.gradient(perfect, pred).numpy()
        np.testing.assert_array_equal(grad[0], 0.0)
    assert np.isnan(float(losses.reconstruction_terms({"pose": err}, 0.01, 1.0)["recon"]))


def test_masked_mean_and_reconstruction_terms_with_weak_supervision():
    errors = {"pose": tf.constant([1.0, 3.0, 100.0]), "heatmap": tf.constant([10.0, 20.0, 1e4]),
              "chamfer": tf.constant([0.1, 0.2, 0.3]), "emd": tf.constant([0.4, 0.5, 0.6])}
    labelled = tf.constant([1.0, 1.0, 0.0])
    terms = losses.reconstruction_terms(errors, lambda_heat=0.01, lambda_cloud=2.0,
                                        labelled=labelled)
    # The unlabelled sample is left out of pose and heatmap, not of the cloud terms.
    expected = {"pose": 2.0, "heatmap": 15.0, "chamfer": 0.2, "emd": 0.5}
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(value, rel=1e-6)
    assert float(terms["recon"]) == pytest.approx(2.0 + 0.01 * 15.0 + 2.0 * (0.2 + 0.5))
    none = losses.reconstruction_terms({"pose": tf.constant([5.0])}, 0.01, 1.0,
                                       labelled=tf.zeros([1]))
    assert sorted(none) == ["pose", "recon"] and float(none["recon"]) == 0.0
    all_ = losses.reconstruction_terms({"pose": tf.constant([5.0, 7.0])}, 0.01, 1.0)
    assert float(all_["pose"]) == 6.0


def test_per_sample_errors_reject_mismatched_shapes():
    preds = {"pose": tf.zeros([2, 21, 3]), "heatmaps": tf.zeros([2, 16, 16, 21])}
    targets = {"pose": tf.zeros([2, 21, 3]), "heatmaps": tf.zeros([2, 8, 8, 21])}
    with pytest.raises(ValueError, match="heatmaps.*image_size"):
        losses.per_sample_errors(preds, targets)
    with pytest.raises(ValueError, match="no 'heatmaps'"):
        losses.per_sample_errors(preds, {"pose": targets["pose"]})


def test_cloud_errors_match_scipy_references():
    pred, gt = _rand(5, (2, 32, 3)), _rand(6, (2, 32, 3))
    errors = losses.per_sample_errors({"pose": tf.zeros([2, 21, 3]), "cloud": tf.constant(pred)},
                                      {"pose": tf.zeros([2, 21, 3]), "cloud": tf.constant(gt)})
    for b in range(2):
        dist = spatial.distance.cdist(pred[b], gt[b])
        chamfer = dist.min(axis=1).mean() + dist.min(axis=0).mean()
        rows, cols = optimize.linear_sum_assignment(dist)
        assert float(errors["chamfer"][b]) == pytest.approx(chamfer, rel=1e-5)
        assert float(errors["emd"][b]) == pytest.approx(dist[rows, cols].mean(), rel=1e-3)


def test_cloud_errors_have_gradients():
    pred = tf.Variable(_rand(7, (2, 16, 3)))
    gt = tf.constant(_rand(8, (2, 16, 3)))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(losses.chamfer_error(pred, gt) + losses.emd_error(pred, gt))
    grad = tape.gradient(total, pred)
    assert grad is not None and np.isfinite(grad.numpy()).all()
    assert np.abs(grad.numpy()).sum() > 0


@pytest.mark.slow
def test_a_missing_op_fails_the_cloud_tests_rather_than_skipping_them(tmp_path):
    """`make test` builds the EMD op first, so a missing op is a fault to report, never a skip.

    Runs a cloud test of this file and of test_strategies.py in a copy of the sources that has
    no tf_ops/build, as a fresh clone before `make ops` has.
    """
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "data", "runs", "results", "build", "__pycache__", ".pytest_cache"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs",
         "tests/test_losses.py::test_cloud_errors_have_gradients",
         "tests/test_strategies.py::test_gradients_reach_every_trainable_variable[extended_cloud]"],
        cwd=copy, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    out = result.stdout + result.stderr
    assert result.returncode == 1 and "2 failed" in out and "skipped" not in out, out[-3000:]
    assert "libemd_ops.so is not built; run `make ops`" in out, out[-3000:]
