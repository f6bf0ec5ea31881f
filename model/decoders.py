"""Decoders p(.|z) of SPEC 4: pose (fully connected), heatmaps (DC-GAN), point cloud (FoldingNet).

All take z (B, D). They are shared by every latent a strategy decodes.
"""
import math

import tensorflow as tf

from data_pipeline.sample import NUM_KEYPOINTS
from model.layers import batch_norm

# FoldingNet's fixed 2D grid spans [-GRID_EXTENT, GRID_EXTENT]^2 (SPEC 4).
GRID_EXTENT = 0.3


class PoseDecoder(tf.keras.layers.Layer):
    """4 fully connected layers (3 hidden of `hidden` units with ReLU, one linear output).

    z (B, D) -> normalised root-relative pose (B, K, 3).
    """

    def __init__(self, num_keypoints: int = NUM_KEYPOINTS, hidden: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.num_keypoints = num_keypoints
        self.hidden = [tf.keras.layers.Dense(hidden, activation="relu", name=f"fc{i + 1}")
                       for i in range(3)]
        self.out = tf.keras.layers.Dense(num_keypoints * 3, name="fc4")

    def call(self, z):
        h = z
        for layer in self.hidden:
            h = layer(h)
        return tf.reshape(self.out(h), [-1, self.num_keypoints, 3])


class HeatmapDecoder(tf.keras.layers.Layer):
    """DC-GAN generator: z -> (S/32)^2 x C map -> three 5x5 stride-2 transposed convs -> S/4.

    Dense projection with batch norm and ReLU, then transposed convolutions to C/2 and C/4
    channels (batch norm + ReLU after each) and a last one to K heatmaps with a linear output
    (targets are Gaussians peaking at 1). For S = 256: 8x8x256 -> 16 -> 32 -> 64x64x21.
    z (B, D) -> (B, S/4, S/4, K).
    """

    def __init__(self, image_size: int, num_keypoints: int = NUM_KEYPOINTS, channels: int = 256,
                 **kwargs):
        super().__init__(**kwargs)
        if image_size % 32:
            raise ValueError(f"HeatmapDecoder: image_size={image_size} must be a multiple of 32")
        self.base = image_size // 32
        self.channels = channels
        self.project = tf.keras.layers.Dense(self.base * self.base * channels, use_bias=False,
                                             name="project")
        self.project_bn = batch_norm("project_bn")
        deconv = dict(kernel_size=5, strides=2, padding="same")
        self.deconv1 = tf.keras.layers.Conv2DTranspose(channels // 2, use_bias=False,
                                                       name="deconv1", **deconv)
        self.bn1 = batch_norm("bn1")
        self.deconv2 = tf.keras.layers.Conv2DTranspose(channels // 4, use_bias=False,
                                                       name="deconv2", **deconv)
        self.bn2 = batch_norm("bn2")
        self.deconv3 = tf.keras.layers.Conv2DTranspose(num_keypoints, name="deconv3", **deconv)

    def call(self, z, training=None):
        h = tf.nn.relu(self.project_bn(self.project(z), training=training))
        h = tf.reshape(h, [-1, self.base, self.base, self.channels])
        h = tf.nn.relu(self.bn1(self.deconv1(h), training=training))
        h = tf.nn.relu(self.bn2(self.deconv2(h), training=training))
        return self.deconv3(h)


class FoldingMLP(tf.keras.layers.Layer):
    """One FoldingNet fold: MLP (hidden, hidden, 3) on [points, z] for every point.

    The first layer on the concatenation [p, z] is computed as p W_p + z W_z + b, identical to a
    dense layer on the concatenation, so that z W_z is computed once per sample instead of once
    per point (and, for the grid, p W_p once per batch).
    """

    def __init__(self, hidden: int = 512, **kwargs):
        super().__init__(**kwargs)
        self.point_in = tf.keras.layers.Dense(hidden, use_bias=False, name="fc1_points")
        self.latent_in = tf.keras.layers.Dense(hidden, name="fc1_latent")
        self.fc2 = tf.keras.layers.Dense(hidden, activation="relu", name="fc2")
        self.fc3 = tf.keras.layers.Dense(3, name="fc3")

    def call(self, points, z):
        """points (B, N, P) or (N, P) shared by the batch, z (B, D) -> (B, N, 3)."""
        h = tf.nn.relu(self.point_in(points) + self.latent_in(z)[:, tf.newaxis, :])
        return self.fc3(self.fc2(h))


def folding_grid(num_points: int, extent: float = GRID_EXTENT) -> tf.Tensor:
    """The fixed square grid, (num_points, 2) float32, row-major on [-extent, extent]^2."""
    side = math.isqrt(num_points)
    if side * side != num_points:
        raise ValueError(f"folding_grid: num_points={num_points} is not a perfect square")
    axis = tf.linspace(-extent, extent, side)
    u, v = tf.meshgrid(axis, axis, indexing="ij")
    return tf.reshape(tf.stack([u, v], axis=-1), [num_points, 2])


class FoldingDecoder(tf.keras.layers.Layer):
    """FoldingNet decoder: a fixed 16x16 grid folded twice, conditioned on z (SPEC 4).

    fold1 = MLP([grid, z]), fold2 = MLP([fold1, z]). z (B, D) -> cloud (B, N, 3).
    """

    def __init__(self, num_points: int = 256, hidden: int = 512, **kwargs):
        super().__init__(**kwargs)
        self.grid = folding_grid(num_points)
        self.fold1 = FoldingMLP(hidden, name="fold1")
        self.fold2 = FoldingMLP(hidden, name="fold2")

    def call(self, z):
        first = self.fold1(self.grid, z)
        return self.fold2(first, z)
