"""Latent operations of model/latent.py against closed forms and independent references."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import integrate, stats

from model import latent


def _rand(seed, shape, scale=1.0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * scale


def test_product_of_experts_matches_the_closed_form_product_of_gaussians():
    mus = [_rand(0, (3, 5)), _rand(1, (3, 5), 2.0)]
    lvs = [_rand(2, (3, 5)), _rand(3, (3, 5))]
    mu, lv = latent.product_of_experts([tf.constant(m) for m in mus],
                                       [tf.constant(v) for v in lvs])
    # Closed form with the N(0, 1) prior expert: precisions add, mean precision-weighted.
    precisions = [np.exp(-v.astype(np.float64)) for v in lvs] + [np.ones((3, 5))]
    means = [m.astype(np.float64) for m in mus] + [np.zeros((3, 5))]
    total = sum(precisions)
    np.testing.assert_allclose(lv.numpy(), -np.log(total), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mu.numpy(), sum(p * m for p, m in zip(precisions, means)) / total,
                               rtol=1e-5, atol=1e-6)


def test_product_of_experts_density_is_the_normalised_product():
    # 1-D check of the product itself: p(z) proportional to prod_i N(z; mu_i, var_i).
    mus, lvs = [0.7, -1.2], [np.log(0.3), np.log(2.0)]
    mu, lv = latent.product_of_experts([tf.constant([[m]]) for m in mus],
                                       [tf.constant([[v]], tf.float32) for v in lvs])
    grid = np.linspace(-6, 6, 4001)
    prod = np.prod([stats.norm.pdf(grid, m, np.exp(v / 2)) for m, v in zip(mus, lvs)], axis=0)
    prod *= stats.norm.pdf(grid)                           # the prior expert
    prod /= integrate.trapezoid(prod, grid)
    expected = stats.norm.pdf(grid, float(mu[0, 0]), float(np.exp(lv[0, 0] / 2)))
    np.testing.assert_allclose(prod, expected, atol=1e-4)


def test_product_of_experts_without_prior_and_stability():
    m = tf.constant([[1.0, -2.0]])
    mu, lv = latent.product_of_experts([m], [tf.constant([[0.3, -0.4]])], include_prior=False)
    np.testing.assert_allclose(mu.numpy(), m.numpy(), rtol=1e-6)
    np.testing.assert_allclose(lv.numpy(), [[0.3, -0.4]], rtol=1e-6)
    # Extreme log-variances: the naive 1 / sum(exp(-lv)) overflows, the stable form does not.
    mu, lv = latent.product_of_experts([tf.constant([[1.0]]), tf.constant([[5.0]])],
                                       [tf.constant([[-120.0]]), tf.constant([[90.0]])])
    assert np.isfinite(mu.numpy()).all() and np.isfinite(lv.numpy()).all()
    np.testing.assert_allclose(mu.numpy(), [[1.0]], rtol=1e-6)
    np.testing.assert_allclose(lv.numpy(), [[-120.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="as many means"):
        latent.product_of_experts([m], [])


def _kl_numeric_1d(mu1, var1, mu2, var2):
    p = stats.norm(mu1, np.sqrt(var1))
    q = stats.norm(mu2, np.sqrt(var2))
    lo, hi = mu1 - 12 * np.sqrt(var1), mu1 + 12 * np.sqrt(var1)
    return integrate.quad(lambda z: p.pdf(z) * (p.logpdf(z) - q.logpdf(z)), lo, hi)[0]


def test_kl_divergence_matches_numerical_integration():
    mu1, lv1, mu2, lv2 = (_rand(s, (2, 3)) for s in range(4))
    kl = latent.kl_divergence(*(tf.constant(x) for x in (mu1, lv1, mu2, lv2))).numpy()
    for b in range(2):
        expected = sum(_kl_numeric_1d(mu1[b, d], np.exp(lv1[b, d]), mu2[b, d], np.exp(lv2[b, d]))
                       for d in range(3))
        assert kl[b] == pytest.approx(expected, rel=1e-4)


def test_kl_to_prior_is_the_kl_to_a_standard_normal():
    mu, lv = _rand(5, (4, 6)), _rand(6, (4, 6))
    kl = latent.kl_to_prior(tf.constant(mu), tf.constant(lv)).numpy()
    np.testing.assert_allclose(
        kl, latent.kl_divergence(mu, lv, np.zeros_like(mu), np.zeros_like(lv)).numpy(),
        rtol=1e-5)
    # Monte-Carlo estimate E_q[log q - log p] on one sample's 6 dimensions.
    rng = np.random.default_rng(7)
    std = np.exp(lv[0] / 2).astype(np.float64)
    z = mu[0] + std * rng.normal(size=(200_000, 6))
    mc = np.mean(np.sum(stats.norm.logpdf(z, mu[0], std) - stats.norm.logpdf(z), axis=1))
    assert kl[0] == pytest.approx(mc, rel=0.02, abs=0.02)
    np.testing.assert_allclose(latent.kl_to_prior(tf.zeros([1, 3]), tf.zeros([1, 3])), [0.0])


def test_gaussian_parameters_bounded_precision_and_no_overflow():
    mu, lv = latent.gaussian_parameters(tf.constant([[3.0, -3.0]]),
                                        tf.constant([[-1e4, 1e4]]))
    np.testing.assert_allclose(mu.numpy(), [[3.0, -3.0]])
    assert float(lv[0, 0]) == pytest.approx(2 * np.log(latent.MIN_STD), rel=1e-4)
    assert float(lv[0, 1]) == pytest.approx(2 * np.log(1e4), rel=1e-4)
    _, lv0 = latent.gaussian_parameters(tf.zeros([1, 1]), tf.zeros([1, 1]))
    assert float(lv0) == pytest.approx(2 * np.log(np.log(2.0) + latent.MIN_STD), rel=1e-5)


def test_sampling_is_reparameterised_and_deterministic_at_inference():
    layer = latent.Sampling()
    mu = tf.fill([20_000, 2], 1.5)
    lv = tf.constant([[np.log(0.25), np.log(4.0)]] * 20_000, tf.float32)
    np.testing.assert_array_equal(layer((mu, lv), training=False).numpy(), mu.numpy())
    tf.random.set_seed(0)
    with tf.GradientTape() as tape:
        tape.watch([mu, lv])
        z = layer((mu, lv), training=True)
        total = tf.reduce_sum(z)
    np.testing.assert_allclose(np.mean(z.numpy(), 0), [1.5, 1.5], atol=0.05)
    np.testing.assert_allclose(np.std(z.numpy(), 0), [0.5, 2.0], rtol=0.03)
    d_mu, d_lv = tape.gradient(total, [mu, lv])
    np.testing.assert_allclose(d_mu.numpy(), 1.0)        # z = mu + std * eps
    eps = (z.numpy() - 1.5) / np.exp(lv.numpy() / 2)
    np.testing.assert_allclose(d_lv.numpy(), 0.5 * np.exp(lv.numpy() / 2) * eps, rtol=1e-4,
                               atol=1e-5)
