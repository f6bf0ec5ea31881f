"""Tests of the Chamfer distance (SPEC Eq. 8, plain Euclidean)."""
import numpy as np
import pytest
import tensorflow as tf

from tf_ops import chamfer


def _brute_force(xyz1, xyz2):
    """Eq. 8 by explicit loops over the pairs, float64."""
    result = []
    for p, q in zip(xyz1.astype(np.float64), xyz2.astype(np.float64)):
        forward = [min(np.sqrt(np.sum((a - b) ** 2)) for b in q) for a in p]
        backward = [min(np.sqrt(np.sum((a - b) ** 2)) for a in p) for b in q]
        result.append(np.mean(forward) + np.mean(backward))
    return np.array(result)


def test_matches_brute_force_with_unequal_sizes():
    rng = np.random.default_rng(0)
    xyz1 = rng.normal(size=(3, 20, 3)).astype(np.float32)
    xyz2 = rng.normal(size=(3, 13, 3)).astype(np.float32)
    distance = chamfer.chamfer_distance(xyz1, xyz2).numpy()
    assert distance.shape == (3,)
    np.testing.assert_allclose(distance, _brute_force(xyz1, xyz2), rtol=1e-5)


def test_hand_computed_example():
    # P = {0, (3, 4, 0)}, Q = {0}: forward (0 + 5) / 2, backward 0.
    p = np.array([[[0, 0, 0], [3, 4, 0]]], np.float32)
    q = np.array([[[0, 0, 0]]], np.float32)
    np.testing.assert_allclose(chamfer.chamfer_distance(p, q).numpy(), [2.5])


def test_finite_gradient_with_coincident_points():
    rng = np.random.default_rng(1)
    xyz1 = rng.normal(size=(2, 10, 3)).astype(np.float32)
    xyz2 = np.concatenate([xyz1[:, :4], rng.normal(size=(2, 6, 3))],
                          axis=1).astype(np.float32)
    x1, x2 = tf.constant(xyz1), tf.constant(xyz2)
    with tf.GradientTape() as tape:
        tape.watch([x1, x2])
        distance = chamfer.chamfer_distance(x1, x2)
    for grad in tape.gradient(distance, [x1, x2]):
        assert np.all(np.isfinite(grad.numpy()))
    with tf.GradientTape() as tape:
        tape.watch(x1)
        same = chamfer.chamfer_distance(x1, x1)
    np.testing.assert_array_equal(same.numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(tape.gradient(same, x1).numpy(), 0.0)


def test_nan_point_gives_nan_and_coincident_clouds_a_finite_gradient():
    # Element 0: identical clouds (distance 0); element 1: one NaN coordinate.
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(2, 8, 3)).astype(np.float32)
    with_nan = xyz.copy()
    with_nan[1, 2, 1] = np.nan
    for xyz1, xyz2 in ((with_nan, xyz), (xyz, with_nan)):
        x1 = tf.constant(xyz1)
        with tf.GradientTape() as tape:
            tape.watch(x1)
            distance = chamfer.chamfer_distance(x1, tf.constant(xyz2))
            same = distance[0]
        assert same.numpy() == 0.0 and np.isnan(distance[1].numpy())
        np.testing.assert_array_equal(tape.gradient(same, x1)[0].numpy(), 0.0)


def test_gradient_matches_numeric_differences():
    # Grid points and jittered copies: unique nearest neighbours with margin.
    rng = np.random.default_rng(2)
    grid = np.stack(np.meshgrid(*[np.arange(3.0)] * 3), -1).reshape(-1, 3)
    xyz1 = grid[None, :10]
    xyz2 = grid[None, 2:14] + rng.uniform(0.1, 0.2, size=(1, 12, 3))
    theoretical, numeric = tf.test.compute_gradient(
        chamfer.chamfer_distance,
        [tf.constant(xyz1, tf.float64), tf.constant(xyz2, tf.float64)])
    for t, n in zip(theoretical, numeric):
        assert np.abs(t).max() > 0.01
        np.testing.assert_allclose(t, n, atol=1e-6)


@pytest.mark.parametrize("shape1, shape2", [
    ((4, 3), (4, 3)),
    ((2, 4, 2), (2, 4, 2)),
    ((2, 4, 3), (3, 4, 3)),
])
def test_invalid_shapes(shape1, shape2):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        chamfer.chamfer_distance(np.zeros(shape1, np.float32),
                                 np.zeros(shape2, np.float32))
    assert str(shape1) in error.value.message
