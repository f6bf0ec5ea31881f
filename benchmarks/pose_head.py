r"""How fast the RGB encoder learns poses through S1's latent and pose decoder, against simpler
heads on the same encoder: a diagnostic of the CPU-scale regime's slow learning.

  python benchmarks/pose_head.py --preset=experiment                  # fit a fixed set
  python benchmarks/pose_head.py --preset=experiment --stream --steps=1000 --eval_every=250

Every row trains the preset's ResNet-18 RGB encoder from the same initial weights on the same
batches with Adam at the preset's learning rate, and differs only in what follows the encoder:

  s1           S1 as train.py trains it (Trainer.train_step): sampled z, the preset's pose
               decoder (4 fully connected layers), Eq. 10 plus the annealed KL to the prior
  mean         z = mean of q(z|R), no sampling and no KL, the preset's pose decoder
  mean_paper   the same with the paper's 128 hidden units in the pose decoder
  mean_linear  the same with one linear layer from z to the pose instead of the decoder

By default the batches come from a fixed set of --samples un-augmented training samples, so the
error on that set measures how fast each row can fit (optimisation, not generalisation); with
--stream they come from the augmented training stream and the error is on the first --samples of
the validation split. Prints each row's Eq. 10 error (normalised units, inference mode) at every
--eval_every steps and its ratio to the error of the set's mean pose. Before training, each row
prints its error at step 0 and a fingerprint of its encoder's initial variables, equal in every
row.
"""
import dataclasses
import hashlib
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import cli  # noqa: E402

cli.quiet_tensorflow(sys.argv)

from absl import app, flags  # noqa: E402

from model import presets  # noqa: E402

FLAGS = flags.FLAGS
ROWS = ("s1", "mean", "mean_paper", "mean_linear")
flags.DEFINE_enum("preset", "experiment", presets.NAMES, "Networks, crops and optimiser preset.")
cli.define_choice_list("rows", ROWS, ROWS, "Rows to train")
flags.DEFINE_string("data_dir", None, "Synthetic RHD-format set (default: data/synthetic_rhd).")
flags.DEFINE_string("cache_dir", None, "Pre-processed data cache (default: data/cache).")
flags.DEFINE_integer("samples", 256, "Size of the fixed (or validation) set scored.",
                     lower_bound=1)
flags.DEFINE_integer("steps", 300, "Training steps per row.", lower_bound=1)
flags.DEFINE_integer("eval_every", 100, "Steps between scorings of the set.", lower_bound=1)
flags.DEFINE_boolean("stream", False, "Train on the augmented training stream and score the "
                     "validation split, instead of fitting a fixed set of training samples.")
flags.DEFINE_integer("seed", 0, "Seed of the initial weights and the batch order.")
cli.define_verbose_flag()

# The paper's pose decoder width (SPEC 4), which the `mean_paper` row restores.
PAPER_POSE_HIDDEN = 128


class _MeanLatentRow:
    """RGB encoder -> mean of q(z|R) -> `head`, trained on Eq. 10 alone."""

    def __init__(self, model_cfg, head, learning_rate):
        import tensorflow as tf

        from model import encoders

        self.rgb_encoder = encoders.RGBEncoder(model_cfg.latent_dim, model_cfg.resnet_widths)
        self.head = head
        self.num_keypoints = model_cfg.num_keypoints
        self.optimizer = tf.keras.optimizers.Adam(learning_rate)
        self.step = tf.function(self._step)

    def predict_pose(self, image, training=False):
        import tensorflow as tf
        mu, _ = self.rgb_encoder(image, training=training)
        return tf.reshape(self.head(mu), [-1, self.num_keypoints, 3])

    def _step(self, batch):
        import tensorflow as tf

        from model import losses
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(losses.pose_error(self.predict_pose(batch["image"], True),
                                                    batch["pose"]))
        variables = self.rgb_encoder.trainable_variables + self.head.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss


def _fingerprint(variables):
    """First 12 hex digits of the SHA-1 of the variables' values, in order: equal weights give
    equal fingerprints."""
    digest = hashlib.sha1()
    for v in variables:
        digest.update(v.numpy().tobytes())
    return digest.hexdigest()[:12]


