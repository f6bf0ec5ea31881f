"""One worker of tests/test_distributed.py's gradient-averaging check: one step of Trainer.fit
with a linear model and plain SGD, whose update has no batch statistics or noise and scales with
the gradient (Adam's would not), on a fixed global batch under --distribution; saves the weights
before and after (run as a subprocess; TF_CONFIG names its task)."""
from absl import app, flags
import numpy as np

from model.config import DISTRIBUTIONS

FLAGS = flags.FLAGS
flags.DEFINE_enum("distribution", "auto", DISTRIBUTIONS, "train.py --distribution.")
flags.DEFINE_string("model_dir", None, "Trainer model_dir (shared by the workers).")
flags.DEFINE_string("weights", None, "Where to save this worker's weights (.npz).")

GLOBAL_BATCH = 8
LEARNING_RATE = 0.1


def main(argv):
    del argv
    from model import distribute, run_config, training  # pylint: disable=import-outside-toplevel
    distribution = distribute.make_distribution(FLAGS.distribution)  # first TensorFlow work
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from model.config import ModelConfig  # pylint: disable=import-outside-toplevel

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

    cfg = run_config.TrainConfig(batch_size=GLOBAL_BATCH, max_steps=1, checkpoint_every=1)
    small = ModelConfig(strategy="cvae", image_size=32, latent_dim=8, num_points=16,
                        resnet_widths=(4, 4, 8, 8), pose_hidden=8)
    trainer = training.Trainer(small, cfg, FLAGS.model_dir, distribution)
    rng = np.random.default_rng(0)
    with distribution.scope():
        trainer.model = Linear(rng)
        trainer.optimizer = tf.keras.optimizers.SGD(learning_rate=LEARNING_RATE)
    data = {"x": rng.normal(size=(GLOBAL_BATCH, 6)).astype(np.float32),
            "y": rng.normal(size=(GLOBAL_BATCH, 2)).astype(np.float32)}
    before = [v.numpy() for v in trainer.model.trainable_variables]
    trainer.fit(tf.data.Dataset.from_tensor_slices(data).batch(GLOBAL_BATCH).repeat(),
                verbose=False)
    after = [v.numpy() for v in trainer.model.trainable_variables]
    np.savez(FLAGS.weights, before=np.concatenate([v.ravel() for v in before]),
             after=np.concatenate([v.ravel() for v in after]))
    print(f"replicas={distribution.num_replicas_in_sync} step={int(trainer.step.numpy())}",
          flush=True)


if __name__ == "__main__":
    app.run(main)
