"""One worker of tests/test_distributed.py (run as a subprocess; TF_CONFIG names its task), which
makes both of the test's checks in one cluster start, each with Trainer.fit under --distribution:

- averaging: one step of plain SGD on a linear model, whose update has no batch statistics or
  noise and scales with the gradient (Adam's would not), on a fixed global batch; saves the
  weights before and after to <out>/averaging.npz.
- model: a tiny S1 model trained on fixed batches; saves its final weights and its pose
  predictions for the first batch's images before and after training to <out>/model.npz.
"""
import os
import sys

from absl import app, flags
import numpy as np

from model.config import DISTRIBUTIONS

FLAGS = flags.FLAGS
flags.DEFINE_enum("distribution", "auto", DISTRIBUTIONS, "train.py --distribution.")
flags.DEFINE_string("model_dir", None, "Trainers' model_dirs go under it (shared by the workers).")
flags.DEFINE_string("out", None, "Directory for this worker's averaging.npz and model.npz.")
flags.DEFINE_integer("steps", 3, "Training steps of the tiny S1 model.")

GLOBAL_BATCH = 32
SMALL = dict(strategy="cvae", image_size=32, latent_dim=8, num_points=16,
             resnet_widths=(4, 4, 8, 8), pose_hidden=8)
AVERAGING_BATCH = 8
LEARNING_RATE = 0.1


def batches(count):
    """`count` fixed global batches of GLOBAL_BATCH samples (image, pose)."""
    rng = np.random.default_rng(0)
    n = count * GLOBAL_BATCH
    return {"image": rng.uniform(size=(n, 32, 32, 3)).astype(np.float32),
            "pose": rng.normal(size=(n, 21, 3)).astype(np.float32)}


def averaging(distribution, tf, run_config, training, ModelConfig):
    """One SGD step of a linear model; returns its weights before and after, flattened."""

    class Linear(tf.keras.Model):
        """y = x W + b with the batch's mean squared error as its loss."""

        def __init__(self, rng):
            super().__init__()
            self.w = tf.Variable(rng.normal(size=(6, 2)).astype(np.float32))
            self.b = tf.Variable(rng.normal(size=(2,)).astype(np.float32))

        def compute_losses(self, batch, beta, training, seed):
            del beta, training, seed
            error = tf.matmul(batch["x"], self.w) + self.b - batch["y"]
            return {"total": tf.reduce_mean(tf.square(error))}

    cfg = run_config.TrainConfig(batch_size=AVERAGING_BATCH, max_steps=1, checkpoint_every=1)
    trainer = training.Trainer(ModelConfig(**SMALL), cfg,
                               os.path.join(FLAGS.model_dir, "averaging"), distribution)
    rng = np.random.default_rng(0)
    with distribution.scope():
        trainer.model = Linear(rng)
        trainer.optimizer = tf.keras.optimizers.SGD(learning_rate=LEARNING_RATE)
    data = {"x": rng.normal(size=(AVERAGING_BATCH, 6)).astype(np.float32),
            "y": rng.normal(size=(AVERAGING_BATCH, 2)).astype(np.float32)}
    before = [v.numpy() for v in trainer.model.trainable_variables]
    trainer.fit(tf.data.Dataset.from_tensor_slices(data).batch(AVERAGING_BATCH).repeat(),
                verbose=False)
    after = [v.numpy() for v in trainer.model.trainable_variables]
    print(f"averaging: replicas={distribution.num_replicas_in_sync} "
          f"step={int(trainer.step.numpy())}", flush=True)
    return (np.concatenate([v.ravel() for v in before]),
            np.concatenate([v.ravel() for v in after]))


def main(argv):
    del argv
    from model import distribute, run_config, training  # pylint: disable=import-outside-toplevel
    distribution = distribute.make_distribution(FLAGS.distribution)  # first TensorFlow work
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from model.config import ModelConfig  # pylint: disable=import-outside-toplevel

    before, after = averaging(distribution, tf, run_config, training, ModelConfig)
    np.savez(os.path.join(FLAGS.out, "averaging.npz"), before=before, after=after)

    cfg = run_config.TrainConfig(batch_size=GLOBAL_BATCH, max_steps=FLAGS.steps,
                                 checkpoint_every=FLAGS.steps, learning_rate=1e-2, seed=5)
    trainer = training.Trainer(ModelConfig(**SMALL), cfg, os.path.join(FLAGS.model_dir, "model"),
                               distribution)
    data = batches(FLAGS.steps)
    probe = tf.constant(data["image"][:GLOBAL_BATCH])
    before = trainer.model.predict_pose(probe).numpy()
    ds = tf.data.Dataset.from_tensor_slices(data).batch(GLOBAL_BATCH).repeat()
    trainer.fit(ds, verbose=False)
    weights = np.concatenate([v.numpy().ravel() for v in trainer.model.trainable_variables])
    np.savez(os.path.join(FLAGS.out, "model.npz"), weights=weights, before=before,
             after=trainer.model.predict_pose(probe).numpy())
    print(f"chief={trainer.is_chief} replicas={distribution.num_replicas_in_sync} "
          f"step={int(trainer.step.numpy())}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
