"""One worker of tests/test_distributed.py: trains a tiny S1 model on fixed batches under
--distribution and saves its final weights and its pose predictions for the first batch's images
before and after training (run as a subprocess; TF_CONFIG names its task)."""
import sys

from absl import app, flags
import numpy as np

from model.config import DISTRIBUTIONS

FLAGS = flags.FLAGS
flags.DEFINE_enum("distribution", "auto", DISTRIBUTIONS, "train.py --distribution.")
flags.DEFINE_string("model_dir", None, "Trainer model_dir (shared by the workers).")
flags.DEFINE_string("weights", None, "Where to save this worker's final weights (.npz).")
flags.DEFINE_integer("steps", 3, "Training steps.")

GLOBAL_BATCH = 32
SMALL = dict(strategy="cvae", image_size=32, latent_dim=8, num_points=16,
             resnet_widths=(4, 4, 8, 8), pose_hidden=8)


def batches(count):
    """`count` fixed global batches of GLOBAL_BATCH samples (image, pose)."""
    rng = np.random.default_rng(0)
    n = count * GLOBAL_BATCH
    return {"image": rng.uniform(size=(n, 32, 32, 3)).astype(np.float32),
            "pose": rng.normal(size=(n, 21, 3)).astype(np.float32)}


def main(argv):
    del argv
    from model import distribute, run_config, training  # pylint: disable=import-outside-toplevel
    distribution = distribute.make_distribution(FLAGS.distribution)  # first TensorFlow work
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from model.config import ModelConfig  # pylint: disable=import-outside-toplevel

    cfg = run_config.TrainConfig(batch_size=GLOBAL_BATCH, max_steps=FLAGS.steps,
                                 checkpoint_every=FLAGS.steps, learning_rate=1e-2, seed=5)
    trainer = training.Trainer(ModelConfig(**SMALL), cfg, FLAGS.model_dir, distribution)
    data = batches(FLAGS.steps)
    probe = tf.constant(data["image"][:GLOBAL_BATCH])
    before = trainer.model.predict_pose(probe).numpy()
    ds = tf.data.Dataset.from_tensor_slices(data).batch(GLOBAL_BATCH).repeat()
    trainer.fit(ds, verbose=False)
    weights = np.concatenate([v.numpy().ravel() for v in trainer.model.trainable_variables])
    np.savez(FLAGS.weights, weights=weights, before=before,
             after=trainer.model.predict_pose(probe).numpy())
    print(f"chief={trainer.is_chief} replicas={distribution.num_replicas_in_sync} "
          f"step={int(trainer.step.numpy())}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