def _build_row(key, model_cfg, train_cfg, scratch):
    """(model with predict_pose and rgb_encoder, step function on a batch) of one row, seeded
    alike."""
    import tensorflow as tf

    from model import decoders, training
    tf.keras.utils.set_random_seed(FLAGS.seed)
    if key == "s1":
        # Trainer seeds the weights itself, from its config: give it the rows' seed.
        trainer = training.Trainer(model_cfg, dataclasses.replace(train_cfg, seed=FLAGS.seed),
                                   os.path.join(scratch, key))
        return trainer.model, tf.function(lambda b: trainer.train_step(b)["total"])
    if key == "mean_linear":
        head = tf.keras.layers.Dense(model_cfg.num_keypoints * 3, name="linear_pose")
    else:
        hidden = PAPER_POSE_HIDDEN if key == "mean_paper" else model_cfg.pose_hidden
        head = decoders.PoseDecoder(model_cfg.num_keypoints, hidden)
    row = _MeanLatentRow(model_cfg, head, train_cfg.learning_rate)
    return row, row.step


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from data_pipeline import dataset
    from model import losses, run_config

    train_cfg = run_config.TrainConfig.from_preset(FLAGS.preset)
    data_cfg = presets.data_config(FLAGS.preset, data="synthetic", data_dir=FLAGS.data_dir,
                                   cache_dir=FLAGS.cache_dir)
    model_cfg = presets.model_config(FLAGS.preset, data_cfg, strategy="cvae")
    batch_size = train_cfg.batch_size
    scored = next(iter(dataset.build_dataset(data_cfg, "val" if FLAGS.stream else "train",
                                             batch_size=FLAGS.samples, deterministic=True)))
    if FLAGS.samples < batch_size or scored["pose"].shape[0] < FLAGS.samples:
        sys.exit(f"error: --samples={FLAGS.samples} must be at least the batch size "
                 f"{batch_size} and at most the split's size ({scored['pose'].shape[0]} read)")

    def error_on_set(poses):
        return float(tf.reduce_mean(losses.pose_error(poses, scored["pose"])))

    mean_pose = tf.reduce_mean(scored["pose"], axis=0, keepdims=True)
    mean_error = error_on_set(tf.broadcast_to(mean_pose, scored["pose"].shape))

    def fixed_batches():
        rng = np.random.default_rng(FLAGS.seed)
        while True:
            take = rng.choice(FLAGS.samples, batch_size, replace=False)
            yield {k: tf.gather(v, take) for k, v in scored.items()}

    def batches():
        if not FLAGS.stream:
            return fixed_batches()
        return iter(dataset.build_dataset(
            data_cfg, "train", batch_size=batch_size, augment=True, shuffle=True, repeat=True,
            drop_remainder=True, seed=FLAGS.seed, deterministic=True))

    print(f"preset={FLAGS.preset} width={presets.section(FLAGS.preset, 'model')['width']} "
          f"pose_hidden={model_cfg.pose_hidden} image={data_cfg.image_size} batch={batch_size} "
          f"lr={train_cfg.learning_rate:g}; "
          + (f"augmented stream, scored on {FLAGS.samples} validation samples" if FLAGS.stream
             else f"fitting {FLAGS.samples} fixed training samples")
          + f"; mean-pose error of the set {mean_error:.3f}")
    results = {}
    scratch = tempfile.TemporaryDirectory(prefix="pose_head_")
    for key in FLAGS.rows:
        model, step = _build_row(key, model_cfg, train_cfg, scratch.name)
        # Scoring before the first step also creates the variables of rows built lazily.
        error = error_on_set(model.predict_pose(scored["image"], training=False))
        print(f"{key:11s} step     0: error on the set {error:.3f} ({error / mean_error:.2f} x "
              f"mean pose), encoder start {_fingerprint(model.rgb_encoder.variables)}",
              flush=True)
        stream, start, results[key] = batches(), time.perf_counter(), []
        for s in range(1, FLAGS.steps + 1):
            loss = step(next(stream))
            if s % FLAGS.eval_every == 0 or s == FLAGS.steps:
                error = error_on_set(model.predict_pose(scored["image"], training=False))
                results[key].append((s, error))
                print(f"{key:11s} step {s:5d}: training loss {float(loss):.3f}, error on the set "
                      f"{error:.3f} ({error / mean_error:.2f} x mean pose) "
                      f"[{time.perf_counter() - start:.0f} s]", flush=True)
    print("\nerror on the set / mean-pose error, by step:")
    print(f"{'row':11s} " + " ".join(f"{s:>6d}" for s, _ in results[FLAGS.rows[0]]))
    for key, points in results.items():
        print(f"{key:11s} " + " ".join(f"{e / mean_error:6.2f}" for _, e in points))


if __name__ == "__main__":
    app.run(main)
