r"""Trains one of the paper's four alignment strategies (S1-S4, Eqs. 1-4).

  python train.py --strategy=poe --data=synthetic --preset=cpu
  python train.py --strategy=kl --data=stb          # STB in data/STB, or pass --data_dir
  python train.py --strategy=extended --decoders=heatmap,cloud --data=rhd --preset=paper

Re-running the same command resumes from the newest checkpoint in --model_dir.
Open TensorBoard on --model_dir to see every loss term, beta, the learning rate and validation EPE.
Validation (plateaus, convergence, the TensorBoard curve) uses the 'val' split carved out of the
training data (data_pipeline/splits.py); the test split is not read unless --validate_on=test.
"""
import os
import sys

from common import cli

cli.quiet_tensorflow(sys.argv)

from absl import app, flags  # noqa: E402

from data_pipeline.config import DATASETS, VALIDATION_SPLITS, default_data_dir  # noqa: E402
from model.config import DISTRIBUTIONS, OPTIONAL_DECODERS, STRATEGIES  # noqa: E402
from model import presets  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("strategy", "poe", STRATEGIES,
                  "S1 cvae (Eq. 1), S2 extended decoders (Alg. 1), S3 kl alignment (Eq. 3), "
                  "S4 poe product of Gaussian experts (Eq. 4).")
flags.DEFINE_list("decoders", list(OPTIONAL_DECODERS),
                  "For --strategy=extended: extra decoders besides pose (any of "
                  f"{', '.join(OPTIONAL_DECODERS)}).")
flags.DEFINE_enum("data", "synthetic", DATASETS,
                  "Data set; synthetic is generated under data/ on first use.")
flags.DEFINE_string("data_dir", None, "Data set root (default: data/<name> in the repository).")
flags.DEFINE_string("cache_dir", None,
                    "Root of the pre-processed data cache (default: data/cache in the repository).")
flags.DEFINE_string("model_dir", None,
                    "Checkpoints, config.json and TensorBoard logs "
                    "(default: runs/<strategy>_<data>_<preset>).")
flags.DEFINE_enum("preset", "cpu", presets.NAMES,
                  "paper: SPEC hyper-parameters and widths at 256 px, batch 32; experiment: the "
                  "CPU-scale regime of the experiments (quarter widths, 64 px, 64 points, Adam "
                  "1e-3); cpu: the same regime with the demo's shorter budget; smoke: seconds, "
                  "for tests (docs/training.md, Presets).")
flags.DEFINE_float("width", None, "Override the preset's network width multiplier (1 is the "
                   "paper's widths; it scales every encoder and decoder).")
flags.DEFINE_integer("num_points", None, "Override the preset's points per cloud (a perfect "
                     "square; the paper's is 256).")
flags.DEFINE_integer("image_size", None, "Override the preset's crop size (pixels).")
flags.DEFINE_integer("batch_size", None, "Override the preset's batch size.")
flags.DEFINE_integer("max_steps", None, "Override the preset's number of steps.")
flags.DEFINE_float("learning_rate", None, "Override the preset's initial Adam learning rate.")
flags.DEFINE_enum("lr_schedule", None, presets.LR_SCHEDULES,
                  "Override the preset's learning-rate schedule: plateau decays x0.1 on validation "
                  "plateaus (the paper; preset paper), fixed at --lr_decay_fractions of the steps "
                  "(the CPU regime; presets experiment and cpu).")
flags.DEFINE_list("lr_decay_fractions", None,
                  "With a fixed schedule: override the fractions of --max_steps at which the "
                  "learning rate decays x0.1 (increasing, in (0, 1); e.g. 0.7,0.9).")
flags.DEFINE_boolean("view_correction", True, "Rotate the camera onto the hand (paper Fig. 5).")
flags.DEFINE_float("labelled_fraction", 1.0,
                   "Weak supervision (paper Fig. 8): the first fraction of training samples keep "
                   "their 3D pose, the rest train with RGB and point cloud only, cropped, "
                   "centred and scaled without their 3D label.")
flags.DEFINE_boolean("labelled_only", False,
                     "With --labelled_fraction < 1: train on the labelled samples alone, the "
                     "fully supervised baseline of paper Fig. 8 (full batches of labelled "
                     "samples instead of batches whose unlabelled part carries no pose loss).")
flags.DEFINE_integer("unlabelled_batch_size", 0,
                     "With --labelled_fraction < 1: 0 draws each batch uniformly from every "
                     "training sample; U > 0 makes each batch --batch_size labelled samples plus "
                     "U unlabelled ones, so that the weak run sees as many labelled samples per "
                     "step as the --labelled_only baseline (docs/pipeline.md, Weak supervision).",
                     lower_bound=0)
flags.DEFINE_enum("validate_on", "val", VALIDATION_SPLITS,
                  "Split whose EPE drives the learning-rate plateaus, convergence and the "
                  "TensorBoard validation curve: val, held out of the training data (docs/data.md, "
                  "Splits), or test, which lets the test split choose the model, so that its "
                  "numbers are no longer test numbers.")
flags.DEFINE_integer("checkpoint_every", None, "Override the preset's checkpoint cadence (steps).")
flags.DEFINE_integer("eval_every", None, "Override the preset's validation cadence (steps).")
flags.DEFINE_integer("seed", 0, "Seed for weights, shuffling and augmentation.")
flags.DEFINE_enum("distribution", "auto", DISTRIBUTIONS,
                  "auto: one GPU or the CPU, or MirroredStrategy over several local GPUs; "
                  "mirrored: MirroredStrategy over every local GPU; multi_worker: "
                  "MultiWorkerMirroredStrategy over the hosts in TF_CONFIG, the global "
                  "--batch_size split across replicas, only the chief writing (docs/training.md, "
                  "Training on several machines).")
