"""Encoders q(z|.) of SPEC 4: ResNet-18 for RGB, ResPEL for point clouds, the joint one of S3.

Each encoder is a feature backbone followed by `GaussianHeads` (two fully connected heads giving
mean and log-variance, see latent.gaussian_parameters).
"""
from typing import Sequence, Tuple

import tensorflow as tf

from model import latent
from model.layers import batch_norm

class GaussianHeads(tf.keras.layers.Layer):
    """Two fully connected heads: features (B, F) -> mu, logvar (B, D).

    Their weights start 10x smaller than a standard fan-in initialisation, so that every
    posterior starts near N(0, 0.48 I) (softplus(0) + MIN_STD squared): otherwise the max-pooled
    point features give initial means of several units and the KL terms (the alignment KL of S3
    above all, thousands of nats) swamp the reconstruction for the first steps.
    """

    def __init__(self, latent_dim: int, **kwargs):
        super().__init__(**kwargs)
        # One initializer instance per layer: a shared unseeded instance gives both the same
        # values.
        def init():
            return tf.keras.initializers.VarianceScaling(scale=0.01, mode="fan_in")
        self.mean = tf.keras.layers.Dense(latent_dim, kernel_initializer=init(), name="mean")
        self.scale = tf.keras.layers.Dense(latent_dim, kernel_initializer=init(), name="scale")

    def call(self, features):
        return latent.gaussian_parameters(self.mean(features), self.scale(features))


class BasicBlock(tf.keras.layers.Layer):
    """ResNet basic block: two 3x3 convolutions with batch norm, identity or 1x1 projection."""

    def __init__(self, filters: int, stride: int = 1, project: bool = False, **kwargs):
        super().__init__(**kwargs)
        conv = dict(padding="same", use_bias=False, kernel_initializer="he_normal")
        self.conv1 = tf.keras.layers.Conv2D(filters, 3, strides=stride, name="conv1", **conv)
        self.bn1 = batch_norm("bn1")
        self.conv2 = tf.keras.layers.Conv2D(filters, 3, name="conv2", **conv)
        self.bn2 = batch_norm("bn2")
        self.project = None
        if project:
            self.project = tf.keras.layers.Conv2D(filters, 1, strides=stride, name="project",
                                                  **conv)
            self.project_bn = batch_norm("project_bn")

    def call(self, x, training=None):
        shortcut = x
        if self.project is not None:
            shortcut = self.project_bn(self.project(x), training=training)
        h = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        h = self.bn2(self.conv2(h), training=training)
        return tf.nn.relu(h + shortcut)


class ResNet18Backbone(tf.keras.layers.Layer):
    """ResNet-18 without its classifier: image (B, S, S, 3) -> global-average-pooled (B, C).

    Stem: 7x7/2 convolution, batch norm, ReLU, 3x3/2 max-pool; then four stages of two basic
    blocks, the first block of stages 2-4 striding by 2 with a 1x1 projection. With the default
    widths (64, 128, 256, 512) and 3 input channels this has 11,176,512 trainable parameters and
    11,186,112 with the batch-norm moving statistics (SPEC 4); C = widths[-1]. Trained from
    scratch: the paper does not say it used ImageNet weights and none can be downloaded here.
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512), **kwargs):
        super().__init__(**kwargs)
        self.stem = tf.keras.layers.Conv2D(widths[0], 7, strides=2, padding="same",
                                           use_bias=False, kernel_initializer="he_normal",
                                           name="stem_conv")
        self.stem_bn = batch_norm("stem_bn")
        self.pool = tf.keras.layers.MaxPool2D(3, strides=2, padding="same")
        self.blocks = []
        for stage, width in enumerate(widths):
            stride = 1 if stage == 0 else 2
            self.blocks.append(BasicBlock(width, stride, project=stage > 0,
                                          name=f"stage{stage + 1}_block1"))
            self.blocks.append(BasicBlock(width, 1, name=f"stage{stage + 1}_block2"))
        self.output_dim = widths[-1]

    def call(self, image, training=None):
        h = tf.nn.relu(self.stem_bn(self.stem(image), training=training))
        h = self.pool(h)
        for block in self.blocks:
            h = block(h, training=training)
        return tf.reduce_mean(h, axis=[1, 2])


class RGBEncoder(tf.keras.layers.Layer):
    """q(z|R): ResNet-18 backbone, global average pool, mean / log-variance heads."""

    def __init__(self, latent_dim: int, widths: Sequence[int] = (64, 128, 256, 512), **kwargs):
        super().__init__(**kwargs)
        self.backbone = ResNet18Backbone(widths, name="resnet18")
        self.heads = GaussianHeads(latent_dim, name="heads")

    def call(self, image, training=None) -> Tuple[tf.Tensor, tf.Tensor]:
        """image (B, S, S, 3) in [0, 1] -> mu, logvar (B, D)."""
        return self.heads(self.backbone(image, training=training))


class PermutationEquivariant(tf.keras.layers.Layer):
    """PEL(x) = x A - 1 maxpool_points(x) B + bias (Li and Lee 2019, after Zaheer et al. 2017).

    (B, N, C) -> (B, N, units); permuting the N points permutes the output the same way.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.point_kernel = self.add_weight(name="A", shape=(channels, self.units),
                                            initializer="he_normal")
        self.pool_kernel = self.add_weight(name="B", shape=(channels, self.units),
                                           initializer="he_normal")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        channels = tf.shape(x)[-1]
        # One (B*N, C) x (C, units) matmul is faster on CPU than a batched one.
        per_point = tf.reshape(tf.matmul(tf.reshape(x, [-1, channels]), self.point_kernel),
                               tf.concat([tf.shape(x)[:-1], [self.units]], axis=0))
        pooled = tf.matmul(tf.reduce_max(x, axis=1), self.pool_kernel)       # (B, units)
        return per_point - pooled[:, tf.newaxis, :] + self.bias


