r"""Scores 3D hand pose estimates with the standard protocol (SPEC 6) and draws the paper's figures.

Two modes:

  python evaluate.py --ckpt=runs/poe_synthetic_cpu [--data=rhd --data_dir=...] [--split=test]
      Restores a model trained by train.py (a model_dir, or a checkpoint prefix such as
      runs/poe_synthetic_cpu/ckpt-800), predicts every sample of the split from RGB alone
      (z = mean of q(z|R)), and writes into --out (default <model_dir>/eval_<split>):
        metrics.json             EPE mean/median (mm), AUC 0-50 and 20-50, the PCK curve, and
                                 strategy, data, split, checkpoint, num_samples (scored),
                                 split_size and complete (every sample scored, each once)
        predictions.npz          pred, gt (M, 21, 3) mm, visible (M, 21), index (M,): rescoring it
                                 with --predictions gives the same metrics
        pck.png                  the PCK curve
        fig3_samples.png         paper Fig. 3: RGB, GT vs predicted pose, GT vs decoded cloud
        fig4_interpolation.png   paper Fig. 4: decoding along a line between two images' z

  python evaluate.py --predictions=preds.npz --out=DIR
      Scores saved predictions of any method, no model needed: keys pred and gt (M, 21, 3),
      root-relative, in mm, canonical keypoint order; optional visible (M, 21) 0/1 and
      index (M,), each sample at most once. Writes DIR/metrics.json and DIR/pck.png. Without
      index every row is taken as a distinct sample, unchecked: a note says so, and
      metrics.json has indices_checked false.

Every test sample is scored once (SPEC 6): a test split of which any sample could not be
pre-processed is an error, and so is a scoring that missed one of the split's sample indices
(except with --max_batches) or scored one twice (report.check_scored_indices). The test split
is read only here (and by train.py --validate_on=test).

Every file is written under a temporary name and renamed, so a failed run never leaves a
half-written file in place of a good one (evaluation/report.py).
"""
import os
import sys

from common import cli

cli.quiet_tensorflow(sys.argv)

from absl import app, flags  # noqa: E402

from data_pipeline.config import DATASETS, SPLITS  # noqa: E402
from evaluation import report  # noqa: E402

FLAGS = flags.FLAGS
# Test split sizes of the real data sets (SPEC 5): RHD's evaluation set, STB's B1Counting and
# B1Random.
PUBLISHED_TEST_SIZES = {"rhd": 2728, "stb": 3000}
flags.DEFINE_string("predictions", None,
                    "An .npz of saved predictions (keys pred, gt: (M, 21, 3) mm; optional "
                    "visible: (M, 21), index: (M,), each sample once; without index the rows "
                    "are taken as distinct samples, unchecked) to score without a model.")
flags.DEFINE_string("ckpt", None,
                    "A model_dir written by train.py, or a checkpoint prefix inside one.")
flags.DEFINE_enum("data", None, DATASETS,
                  "Data set to evaluate on (default: the one the model was trained on).")
flags.DEFINE_string("data_dir", None,
                    "Data set root (default: the training run's when --data is unchanged, "
                    "else data/<name> in the repository).")
flags.DEFINE_enum("split", "test", SPLITS,
                  "Split to evaluate (val: held out of the training data for validation).")
flags.DEFINE_string("out", None,
                    "Output directory (default for --ckpt: <model_dir>/eval_<split>; "
                    "required with --predictions).")
flags.DEFINE_integer("batch_size", 32, "Evaluation batch size.")
flags.DEFINE_string("cache_dir", None,
                    "Root of the pre-processed data cache (default: the training run's).")
flags.DEFINE_integer("max_batches", 0, "Evaluate only this many batches (0: the whole split).")
flags.DEFINE_integer("num_figure_samples", 4, "Samples (rows) in fig3_samples.png.")
flags.DEFINE_integer("interpolation_steps", 8, "Decoded steps in fig4_interpolation.png.")
cli.define_verbose_flag()


