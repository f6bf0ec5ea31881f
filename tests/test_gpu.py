"""The GPU path (docs/environment.md, Running on a GPU): the EMD op's CUDA kernel against its CPU
kernel, and one training step of each strategy on the GPU.

The tests marked `gpu` run where TensorFlow sees a GPU and skip, saying so, elsewhere (the
machines of the test suite's CI have none). Each compares through a helper that takes the device
as an argument; the helper's CPU half runs everywhere, so what the GPU tests check is itself
checked here.
"""
import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from model import training
from model.run_config import TrainConfig
from tests.test_strategies import CASES, _batch
from tf_ops import emd

GPUS = tf.config.list_physical_devices("GPU")
needs_gpu = pytest.mark.skipif(
    not GPUS, reason="TensorFlow sees no GPU (install tensorflow[and-cuda]==2.15.1 on a machine "
                     "with an NVIDIA GPU; docs/environment.md, Running on a GPU)")
# Both kernels certify (returned - optimum) / optimum <= 1e-4; float32 distances add ~1e-7.
TOLERANCE = emd.DEFAULT_TOLERANCE + 1e-6


def emd_on(device, xyz1, xyz2, weights):
    """The op's distance, matching and the gradients of sum(weights * distance), on `device`.

    Returns:
      (distance (B,), match (B, N) int32, d/dxyz1 (B, N, 3), d/dxyz2 (B, N, 3), the device that
      ran the op as TensorFlow names it).
    """
    with tf.device(device):
        a, b = tf.constant(xyz1), tf.constant(xyz2)
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            distance = emd.earth_mover_distance(a, b)
            weighted = tf.reduce_sum(distance * weights)
        grad1, grad2 = tape.gradient(weighted, [a, b])
        match = emd.emd_match(a, b)
    return (distance.numpy(), match.numpy(), grad1.numpy(), grad2.numpy(), distance.device)


def _closed_form_gradients(xyz1, xyz2, match, weights):
    """SPEC 3's gradient for a fixed matching phi: w (p - phi(p)) / (N ||p - phi(p)||) on p,
    the opposite on phi(p), in float64."""
    n = xyz1.shape[1]
    partner = np.take_along_axis(xyz2.astype(np.float64), match[..., None], 1)
    diff = xyz1 - partner
    length = np.linalg.norm(diff, axis=-1, keepdims=True)
    grad1 = weights[:, None, None] * diff / (n * np.where(length > 0, length, 1.0))
    grad2 = np.zeros_like(grad1)
    for b in range(len(match)):
        grad2[b, match[b]] = -grad1[b]
    return grad1, grad2


def _check_kernel(device, n=256, batch=4, seed=0):
    """The op on `device`: it runs there, returns permutations whose mean cost is the distance,
    within the tolerance of scipy's optimum, with the closed-form gradients of its matching."""
    rng = np.random.default_rng(seed)
    xyz1, xyz2 = rng.random((2, batch, n, 3)).astype(np.float32)
    weights = rng.uniform(0.5, 2.0, batch).astype(np.float32)
    distance, match, grad1, grad2, ran_on = emd_on(device, xyz1, xyz2, weights)
    kind = tf.DeviceSpec.from_string(device).device_type
    assert tf.DeviceSpec.from_string(ran_on).device_type == kind, (
        f"the op ran on {ran_on}, not on {device}: build tf_ops with nvcc for its GPU kernel")
    for row in match:
        np.testing.assert_array_equal(np.sort(row), np.arange(n))
    partner = np.take_along_axis(xyz2.astype(np.float64), match[..., None], 1)
    np.testing.assert_allclose(np.linalg.norm(xyz1 - partner, axis=-1).mean(-1), distance,
                               rtol=1e-6)
    optimum = []
    for p, q in zip(xyz1.astype(np.float64), xyz2.astype(np.float64)):
        cost = cdist(p, q)
        optimum.append(cost[linear_sum_assignment(cost)].mean())
    assert np.all((distance - optimum) / optimum <= TOLERANCE)
    expected1, expected2 = _closed_form_gradients(xyz1, xyz2, match, weights)
    np.testing.assert_allclose(grad1, expected1, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grad2, expected2, rtol=1e-4, atol=1e-7)
    return xyz1, xyz2, weights, distance


def test_the_kernel_check_holds_on_the_cpu_and_names_the_device_that_ran_the_op():
    _check_kernel("/CPU:0")
    rng = np.random.default_rng(1)
    xyz = rng.random((2, 1, 8, 3)).astype(np.float32)
    assert "CPU:0" in emd_on("/CPU:0", xyz[0], xyz[1], np.ones(1, np.float32))[4]


@pytest.mark.skipif(bool(GPUS), reason="shows the check failing where no GPU can run the op")
def test_the_kernel_check_fails_when_the_op_falls_back_to_the_cpu():
    with pytest.raises(AssertionError, match="build tf_ops with nvcc"):
        _check_kernel("/GPU:0", n=8, batch=1)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("n", [1, 33, 256, 1024])
def test_the_gpu_kernel_equals_the_cpu_kernel(n):
    xyz1, xyz2, weights, on_gpu = _check_kernel("/GPU:0", n=n, seed=n)
    on_cpu = emd_on("/CPU:0", xyz1, xyz2, weights)[0]
    # Both are certified near the optimum, not bit-equal: the GPU's auction is Jacobi (all
    # unassigned persons bid at once), the CPU's Gauss-Seidel.
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=2 * TOLERANCE)


def one_step(name, device, tmp_dir):
    """One update of the `fit` loop for CASES[name] under a OneDeviceStrategy on `device`.

    Returns:
      (losses as floats, whether the update was applied, the trainable variables that did not
      change, the devices that hold the variables).
    """
    trainer = training.Trainer(CASES[name], TrainConfig.from_preset("cpu", seed=0), tmp_dir,
                               distribution=tf.distribute.OneDeviceStrategy(device))
    before = [v.numpy() for v in trainer.model.trainable_variables]
    losses, applied = trainer.update(_batch())
    unchanged = [v.name for v, old in zip(trainer.model.trainable_variables, before)
                 if np.array_equal(v.numpy(), old)]
    devices = {tf.DeviceSpec.from_string(v.device).device_type
               for v in trainer.model.trainable_variables}
    return {k: float(v) for k, v in losses.items()}, applied, unchanged, devices


def _check_step(name, device, tmp_dir):
    losses, applied, unchanged, devices = one_step(name, device, tmp_dir)
    assert applied and all(np.isfinite(v) for v in losses.values()), losses
    assert unchanged == []
    assert devices == {tf.DeviceSpec.from_string(device).device_type}


def test_the_step_check_holds_on_the_cpu(tmp_path):
    _check_step("poe", "/cpu:0", str(tmp_path))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("name", list(CASES))
def test_one_training_step_of_each_strategy_on_the_gpu(name, tmp_path):
    _check_step(name, "/gpu:0", str(tmp_path))
