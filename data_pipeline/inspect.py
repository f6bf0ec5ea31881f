"""Writes one pre-processed sample to .npz (and optionally a picture), for people and checks.

  python -m data_pipeline.inspect --data=synthetic --data_dir DIR --split=train --index 0 \
      --out sample.npz [--augment] [--png sample.png]

The sample goes through the training pipeline's own code: the reader, preprocess.preprocess, the
cache record (cache.serialize / parse_record) and dataset.model_inputs (cloud sampling,
augmentation, heatmaps). npz keys:
  image (S, S, 3) float32 [0, 1]; heatmaps (S/4, S/4, 21); visible (21,) 0/1;
  pose_cam (21, 3): the dominant hand's keypoints, colour camera frame, metres, canonical order,
    unmirrored; root = pose_cam[12]; scale = |pose_cam[12] - pose_cam[11]| (metres);
  R_view (3, 3): the view rotation, with --augment the augmentation's rotation about the view
    axis folded in, so that pose = R_view (pose_cam - root) / scale holds in every case;
  pose (21, 3), cloud (N, 3): normalised by that same transform (cloud: camera-frame depth
    points, stored as float16 in the cache);
  K (3, 3): intrinsics of the crop in the rotated frame: crop pixel = project(K, R_view X) for a
    camera-frame point X (with --augment, of the augmented crop);
  hand: 'left' or 'right'.
--index counts samples of the reader's split (RHD: after the two known-broken training samples
are dropped).
"""
import os
import sys

from absl import app
from absl import flags
import numpy as np

from common import cli
from data_pipeline import config as data_config
from data_pipeline.sample import SKELETON


def inspect_sample(config, split, index, *, augment=False, seed=0):
    """One sample through the pipeline's code, as the dict of arrays the npz holds (module doc).

    Args:
      config: DataConfig: the data set, its directory and pre-processing.
      split: the data set's own split, 'train' or 'test'.
      index: sample position in that split.
      augment: apply one training augmentation.
      seed: seed of the cloud sample and the augmentation.

    Raises:
      ValueError: index out of range.
      DataError: the data or the sample cannot be used.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from data_pipeline import augment as augment_lib  # pylint: disable=import-outside-toplevel
    from data_pipeline import cache  # pylint: disable=import-outside-toplevel
    from data_pipeline import dataset  # pylint: disable=import-outside-toplevel
    from data_pipeline import geometry  # pylint: disable=import-outside-toplevel
    from data_pipeline import preprocess  # pylint: disable=import-outside-toplevel
    from data_pipeline import splits  # pylint: disable=import-outside-toplevel

    image_size = config.image_size
    reader = splits.open_reader(config.data, split, config.resolved_data_dir)
    if not 0 <= index < len(reader):
        raise ValueError(f"inspect_sample: index={index} is out of range: the {split} split of "
                         f"{config.data} has {len(reader)} samples")
    example = preprocess.preprocess(reader[index], image_size, config.view_correction, seed=index,
                                    keep_incomplete=split == "test")  # as the test cache
    features = cache.parse_record(tf.constant(cache.serialize(example, index)), image_size)
    inputs, params = dataset.model_inputs(
        features, tf.constant([seed, index], tf.int64), image_size=image_size,
        num_points=config.num_points, augment=augment, return_params=True)
    R_view, K = example.R_view, example.K_crop
    if augment:
        R_view = geometry.rot_z(float(params["angle"])) @ R_view
        K = augment_lib.augmented_intrinsics(K, params, image_size)
    return {
        "image": inputs["image"].numpy(), "pose": inputs["pose"].numpy(),
        "pose_cam": example.pose_cam, "cloud": inputs["cloud"].numpy(),
        "heatmaps": inputs["heatmaps"].numpy(), "visible": inputs["visible"].numpy(),
        "K": K, "root": example.root, "scale": np.float64(example.scale), "R_view": R_view,
        "hand": np.array(example.hand),
    }


def save_picture(sample, path):
    """The crop with the skeleton projected from pose_cam, and the cloud with the pose in 3D."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    from data_pipeline import geometry  # pylint: disable=import-outside-toplevel

    uv = geometry.project(sample["K"], sample["pose_cam"] @ sample["R_view"].T)
    fig = plt.figure(figsize=(10, 5))
    ax = fig.add_subplot(1, 2, 1)
    ax.imshow(sample["image"])
    for a, b in SKELETON:
        ax.plot(uv[[a, b], 0], uv[[a, b], 1], "-", color="tab:blue", linewidth=1.5)
    ax.scatter(uv[:, 0], uv[:, 1], s=10, c=np.where(sample["visible"] > 0, "yellow", "red"))
    ax.set_title(f"crop ({sample['hand']} hand), skeleton from pose_cam via K")
    ax.set_axis_off()
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    cloud, pose = sample["cloud"], sample["pose"]
    # Near points red, far points blue, as the paper's Fig. 3.
    ax3.scatter(cloud[:, 0], cloud[:, 1], cloud[:, 2], s=3, c=cloud[:, 2], cmap="jet_r")
    for a, b in SKELETON:
        ax3.plot(pose[[a, b], 0], pose[[a, b], 1], pose[[a, b], 2], "-k", linewidth=1.5)
    ax3.view_init(elev=-90, azim=-90)  # look along +z with y down, as the camera does
    ax3.set_title("cloud and pose (normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def define_flags():
    """The CLI's flags (defined only when run as a program, so importing this module for
    `inspect_sample` never clashes with other entry points' flags)."""
    flags.DEFINE_enum("data", "synthetic", data_config.DATASETS, "Data set.")
    flags.DEFINE_string("data_dir", None, "Data set directory (default: data/<set> in the repo).")
    flags.DEFINE_enum("split", "train", data_config.READER_SPLITS,
                      "The data set's split (train: validation samples included).")
    flags.DEFINE_integer("index", None, "Sample index within the split.", lower_bound=0)
    flags.DEFINE_string("out", None, "Output .npz file.")
    flags.DEFINE_bool("augment", False, "Apply one training augmentation.")
    flags.DEFINE_string("png", None, "Optional picture of the crop, skeleton and cloud.")
    flags.DEFINE_integer("image_size", 256, "Crop side S (multiple of 4).")
    flags.DEFINE_bool("view_correction", True, "Viewpoint correction (paper Fig. 5).")
    flags.DEFINE_integer("num_points", 256, "Cloud points N.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the cloud sample and the augmentation.")
    flags.mark_flags_as_required(["index", "out"])
    cli.define_verbose_flag()


def main(argv):
    FLAGS = flags.FLAGS
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    from data_pipeline.sample import DataError  # pylint: disable=import-outside-toplevel
    try:
        config = data_config.DataConfig(data=FLAGS.data, data_dir=FLAGS.data_dir,
                                        image_size=FLAGS.image_size,
                                        view_correction=FLAGS.view_correction,
                                        num_points=FLAGS.num_points)
        sample = inspect_sample(config, FLAGS.split, FLAGS.index, augment=FLAGS.augment,
                                seed=FLAGS.seed)
    except (DataError, ValueError) as e:
        cli.exit_with(e)
    for path in (FLAGS.out, FLAGS.png):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(FLAGS.out, **sample)
    print(f"wrote {FLAGS.out}")
    if FLAGS.png:
        save_picture(sample, FLAGS.png)
        print(f"wrote {FLAGS.png}")


if __name__ == "__main__":
    cli.quiet_tensorflow(sys.argv)
    define_flags()
    app.run(main)
