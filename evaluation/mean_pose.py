r"""The mean-pose reference: every test sample gets the training set's mean normalised pose.

  python -m evaluation.mean_pose --data=synthetic --out=mean_pose.npz
  python evaluate.py --predictions=mean_pose.npz --out=DIR

It sees no image, so any model that learned something from RGB must beat its EPE; a short run that
does not is still near the start of training. The output is a predictions .npz in evaluate.py's
format (pred, gt (M, 21, 3) root-relative mm; visible (M, 21)). Poses are read without
augmentation from the same cache as training (crop size does not change them; viewpoint
correction does, so it is a flag).
"""
import os
import sys
from typing import Dict

from common import cli

cli.quiet_tensorflow(sys.argv)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from data_pipeline import dataset  # noqa: E402
from data_pipeline.config import DATASETS, SPLITS, DataConfig  # noqa: E402
from evaluation import inference, report  # noqa: E402


def mean_pose_predictions(train_pose: np.ndarray, test_pose: np.ndarray, test_scale: np.ndarray,
                          test_visible: np.ndarray) -> Dict[str, np.ndarray]:
    """Predicts the mean training pose for every test sample, in mm.

    Args:
      train_pose: (M_train, 21, 3) normalised training poses (root-relative, divided by scale).
      test_pose: (M, 21, 3) normalised test poses.
      test_scale: (M,) the test samples' scales in metres.
      test_visible: (M, 21) 0/1 visibility.

    Returns:
      dict with pred, gt (M, 21, 3) root-relative mm and visible (M, 21) float32.
    """
    mean = np.mean(np.asarray(train_pose, np.float64), axis=0)
    test_pose = np.asarray(test_pose, np.float64)
    return {"pred": inference.to_mm(np.broadcast_to(mean, test_pose.shape), test_scale),
            "gt": inference.to_mm(test_pose, test_scale),
            "visible": np.asarray(test_visible, np.float32)}


def _read_poses(config, split):
    """(pose (M, 21, 3), scale (M,), visible (M, 21)) of a split, unaugmented, as numpy."""
    parts = {"pose": [], "scale": [], "visible": []}
    for batch in dataset.build_dataset(config, split, batch_size=256):
        for key, values in parts.items():
            values.append(batch[key].numpy())
    return tuple(np.concatenate(parts[key]) for key in ("pose", "scale", "visible"))


def define_flags():
    """The CLI's flags (defined only when run as a program, so importing this module never clashes
    with other entry points' flags)."""
    flags.DEFINE_enum("data", "synthetic", DATASETS, "Data set.")
    flags.DEFINE_string("data_dir", None, "Data set root (default: data/<name> in the repository).")
    flags.DEFINE_string("cache_dir", None, "Root of the pre-processed data cache "
                        "(default: data/cache in the repository).")
    flags.DEFINE_enum("split", "test", SPLITS,
                      "Split to predict (the mean pose comes from train, which excludes val).")
    flags.DEFINE_integer("image_size", 64, "Crop size of the cache to read (poses do not "
                         "depend on it; pick one that is already cached).")
    flags.DEFINE_boolean("view_correction", True, "Poses in the viewpoint-corrected frame.")
    flags.DEFINE_string("out", None, "The predictions .npz to write.")
    flags.mark_flag_as_required("out")
    cli.define_verbose_flag()


def main(argv):
    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.out.endswith(".npz"):
        sys.exit(f"error: --out must name an .npz file, got {FLAGS.out!r}")
    try:
        config = DataConfig(data=FLAGS.data, data_dir=FLAGS.data_dir, cache_dir=FLAGS.cache_dir,
                            image_size=FLAGS.image_size, view_correction=FLAGS.view_correction)
        train_pose, _, _ = _read_poses(config, "train")
        predictions = mean_pose_predictions(train_pose, *_read_poses(config, FLAGS.split))
    except ValueError as e:  # DataError is a ValueError: a missing or malformed data set
        cli.exit_with(e)
    if os.path.dirname(FLAGS.out):
        os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
    report.write_predictions(predictions, FLAGS.out)
    print(f"mean pose of {len(train_pose)} training samples -> {len(predictions['pred'])} "
          f"{FLAGS.split} predictions: {FLAGS.out}")
    print(f"score with: python evaluate.py --predictions={FLAGS.out} --out=DIR")


if __name__ == "__main__":
    define_flags()
    app.run(main)
