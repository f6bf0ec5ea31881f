r"""Trains one of the paper's four alignment strategies (S1-S4, Eqs. 1-4).

  python train.py --strategy=poe --data=synthetic --preset=cpu
  python train.py --strategy=kl --data=stb          # STB in data/STB, or pass --data_dir
  python train.py --strategy=extended --decoders=heatmap,cloud --data=rhd --preset=paper

Re-running the same command resumes from the newest checkpoint in --model_dir.
Open TensorBoard on --model_dir to see every loss term, beta, the learning rate and validation EPE.
Validation (plateaus, convergence, the TensorBoard curve) uses the 'val' split carved out of the
training data (data_pipeline/dataset.py); the test split is not read unless --validate_on=test.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("strategy", "poe", ["cvae", "extended", "kl", "poe"],
                  "S1 cvae (Eq. 1), S2 extended decoders (Alg. 1), S3 kl alignment (Eq. 3), "
                  "S4 poe product of Gaussian experts (Eq. 4).")
flags.DEFINE_list("decoders", ["heatmap", "cloud"],
                  "For --strategy=extended: extra decoders besides pose (any of heatmap, cloud).")
flags.DEFINE_enum("data", "synthetic", ["synthetic", "rhd", "stb"],
                  "Data set; synthetic is generated under data/ on first use.")
flags.DEFINE_string("data_dir", None, "Data set root (default: data/<name> in the repository).")
flags.DEFINE_string("cache_dir", None,
                    "Root of the pre-processed data cache (default: data/cache in the repository).")
flags.DEFINE_string("model_dir", None,
                    "Checkpoints, config.json and TensorBoard logs "
                    "(default: runs/<strategy>_<data>_<preset>).")
flags.DEFINE_enum("preset", "cpu", ["paper", "experiment", "cpu", "smoke"],
                  "paper: SPEC hyper-parameters and widths at 256 px, batch 32; experiment: the "
                  "CPU-scale regime of the experiments (quarter widths, 64 px, 64 points, Adam "
                  "1e-3); cpu: the same regime with the demo's shorter budget; smoke: seconds, "
                  "for tests (README, Training).")
flags.DEFINE_float("width", None, "Override the preset's network width multiplier (1 is the "
                   "paper's widths; it scales every encoder and decoder).")
flags.DEFINE_integer("num_points", None, "Override the preset's points per cloud (a perfect "
                     "square; the paper's is 256).")
flags.DEFINE_integer("image_size", None, "Override the preset's crop size (pixels).")
flags.DEFINE_integer("batch_size", None, "Override the preset's batch size.")
flags.DEFINE_integer("max_steps", None, "Override the preset's number of steps.")
flags.DEFINE_float("learning_rate", None, "Override the preset's initial Adam learning rate.")
flags.DEFINE_boolean("view_correction", True, "Rotate the camera onto the hand (paper Fig. 5).")
flags.DEFINE_float("labelled_fraction", 1.0,
                   "Weak supervision (paper Fig. 8): the first fraction of training samples keep "
                   "their 3D pose, the rest train with RGB and point cloud only, cropped, "
                   "centred and scaled without their 3D label.")
flags.DEFINE_boolean("labelled_only", False,
                     "With --labelled_fraction < 1: train on the labelled samples alone, the "
                     "fully supervised baseline of paper Fig. 8 (full batches of labelled "
                     "samples instead of batches whose unlabelled part carries no pose loss).")
flags.DEFINE_enum("validate_on", "val", ["val", "test"],
                  "Split whose EPE drives the learning-rate plateaus, convergence and the "
                  "TensorBoard validation curve: val, held out of the training data (README, "
                  "Data), or test, which lets the test split choose the model, so that its "
                  "numbers are no longer test numbers.")
flags.DEFINE_integer("checkpoint_every", None, "Override the preset's checkpoint cadence (steps).")
flags.DEFINE_integer("eval_every", None, "Override the preset's validation cadence (steps).")
flags.DEFINE_integer("seed", 0, "Seed for weights, shuffling and augmentation.")


def main(argv):
    del argv
    from data_pipeline import dataset
    from data_pipeline.sample import DataError
    from evaluation import inference
    from model import training

    try:
        train_cfg = training.TrainConfig.from_preset(
            FLAGS.preset, image_size=FLAGS.image_size, batch_size=FLAGS.batch_size,
            max_steps=FLAGS.max_steps, learning_rate=FLAGS.learning_rate,
            checkpoint_every=FLAGS.checkpoint_every, eval_every=FLAGS.eval_every,
            labelled_fraction=FLAGS.labelled_fraction, labelled_only=FLAGS.labelled_only,
            view_correction=FLAGS.view_correction,
            seed=FLAGS.seed)
        decoders = tuple(FLAGS.decoders) if FLAGS.strategy == "extended" else ()
        model_cfg = training.model_config_for(
            FLAGS.preset, width=FLAGS.width, num_points=FLAGS.num_points,
            strategy=FLAGS.strategy, decoders=decoders, image_size=train_cfg.image_size)
    except ValueError as e:
        sys.exit(f"error: {e}")

    data_dir = FLAGS.data_dir or dataset.default_data_dir(FLAGS.data)
    model_dir = FLAGS.model_dir or os.path.join(
        "runs", f"{FLAGS.strategy}_{FLAGS.data}_{FLAGS.preset}")
    data_settings = {"data": FLAGS.data, "data_dir": os.path.abspath(data_dir),
                     "image_size": train_cfg.image_size,
                     "view_correction": train_cfg.view_correction,
                     "num_points": model_cfg.num_points}
    common = dict(data_dir=data_dir, image_size=train_cfg.image_size,
                  view_correction=train_cfg.view_correction, num_points=model_cfg.num_points,
                  seed=train_cfg.seed, cache_dir=FLAGS.cache_dir)
    try:
        train_ds = dataset.build_dataset(
            FLAGS.data, "train", batch_size=train_cfg.batch_size, augment=True, shuffle=True,
            repeat=True, drop_remainder=True, labelled_fraction=train_cfg.labelled_fraction,
            labelled_only=train_cfg.labelled_only, **common)
        val_ds = dataset.build_dataset(FLAGS.data, FLAGS.validate_on,
                                       batch_size=train_cfg.batch_size, **common)
        num_val = dataset.dataset_size(FLAGS.data, FLAGS.validate_on, data_dir,
                                       image_size=train_cfg.image_size,
                                       view_correction=train_cfg.view_correction,
                                       cache_dir=FLAGS.cache_dir)
        training.save_run_config(model_dir, {
            "model": model_cfg.to_dict(), "data": data_settings,
            "train": {k: v for k, v in vars(train_cfg).items()},
            "validation": {"split": FLAGS.validate_on, "num_examples": num_val}})
    except (DataError, ValueError) as e:
        sys.exit(f"error: {e}")
    if train_cfg.eval_batches:
        val_ds = val_ds.take(train_cfg.eval_batches)
    sample_images = next(iter(val_ds))["image"][:4]

    def validate(model):
        return inference.evaluate_model(model, val_ds)

    trainer = training.Trainer(model_cfg, train_cfg, model_dir)
    resumed = trainer.restore_latest()
    print(f"{'resuming from ' + resumed if resumed else 'starting'}: strategy={FLAGS.strategy} "
          f"data={FLAGS.data} preset={FLAGS.preset} model_dir={model_dir} "
          f"devices={trainer.distribution.extended.worker_devices}")
    print(f"validating on the {FLAGS.validate_on} split ({num_val} samples"
          + (f", {train_cfg.eval_batches} batches per validation)" if train_cfg.eval_batches
             else ")"))
    metrics = trainer.fit(train_ds, validate=validate, sample_images=sample_images)
    summary = (", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
               or f"nothing to train, --max_steps={train_cfg.max_steps} already reached")
    print(f"done at step {int(trainer.step.numpy())}: {summary}")
    print(f"checkpoint: {trainer.manager.latest_checkpoint}\n"
          f"evaluate with: python evaluate.py --ckpt={model_dir}")


if __name__ == "__main__":
    app.run(main)
