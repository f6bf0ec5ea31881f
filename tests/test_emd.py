"""Tests of the EMD op (SPEC Eq. 9) against scipy's exact assignment."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from tf_ops import emd

# Float32 distance evaluation adds about 1e-7 relative on top of the bound.
ROUNDING = 1e-6


def _optimum(xyz1, xyz2):
    """Exact Eq. 9 per batch element, float64, by linear_sum_assignment."""
    result = []
    for p, q in zip(xyz1.astype(np.float64), xyz2.astype(np.float64)):
        cost = cdist(p, q)
        rows, cols = linear_sum_assignment(cost)
        result.append(cost[rows, cols].mean() if len(p) else 0.0)
    return np.array(result)


def _matched_mean(xyz1, xyz2, match):
    partner = np.take_along_axis(xyz2.astype(np.float64), match[..., None], 1)
    return np.linalg.norm(xyz1 - partner, axis=-1).mean(axis=-1)


def _assert_permutations(match):
    n = match.shape[1]
    for row in match:
        np.testing.assert_array_equal(np.sort(row), np.arange(n))


def _clouds(batch, n, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.random((batch, n, 3))).astype(np.float32), \
           (scale * rng.random((batch, n, 3))).astype(np.float32)


@pytest.mark.parametrize("n, batch", [(1, 3), (2, 3), (8, 3), (64, 3),
                                      (256, 2), (1024, 1)])
def test_value_matches_exact_assignment(n, batch):
    xyz1, xyz2 = _clouds(batch, n, seed=n)
    distance = emd.earth_mover_distance(xyz1, xyz2).numpy()
    match = emd.emd_match(xyz1, xyz2).numpy()
    optimum = _optimum(xyz1, xyz2)
    assert distance.shape == (batch,) and distance.dtype == np.float32
    assert match.shape == (batch, n) and match.dtype == np.int32
    _assert_permutations(match)
    np.testing.assert_allclose(_matched_mean(xyz1, xyz2, match), distance,
                               rtol=ROUNDING)
    relative = (distance - optimum) / optimum
    assert np.all(relative <= emd.DEFAULT_TOLERANCE + ROUNDING), relative
    assert np.all(relative >= -ROUNDING), relative


@pytest.mark.parametrize("tolerance", [1e-3, 1e-2])
def test_looser_tolerance_keeps_its_bound(tolerance):
    # Millimetre-like coordinates: the bound is relative, so scale-free.
    xyz1, xyz2 = _clouds(4, 128, seed=7, scale=150.0)
    distance = emd.earth_mover_distance(xyz1, xyz2, tolerance=tolerance).numpy()
    relative = (distance - _optimum(xyz1, xyz2)) / _optimum(xyz1, xyz2)
    assert np.all(relative <= tolerance + ROUNDING), relative
    assert np.all(relative >= -ROUNDING), relative


def test_structured_clouds():
    # A shuffled, jittered copy, as a decoder output close to its target.
    rng = np.random.default_rng(3)
    xyz1 = rng.normal(size=(2, 200, 3)).astype(np.float32)
    xyz2 = xyz1[:, rng.permutation(200)] + \
        rng.normal(scale=0.05, size=(2, 200, 3)).astype(np.float32)
    distance = emd.earth_mover_distance(xyz1, xyz2).numpy()
    optimum = _optimum(xyz1, xyz2)
    assert np.all((distance - optimum) / optimum <=
                  emd.DEFAULT_TOLERANCE + ROUNDING)


def test_identical_clouds_give_zero():
    xyz1, _ = _clouds(2, 100, seed=5)
    xyz2 = xyz1[:, ::-1].copy()
    x1, x2 = tf.constant(xyz1), tf.constant(xyz2)
    with tf.GradientTape() as tape:
        tape.watch([x1, x2])
        distance = emd.earth_mover_distance(x1, x2)
    grads = tape.gradient(distance, [x1, x2])
    # Exact for all but a last 1e-6 of the cloud's diagonal (module doc).
    np.testing.assert_allclose(distance.numpy(), 0.0, atol=1e-6 * np.sqrt(3))
    for grad in grads:
        assert np.all(np.isfinite(grad.numpy()))


def test_duplicate_points():
    rng = np.random.default_rng(11)
    base = rng.random((2, 16, 3)).astype(np.float32)
    xyz1 = np.repeat(base, 4, axis=1)
    xyz2 = np.concatenate([base[:, :8]] * 8, axis=1) + np.float32(0.01)
    distance = emd.earth_mover_distance(xyz1, xyz2).numpy()
    match = emd.emd_match(xyz1, xyz2).numpy()
    _assert_permutations(match)
    optimum = _optimum(xyz1, xyz2)
    assert np.all((distance - optimum) / optimum <=
                  emd.DEFAULT_TOLERANCE + ROUNDING)
    np.testing.assert_allclose(_matched_mean(xyz1, xyz2, match), distance,
                               rtol=ROUNDING)


def test_batch_elements_are_independent():
    xyz1, xyz2 = _clouds(3, 50, seed=2)
    batched = emd.earth_mover_distance(xyz1, xyz2).numpy()
    single = emd.earth_mover_distance(xyz1[1:2], xyz2[1:2]).numpy()
    assert single.shape == (1,)
    assert single[0] == batched[1]


def test_zero_and_one_point():
    empty = np.zeros((2, 0, 3), np.float32)
    x = tf.constant(empty)
    with tf.GradientTape() as tape:
        tape.watch(x)
        distance = emd.earth_mover_distance(x, empty)
    np.testing.assert_array_equal(distance.numpy(), [0.0, 0.0])
    assert emd.emd_match(empty, empty).shape == (2, 0)
    assert tape.gradient(distance, x).shape == (2, 0, 3)

    p = np.array([[[0.0, 0.0, 0.0]], [[1.0, 2.0, 2.0]]], np.float32)
    q = np.array([[[3.0, 4.0, 0.0]], [[1.0, 2.0, 2.0]]], np.float32)
    np.testing.assert_allclose(emd.earth_mover_distance(p, q).numpy(), [5, 0])
    np.testing.assert_array_equal(emd.emd_match(p, q).numpy(), [[0], [0]])


def _separated_clouds():
    """Grid points and a shuffled copy jittered by much less than the spacing,
    so that the optimal matching stays put under small perturbations."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(3.0)] * 3), -1).reshape(-1, 3)[:12]
    xyz1 = np.stack([grid, grid + 5.0])
    jitter = rng.uniform(0.1, 0.2, size=xyz1.shape) * \
        rng.choice([-1.0, 1.0], size=xyz1.shape)
    xyz2 = (xyz1 + jitter)[:, rng.permutation(12)]
    return xyz1.astype(np.float32), xyz2.astype(np.float32)