cli.define_verbose_flag()


def run_config_from_flags():
    """The RunConfig of these flags: the preset's values, the flags given on top."""
    from model import run_config  # pylint: disable=import-outside-toplevel

    data = presets.data_config(
        FLAGS.preset, data=FLAGS.data,
        data_dir=os.path.abspath(FLAGS.data_dir or default_data_dir(FLAGS.data)),
        image_size=FLAGS.image_size, num_points=FLAGS.num_points,
        view_correction=FLAGS.view_correction, labelled_fraction=FLAGS.labelled_fraction,
        labelled_only=FLAGS.labelled_only, unlabelled_batch_size=FLAGS.unlabelled_batch_size,
        cache_dir=FLAGS.cache_dir and os.path.abspath(FLAGS.cache_dir))
    decoders = tuple(FLAGS.decoders) if FLAGS.strategy == "extended" else ()
    model = presets.model_config(FLAGS.preset, data, width=FLAGS.width,
                                 strategy=FLAGS.strategy, decoders=decoders)
    fractions = FLAGS.lr_decay_fractions
    if fractions is not None:
        try:
            fractions = tuple(float(f) for f in fractions)
        except ValueError as e:
            raise ValueError(f"--lr_decay_fractions={','.join(fractions)}: not numbers") from e
    elif FLAGS.lr_schedule == "plateau":
        fractions = ()  # the preset's fixed fractions do not apply to a plateau schedule
    train = run_config.TrainConfig.from_preset(
        FLAGS.preset, batch_size=FLAGS.batch_size, max_steps=FLAGS.max_steps,
        learning_rate=FLAGS.learning_rate, lr_schedule=FLAGS.lr_schedule,
        lr_decay_fractions=fractions, checkpoint_every=FLAGS.checkpoint_every,
        eval_every=FLAGS.eval_every, validate_on=FLAGS.validate_on, seed=FLAGS.seed)
    return run_config.RunConfig(model, data, train)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    from data_pipeline import cache, dataset
    from data_pipeline.sample import DataError
    from evaluation import inference
    from model import distribute, run_config, strategies, training

    try:
        # A multi-worker strategy must exist before any other TensorFlow work.
        distribution = distribute.make_distribution(FLAGS.distribution)
        run = run_config_from_flags()
    except ValueError as e:
        cli.exit_with(e)
    model_dir = FLAGS.model_dir or os.path.join(
        "runs", f"{FLAGS.strategy}_{FLAGS.data}_{FLAGS.preset}")
    train_cfg = run.train
    try:
        cache.prepare_cache(run.data, "train")  # pre-processes the training split if needed
        # In a fixed order, so that every validation scores the same samples.
        val_ds = dataset.build_dataset(run.data, train_cfg.validate_on,
                                       batch_size=train_cfg.batch_size, seed=train_cfg.seed,
                                       deterministic=True, modalities=())
        num_val = dataset.dataset_size(run.data, train_cfg.validate_on)
        if distribute.is_chief(distribution):
            run_config.save_run_config(model_dir, run)
    except (DataError, ValueError) as e:
        cli.exit_with(e)
    if train_cfg.eval_batches:
        val_ds = val_ds.take(train_cfg.eval_batches)
    sample_images = next(iter(val_ds))["image"][:4]

    def validate(model):
        return inference.evaluate_model(model, val_ds)

    trainer = training.Trainer(run.model, train_cfg, model_dir, distribution)
    resumed = trainer.restore_latest()
    # In a fixed order, and past the examples already trained on: a resumed run reads the batches
    # an uninterrupted one would have read.
    try:
        train_ds = dataset.build_dataset(
            run.data, "train", batch_size=train_cfg.batch_size, augment=True, shuffle=True,
            repeat=True, drop_remainder=True, seed=train_cfg.seed, deterministic=True,
            skip=int(trainer.step.numpy()) * train_cfg.batch_size,
            modalities=strategies.batch_modalities(run.model))
    except (DataError, ValueError) as e:
        cli.exit_with(e)
    print(f"{'resuming from ' + resumed if resumed else 'starting'}: strategy={FLAGS.strategy} "
          f"data={FLAGS.data} preset={FLAGS.preset} model_dir={model_dir} "
          f"devices={trainer.distribution.extended.worker_devices}")
    print(f"validating on the {train_cfg.validate_on} split ({num_val} samples"
          + (f", {train_cfg.eval_batches} batches per validation)" if train_cfg.eval_batches
             else ")"))
    try:
        metrics = trainer.fit(train_ds, validate=validate, sample_images=sample_images)
    except FloatingPointError as e:
        sys.exit(f"error: {e}")
    step = int(trainer.step.numpy())
    # fit leaves a checkpoint at its last step however it ends. The chief writes it, and another
    # worker may get here before it is complete: name it rather than the newest one seen.
    checkpoint = os.path.join(model_dir, f"ckpt-{step}") + (
        "" if trainer.is_chief else " (written by the chief)")
    if trainer.stop_signal is not None:
        print(f"stopped by signal {trainer.stop_signal} at step {step}; checkpoint: {checkpoint}; "
              "the same command resumes")
        return
    summary = (", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
               or f"nothing to train, --max_steps={train_cfg.max_steps} already reached")
    print(f"done at step {step}: {summary}")
    print(f"checkpoint: {checkpoint}")
    print(f"evaluate with: python evaluate.py --ckpt={model_dir}")


if __name__ == "__main__":
    app.run(main)