def evaluate_run(model, run, checkpoint: str, ckpt: str, *, data=None, data_dir=None,
                 split: str = "test", out_dir=None, batch_size: int = 32, max_batches=None,
                 num_figure_samples: int = 4, interpolation_steps: int = 8, cache_dir=None):
    """Mode 2: evaluates a restored model (run_config.restore_model(ckpt)) on a split.

    The data set defaults to the run's (its config.json 'data'); pre-processing settings always
    come from the run (report.evaluation_settings).

    Returns:
      (metrics dict, {name: written path}).
    """
    from data_pipeline import cache as cache_lib  # pylint: disable=import-outside-toplevel
    from data_pipeline import dataset as dataset_lib  # pylint: disable=import-outside-toplevel

    data_cfg, out_dir = report.evaluation_settings(run, ckpt, data=data, data_dir=data_dir,
                                                   split=split, out_dir=out_dir,
                                                   cache_dir=cache_dir)
    cache, meta = cache_lib.prepare_cache(data_cfg, split)
    report.require_every_test_sample(meta, split, cache)
    dataset = dataset_lib.dataset_from_cache(cache, meta, data_cfg, batch_size=batch_size,
                                             deterministic=True)
    return report.evaluate_restored(model, run.model.strategy, checkpoint, dataset,
                                    data=data_cfg.data, split=split, out_dir=out_dir,
                                    split_size=meta["num_raw"], max_batches=max_batches,
                                    num_figure_samples=num_figure_samples,
                                    interpolation_steps=interpolation_steps)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    if (FLAGS.predictions is None) == (FLAGS.ckpt is None):
        sys.exit("error: pass exactly one of --predictions=F.npz (score saved predictions) "
                 "or --ckpt=MODEL_DIR (evaluate a trained model)")
    for name in ("batch_size", "num_figure_samples"):
        if getattr(FLAGS, name) <= 0:
            sys.exit(f"error: --{name} must be positive, got {getattr(FLAGS, name)}")
    if FLAGS.interpolation_steps < 2:
        sys.exit(f"error: --interpolation_steps must be at least 2, got "
                 f"{FLAGS.interpolation_steps}")
    if FLAGS.predictions is not None:
        if FLAGS.out is None:
            sys.exit("error: --predictions needs --out=DIR for metrics.json and pck.png")
        try:
            metrics, paths = report.score_predictions(FLAGS.predictions, FLAGS.out)
        except (FileNotFoundError, ValueError) as e:
            cli.exit_with(e, flag="predictions")
        if not metrics["indices_checked"]:
            print(f"note: {FLAGS.predictions} has no 'index' key: each of its "
                  f"{metrics['num_samples']} rows is taken as a distinct sample, which cannot be "
                  f"checked (evaluate.py --ckpt writes the index)")
    else:
        from model import run_config  # pylint: disable=import-outside-toplevel
        try:
            model, run, checkpoint = run_config.restore_model(FLAGS.ckpt)
        except (FileNotFoundError, ValueError) as e:
            cli.exit_with(e, flag="ckpt")
        try:
            metrics, paths = evaluate_run(
                model, run, checkpoint, FLAGS.ckpt, data=FLAGS.data, data_dir=FLAGS.data_dir,
                split=FLAGS.split, out_dir=FLAGS.out, batch_size=FLAGS.batch_size,
                max_batches=FLAGS.max_batches or None,
                num_figure_samples=FLAGS.num_figure_samples,
                interpolation_steps=FLAGS.interpolation_steps, cache_dir=FLAGS.cache_dir)
        except (FileNotFoundError, ValueError) as e:
            # DataError is a ValueError: missing or malformed data sets end here too.
            cli.exit_with(e)
    scored = f"{metrics['num_samples']} samples"
    if "split_size" in metrics:
        scored = (f"{metrics['data']} {metrics['split']}: {metrics['num_samples']} of "
                  f"{metrics['split_size']} samples scored"
                  + ("" if metrics["complete"] else " (partial: --max_batches)"))
        published = PUBLISHED_TEST_SIZES.get(metrics["data"])
        if metrics["split"] == "test" and published not in (None, metrics["split_size"]):
            print(f"note: the published {metrics['data'].upper()} test split has {published:,} "
                  f"samples, this one {metrics['split_size']:,}: its numbers are not comparable "
                  f"with published ones")
    print(f"{scored}: EPE mean {metrics['epe_mean_mm']:.2f} mm, "
          f"median {metrics['epe_median_mm']:.2f} mm, AUC 0-50 {metrics['auc_0_50']:.3f}, "
          f"AUC 20-50 {metrics['auc_20_50']:.3f}")
    for name, path in paths.items():
        print(f"{name}: {os.path.abspath(path)}")


if __name__ == "__main__":
    app.run(main)
