"""Encoders of model/encoders.py: ResNet-18 parameter count (SPEC 4), shapes, PEL symmetry."""
import numpy as np
import tensorflow as tf

from model import encoders, latent


def _count(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def test_resnet18_backbone_has_the_parameter_count_of_spec_4():
    backbone = encoders.ResNet18Backbone()
    features = backbone(tf.zeros([1, 32, 32, 3]))
    assert features.shape == (1, 512)
    assert backbone.count_params() == 11_186_112            # with BN moving statistics
    assert _count(backbone.trainable_variables) == 11_176_512
    convs = [v for v in backbone.trainable_variables if "kernel" in v.name]
    assert len(convs) == 1 + 16 + 3                           # stem, 8 blocks x 2, 3 projections


def test_rgb_encoder_shapes_heads_and_initial_posterior():
    enc = encoders.RGBEncoder(latent_dim=8, widths=(8, 16, 16, 32))
    mu, lv = enc(tf.random.uniform([2, 64, 64, 3], seed=1), training=True)
    assert mu.shape == lv.shape == (2, 8)
    assert enc.backbone.output_dim == 32
    heads = enc.heads.trainable_variables
    assert _count(heads) == 2 * (32 * 8 + 8)
    assert not np.allclose(enc.heads.mean.kernel.numpy(), enc.heads.scale.kernel.numpy())
    # Small head initialisation: posteriors start near N(0, softplus(0)^2).
    assert np.abs(mu.numpy()).max() < 1.0
    np.testing.assert_allclose(np.exp(lv.numpy() / 2), np.log(2.0) + latent.MIN_STD, atol=0.2)


def test_permutation_equivariant_layer_formula_and_symmetry():
    pel = encoders.PermutationEquivariant(4)
    x = tf.random.normal([2, 7, 3], seed=2)
    y = pel(x).numpy()
    a, b, bias = (v.numpy() for v in (pel.point_kernel, pel.pool_kernel, pel.bias))
    xn = x.numpy()
    expected = xn @ a - (xn.max(axis=1, keepdims=True) @ b) + bias
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    perm = np.random.default_rng(0).permutation(7)
    np.testing.assert_allclose(pel(tf.gather(x, perm, axis=1)).numpy(), y[:, perm], rtol=1e-5,
                               atol=1e-6)


def test_point_cloud_encoder_is_permutation_invariant():
    enc = encoders.PointCloudEncoder(latent_dim=8, widths=(8, 16))
    cloud = tf.random.normal([2, 32, 3], seed=3)
    mu, lv = enc(cloud, training=False)
    assert mu.shape == lv.shape == (2, 8)
    perm = np.random.default_rng(1).permutation(32)
    mu2, lv2 = enc(tf.gather(cloud, perm, axis=1), training=False)
    np.testing.assert_allclose(mu2.numpy(), mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lv2.numpy(), lv.numpy(), rtol=1e-5, atol=1e-6)
    # Blocks: identity shortcut at the first width, a projection when the width changes.
    assert enc.backbone.blocks[0].project is None and enc.backbone.blocks[1].project is not None


def test_default_respel_widths_are_the_halved_ones():
    enc = encoders.ResPELBackbone()
    assert enc(tf.zeros([1, 16, 3])).shape == (1, 512)
    assert [b.pel1.units for b in enc.blocks] == [64, 128, 256, 512]


def test_joint_encoder_concatenates_rgb_and_cloud_features():
    joint = encoders.JointEncoder(latent_dim=8, rgb_widths=(8, 8, 16, 32), cloud_widths=(8, 16))
    mu, lv = joint(tf.random.uniform([2, 32, 32, 3]), tf.random.normal([2, 20, 3]),
                   training=False)
    assert mu.shape == lv.shape == (2, 8)
    assert joint.heads.mean.kernel.shape == (32 + 16, 8)
