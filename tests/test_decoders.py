"""Decoders of model/decoders.py: shapes of SPEC 4 and the FoldingNet construction."""
import numpy as np
import pytest
import tensorflow as tf

from model import decoders


def test_pose_decoder_is_four_fully_connected_layers():
    dec = decoders.PoseDecoder(num_keypoints=21, hidden=128)
    pose = dec(tf.zeros([2, 64]))
    assert pose.shape == (2, 21, 3)
    assert dec.count_params() == (64 * 128 + 128) + 2 * (128 * 128 + 128) + (128 * 63 + 63)
    assert len([v for v in dec.trainable_variables if "kernel" in v.name]) == 4


@pytest.mark.parametrize("image_size, channels, side", [(256, 256, 64), (64, 16, 16)])
def test_heatmap_decoder_upsamples_s_over_32_to_s_over_4(image_size, channels, side):
    dec = decoders.HeatmapDecoder(image_size, num_keypoints=21, channels=channels)
    maps = dec(tf.random.normal([2, 64], seed=0), training=True)
    assert maps.shape == (2, side, side, 21)
    base = image_size // 32
    assert dec.project.kernel.shape == (64, base * base * channels)
    assert [d.kernel.shape[:2] for d in (dec.deconv1, dec.deconv2, dec.deconv3)] == [(5, 5)] * 3


def test_heatmap_decoder_rejects_sizes_it_cannot_reach():
    with pytest.raises(ValueError, match="image_size=48"):
        decoders.HeatmapDecoder(48)


def test_folding_grid_is_16_by_16_on_the_spec_square():
    grid = decoders.folding_grid(256).numpy()
    assert grid.shape == (256, 2)
    np.testing.assert_allclose(grid.min(axis=0), [-0.3, -0.3], rtol=1e-6)
    np.testing.assert_allclose(grid.max(axis=0), [0.3, 0.3], rtol=1e-6)
    assert len(np.unique(grid[:, 0])) == len(np.unique(grid[:, 1])) == 16
    with pytest.raises(ValueError, match="num_points=200"):
        decoders.folding_grid(200)


def test_folding_decoder_shapes_and_the_split_first_layer():
    dec = decoders.FoldingDecoder(num_points=256, hidden=32)
    z = tf.random.normal([2, 8], seed=4)
    cloud = dec(z)
    assert cloud.shape == (2, 256, 3)
    # fold1's first layer equals a dense layer on the concatenation [grid point, z].
    fold = dec.fold1
    kernel = np.concatenate([fold.point_in.kernel.numpy(), fold.latent_in.kernel.numpy()], 0)
    concat = np.concatenate([np.broadcast_to(dec.grid.numpy(), (2, 256, 2)),
                             np.broadcast_to(z.numpy()[:, None], (2, 256, 8))], axis=-1)
    h = np.maximum(concat @ kernel + fold.latent_in.bias.numpy(), 0)
    h = np.maximum(h @ fold.fc2.kernel.numpy() + fold.fc2.bias.numpy(), 0)
    first = h @ fold.fc3.kernel.numpy() + fold.fc3.bias.numpy()
    np.testing.assert_allclose(fold(dec.grid, z).numpy(), first, rtol=1e-4, atol=1e-5)
    # The second fold sees the first fold's points and z.
    assert dec.fold2.point_in.kernel.shape == (3, 32)
    assert dec.fold2.latent_in.kernel.shape == (8, 32)
