r"""Cost of a full training step relative to the ResNet-18 backbone, and pipeline headroom.

  python benchmarks/train_step.py --preset=cpu
  python benchmarks/train_step.py --preset=paper --rounds=2

In one process and on one batch of the synthetic set, times (a) the training loop's own step,
Trainer.train_step, for --strategy (default poe: three encoders/latents, all decoders, Chamfer +
EMD, Adam) and (b) a train step of the ResNet-18 backbone alone (same images, a plain
squared-feature loss, Adam), alternating the two in rounds so that machine load hits both alike.
Prints the step ratio (a)/(b) and the training pipeline's samples/s divided by the full step's.
"""
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "cpu", ["paper", "cpu", "smoke"], "Image and batch size preset.")
flags.DEFINE_enum("strategy", "poe", ["cvae", "extended", "kl", "poe"], "Strategy to time.")
flags.DEFINE_string("data_dir", None, "Synthetic RHD-format set (default: data/synthetic_rhd).")
flags.DEFINE_integer("steps", 5, "Timed steps per round and model.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds; the median ratio is reported.")
flags.DEFINE_integer("pipeline_batches", 20, "Batches timed from the training pipeline.")


def _time_steps(step_fn, batch, steps):
    start = time.perf_counter()
    for _ in range(steps):
        out = step_fn(batch)
    float(out)  # waits for the last step
    return (time.perf_counter() - start) / steps


def main(argv):
    del argv
    import tensorflow as tf

    from benchmarks import pipeline
    from data_pipeline import dataset
    from model import config as model_config
    from model import encoders, training

    cfg = training.TrainConfig.from_preset(FLAGS.preset)
    model_cfg = model_config.ModelConfig(
        strategy=FLAGS.strategy, image_size=cfg.image_size,
        decoders=("heatmap", "cloud") if FLAGS.strategy == "extended" else ())
    data_dir = FLAGS.data_dir or dataset.default_data_dir("synthetic")
    train_ds = dataset.build_dataset(
        "synthetic", "train", data_dir=data_dir, image_size=cfg.image_size,
        batch_size=cfg.batch_size, augment=True, shuffle=True, repeat=True, drop_remainder=True)
    batch = next(iter(train_ds))

    scratch = tempfile.TemporaryDirectory(prefix="train_step_")  # the Trainer's model_dir, unused
    trainer = training.Trainer(model_cfg, cfg, scratch.name)
    full_step = tf.function(lambda b: trainer.train_step(b)["total"])
    backbone = encoders.ResNet18Backbone()
    backbone_opt = tf.keras.optimizers.Adam(cfg.learning_rate)

    @tf.function
    def backbone_step(b):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(backbone(b["image"], training=True)))
        grads = tape.gradient(loss, backbone.trainable_variables)
        backbone_opt.apply_gradients(zip(grads, backbone.trainable_variables))
        return loss

    for fn in (full_step, backbone_step):  # trace and warm up
        _time_steps(fn, batch, 2)
    ratios, full_times = [], []
    for r in range(FLAGS.rounds):
        t_backbone = _time_steps(backbone_step, batch, FLAGS.steps)
        t_full = _time_steps(full_step, batch, FLAGS.steps)
        ratios.append(t_full / t_backbone)
        full_times.append(t_full)
        print(f"round {r + 1}: full {FLAGS.strategy} step {t_full * 1e3:.0f} ms, "
              f"backbone step {t_backbone * 1e3:.0f} ms, ratio {ratios[-1]:.2f}")

    pipeline_rate = pipeline.measure(data_dir, cfg.image_size, cfg.batch_size,
                                     FLAGS.pipeline_batches, warmup_batches=1)
    step_rate = cfg.batch_size / statistics.median(full_times)

    print(f"preset={FLAGS.preset} image={cfg.image_size} batch={cfg.batch_size} "
          f"strategy={FLAGS.strategy}")
    print(f"full step / backbone step: {statistics.median(ratios):.2f} (goal <= 1.3)")
    print(f"pipeline {pipeline_rate:.0f} samples/s / step {step_rate:.1f} samples/s = "
          f"{pipeline_rate / step_rate:.1f} (goal >= 3)")


if __name__ == "__main__":
    app.run(main)