class ResPELBlock(tf.keras.layers.Layer):
    """Residual block of two PELs with batch norm: relu(BN(PEL(relu(BN(PEL(x))))) + shortcut).

    The shortcut is the identity, or a per-point linear projection when the width changes (a
    per-point map keeps the block permutation-equivariant).
    """

    def __init__(self, units: int, project: bool, **kwargs):
        super().__init__(**kwargs)
        self.pel1 = PermutationEquivariant(units, name="pel1")
        self.bn1 = batch_norm("bn1")
        self.pel2 = PermutationEquivariant(units, name="pel2")
        self.bn2 = batch_norm("bn2")
        self.project = (tf.keras.layers.Dense(units, use_bias=False, name="project")
                        if project else None)

    def call(self, x, training=None):
        shortcut = x if self.project is None else self.project(x)
        h = tf.nn.relu(self.bn1(self.pel1(x), training=training))
        h = self.bn2(self.pel2(h), training=training)
        return tf.nn.relu(h + shortcut)


class ResPELBackbone(tf.keras.layers.Layer):
    """ResPEL point-cloud features: cloud (B, N, 3) -> max-pooled (B, widths[-1]).

    A PEL stem to widths[0], one residual block per width, max-pool over points (so the feature
    is permutation-invariant). Li and Lee's blocks are 128..1024 wide; the paper halves the
    hidden widths, hence the default (64, 128, 256, 512). The number of blocks is not given in
    the paper; one per width is our choice.
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512), **kwargs):
        super().__init__(**kwargs)
        self.stem = PermutationEquivariant(widths[0], name="stem_pel")
        self.stem_bn = batch_norm("stem_bn")
        self.blocks = [ResPELBlock(w, project=i > 0 and w != widths[i - 1], name=f"block{i + 1}")
                       for i, w in enumerate(widths)]
        self.output_dim = widths[-1]

    def call(self, cloud, training=None):
        h = tf.nn.relu(self.stem_bn(self.stem(cloud), training=training))
        for block in self.blocks:
            h = block(h, training=training)
        return tf.reduce_max(h, axis=1)


class PointCloudEncoder(tf.keras.layers.Layer):
    """q(z|C): ResPEL backbone and mean / log-variance heads. cloud (B, N, 3) -> (B, D) x 2."""

    def __init__(self, latent_dim: int, widths: Sequence[int] = (64, 128, 256, 512), **kwargs):
        super().__init__(**kwargs)
        self.backbone = ResPELBackbone(widths, name="respel")
        self.heads = GaussianHeads(latent_dim, name="heads")

    def call(self, cloud, training=None) -> Tuple[tf.Tensor, tf.Tensor]:
        return self.heads(self.backbone(cloud, training=training))


class JointEncoder(tf.keras.layers.Layer):
    """q(z|R, C) of S3: [ResNet-18 features, ResPEL features] concatenated -> mean / log-variance
    heads (SPEC 4).

    It has its own ResNet-18, not the one of q(z|R): Algorithm 2 of the paper initialises separate
    parameters for the two encoders, so the joint ELBO's reconstructions train only this encoder,
    and q(z|R) is reached from the joint side through the alignment KL alone.
    """

    def __init__(self, latent_dim: int, rgb_widths: Sequence[int] = (64, 128, 256, 512),
                 cloud_widths: Sequence[int] = (64, 128, 256, 512), **kwargs):
        super().__init__(**kwargs)
        self.rgb_backbone = ResNet18Backbone(rgb_widths, name="resnet18")
        self.cloud_backbone = ResPELBackbone(cloud_widths, name="respel")
        self.heads = GaussianHeads(latent_dim, name="heads")

    def call(self, image, cloud, training=None) -> Tuple[tf.Tensor, tf.Tensor]:
        """image (B, S, S, 3) in [0, 1], cloud (B, N, 3) -> mu, logvar (B, D)."""
        rgb_features = self.rgb_backbone(image, training=training)
        cloud_features = self.cloud_backbone(cloud, training=training)
        return self.heads(tf.concat([rgb_features, cloud_features], axis=-1))