def test_gradient_matches_numeric_differences():
    xyz1, xyz2 = _separated_clouds()
    theoretical, numeric = tf.test.compute_gradient(
        lambda a, b: emd.earth_mover_distance(a, b),
        [tf.constant(xyz1), tf.constant(xyz2)], delta=1e-3)
    for t, n in zip(theoretical, numeric):
        assert np.abs(t).max() > 0.01
        np.testing.assert_allclose(t, n, atol=2e-3)


def test_gradient_formula():
    # SPEC 3: (p - phi(p)) / (N ||p - phi(p)||), the opposite on the partner.
    xyz1, xyz2 = _clouds(2, 32, seed=9)
    x1, x2 = tf.constant(xyz1), tf.constant(xyz2)
    weights = tf.constant([1.0, -2.0])
    with tf.GradientTape() as tape:
        tape.watch([x1, x2])
        loss = tf.reduce_sum(weights * emd.earth_mover_distance(x1, x2))
    grad1, grad2 = tape.gradient(loss, [x1, x2])
    match = emd.emd_match(xyz1, xyz2).numpy()
    diff = xyz1 - np.take_along_axis(xyz2, match[..., None], 1)
    expected1 = weights.numpy()[:, None, None] * diff / (
        32 * np.linalg.norm(diff, axis=-1, keepdims=True))
    expected2 = np.zeros_like(expected1)
    np.put_along_axis(expected2, match[..., None], -expected1, 1)
    np.testing.assert_allclose(grad1.numpy(), expected1, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad2.numpy(), expected2, rtol=1e-5, atol=1e-7)


def test_graph_mode_with_dynamic_shapes():
    xyz1, xyz2 = _clouds(2, 40, seed=4)
    spec = tf.TensorSpec([None, None, 3], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def loss_and_grad(a, b):
        with tf.GradientTape() as tape:
            tape.watch(a)
            loss = tf.reduce_mean(emd.earth_mover_distance(a, b))
        return loss, tape.gradient(loss, a), emd.emd_match(a, b)

    loss, grad, match = loss_and_grad(tf.constant(xyz1), tf.constant(xyz2))
    np.testing.assert_allclose(
        loss.numpy(), emd.earth_mover_distance(xyz1, xyz2).numpy().mean(),
        rtol=1e-6)
    np.testing.assert_array_equal(match.numpy(),
                                  emd.emd_match(xyz1, xyz2).numpy())
    assert np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).max() > 0


@pytest.mark.parametrize("make_strategy", [
    lambda: tf.distribute.OneDeviceStrategy("/cpu:0"),
    lambda: tf.distribute.MirroredStrategy(["/cpu:0"]),
])
def test_under_distribution_strategy(make_strategy):
    xyz1, xyz2 = _clouds(2, 30, seed=6)
    strategy = make_strategy()
    with strategy.scope():
        offset = tf.Variable(tf.zeros([3]))

    @tf.function
    def step(a, b):
        def replica_fn(a, b):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(emd.earth_mover_distance(a + offset, b))
            return loss, tape.gradient(loss, offset)
        return strategy.run(replica_fn, args=(a, b))

    loss, grad = step(tf.constant(xyz1), tf.constant(xyz2))
    loss = strategy.experimental_local_results(loss)[0]
    grad = strategy.experimental_local_results(grad)[0]
    np.testing.assert_allclose(
        loss.numpy(), emd.earth_mover_distance(xyz1, xyz2).numpy().mean(),
        rtol=1e-6)
    assert grad.shape == (3,) and np.all(np.isfinite(grad.numpy()))


@pytest.mark.parametrize("shape1, shape2, dtype", [
    ((4, 3), (4, 3), np.float32),              # rank 2
    ((1, 4, 3, 1), (1, 4, 3, 1), np.float32),  # rank 4
    ((2, 4, 2), (2, 4, 2), np.float32),        # last dimension not 3
    ((2, 4, 3), (2, 5, 3), np.float32),        # unequal N
    ((2, 4, 3), (3, 4, 3), np.float32),        # unequal batch
    ((2, 4, 3), (2, 4, 3), np.float64),        # not float32
])
def test_invalid_inputs(shape1, shape2, dtype):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        emd.earth_mover_distance(np.zeros(shape1, dtype), np.zeros(shape2, dtype))
    assert str(shape1) in error.value.message
    assert str(shape2) in error.value.message


def test_invalid_dynamic_shapes_raise_in_kernel():
    spec = tf.TensorSpec(None, tf.float32)
    distance = tf.function(emd.earth_mover_distance, input_signature=[spec, spec])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[2,4,3\].*\[2,5,3\]"):
        distance(tf.zeros([2, 4, 3]), tf.zeros([2, 5, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[2,4\]"):
        distance(tf.zeros([2, 4]), tf.zeros([2, 4]))


@pytest.mark.slow  # a fresh interpreter imports TensorFlow
def test_import_without_library_says_to_build():
    package = os.path.dirname(emd.__file__)
    with tempfile.TemporaryDirectory() as root:
        os.mkdir(os.path.join(root, "tf_ops"))
        for name in ("__init__.py", "emd.py"):
            shutil.copy(os.path.join(package, name), os.path.join(root, "tf_ops"))
        result = subprocess.run(
            [sys.executable, "-c", "from tf_ops import emd"], cwd=root,
            env=dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3"),
            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "make ops" in result.stderr


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_cloud_gives_nan_at_once(bad):
    """NaN beside inf once made the auction spin forever; now NaN, at once.

    Run in a child process so that a regression fails within 60 s instead of
    hanging the suite.
    """
    code = (
        "import json\n"
        "import numpy as np\n"
        "from tf_ops import emd\n"
        "rng = np.random.default_rng(0)\n"
        "p = rng.random((2, 16, 3)).astype(np.float32)\n"
        "q = rng.random((2, 16, 3)).astype(np.float32)\n"
        f"p[0, 3, 1] = np.float32('{bad}'); q[0, 5, 2] = np.inf\n"
        "d, m = (t.numpy() for t in emd._solve(p, q, emd.DEFAULT_TOLERANCE))\n"
        "print(json.dumps([float(d[0]), float(d[1]), m[0].tolist()]))\n")
    root = os.path.dirname(os.path.dirname(emd.__file__))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, timeout=60,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True,
        text=True, check=True)
    first, second, match = json.loads(result.stdout.splitlines()[-1])
    assert np.isnan(first)
    assert match == list(range(16))
    p, q = _clouds(2, 16, 0)
    np.testing.assert_allclose(second, _optimum(p, q)[1], rtol=1e-4)


def test_nan_cloud_gradient_is_nan():
    p, q = _clouds(1, 8, 1)
    p[0, 2, 0] = np.nan
    p = tf.constant(p)
    with tf.GradientTape() as tape:
        tape.watch(p)
        distance = emd.earth_mover_distance(p, q)
    assert np.isnan(distance.numpy()[0])
    assert np.isnan(tape.gradient(distance, p).numpy()).any()


def test_negative_tolerance_is_refused():
    p, q = _clouds(1, 8, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="tolerance"):
        emd.earth_mover_distance(p, q, tolerance=-1e-3)
