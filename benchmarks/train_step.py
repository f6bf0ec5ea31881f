r"""Cost of each strategy's training step relative to S1's and to the RGB backbone alone, and
pipeline headroom.

  python benchmarks/train_step.py --preset=experiment
  python benchmarks/train_step.py --preset=paper --rounds=2 --rows=s1,s4

In one process and on one batch of the synthetic set, times the training loop's own step,
Trainer.train_step, for every row of Table 1 (S1; S2 R->H+P, R->C+P, R->C+H+P; S3; S4) with the
preset's networks, and a train step of the preset's ResNet-18 backbone alone (same images, a
plain squared-feature loss, Adam). Each round times every model once, so that machine load hits
all alike; the median over rounds is reported. Prints each step time, its ratio to S1's and to
the backbone's, and the training pipeline's samples/s divided by the slowest step's. For the
first row it also times the step as `Trainer.fit` runs it (`Trainer.update`: one tf.function whose
update is skipped by a tf.cond when the loss is not finite) against train_step alone; the whole
loop with its input pipeline is benchmarks/loop.py's.
"""
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import cli  # noqa: E402

cli.quiet_tensorflow(sys.argv)

from absl import app, flags  # noqa: E402

from experiments import suites  # noqa: E402
from benchmarks import timing  # noqa: E402
from model import presets  # noqa: E402

FLAGS = flags.FLAGS
# Table 1's rows by key (experiments/suites.py): the strategy and decoders of each.
ROWS = {row.key: row for row in suites.TABLE1}
flags.DEFINE_enum("preset", "experiment", presets.NAMES,
                  "Image size, batch size and networks of this training preset.")
cli.define_choice_list("rows", list(ROWS), list(ROWS),
                       "Table 1 rows to time (the first, s1 by default, divides the others)")
flags.DEFINE_string("data_dir", None, "Synthetic RHD-format set (default: data/synthetic_rhd).")
flags.DEFINE_integer("steps", 5, "Timed steps per round and model.", lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Rounds; the median is reported.", lower_bound=1)
flags.DEFINE_integer("pipeline_batches", 20, "Batches timed from the training pipeline.")
cli.define_verbose_flag()


def main(argv):
    del argv
    import tensorflow as tf

    from benchmarks import pipeline
    from data_pipeline import dataset
    from model import encoders, run_config, training

    cfg = run_config.TrainConfig.from_preset(FLAGS.preset)
    data_cfg = presets.data_config(FLAGS.preset, data="synthetic", data_dir=FLAGS.data_dir)
    batch = next(iter(dataset.build_dataset(data_cfg, "train", batch_size=cfg.batch_size,
                                            augment=True, shuffle=True, repeat=True,
                                            drop_remainder=True)))

    steps = {}
    scratch = tempfile.TemporaryDirectory(prefix="train_step_")  # the Trainers' model_dirs
    for key in FLAGS.rows:
        model_cfg = presets.model_config(FLAGS.preset, data_cfg, strategy=ROWS[key].strategy,
                                         decoders=ROWS[key].decoders)
        trainer = training.Trainer(model_cfg, cfg, os.path.join(scratch.name, key))
        steps[key] = tf.function(lambda b, t=trainer: t.train_step(b)["total"])
        if key == FLAGS.rows[0]:
            steps["loop"] = lambda b, t=trainer: t.update(b)[0]["total"]
    backbone = encoders.ResNet18Backbone(model_cfg.resnet_widths)
    backbone_opt = tf.keras.optimizers.Adam(cfg.learning_rate)

    @tf.function
    def backbone_step(b):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(backbone(b["image"], training=True)))
        grads = tape.gradient(loss, backbone.trainable_variables)
        backbone_opt.apply_gradients(zip(grads, backbone.trainable_variables))
        return loss

    steps["backbone"] = backbone_step
    for fn in steps.values():  # trace and warm up
        timing.time_steps(fn, batch, 2)
    times = {key: [] for key in steps}
    for r in range(FLAGS.rounds):
        for key, fn in steps.items():
            times[key].append(timing.time_steps(fn, batch, FLAGS.steps))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1] * 1e3:.0f} ms"
                                             for k, v in times.items()), flush=True)
    median = {key: statistics.median(v) for key, v in times.items()}

    print(f"preset={FLAGS.preset} image={data_cfg.image_size} batch={cfg.batch_size} "
          f"points={data_cfg.num_points} width={presets.section(FLAGS.preset, 'model')['width']}")
    first = FLAGS.rows[0]
    for key in FLAGS.rows:
        print(f"{key:7s} step {median[key] * 1e3:6.0f} ms   / {first} "
              f"{median[key] / median[first]:5.2f}   / backbone "
              f"{median[key] / median['backbone']:5.2f}")
    print(f"backbone step {median['backbone'] * 1e3:.0f} ms")
    print(f"{first} as fit runs it (Trainer.update) {median['loop'] * 1e3:.0f} ms / train_step "
          f"in one tf.function {median['loop'] / median[first]:.2f}")
    slowest = max(FLAGS.rows, key=median.get)
    pipeline_rate = pipeline.measure(data_cfg, cfg.batch_size, FLAGS.pipeline_batches,
                                     warmup_batches=1)
    step_rate = cfg.batch_size / median[slowest]
    print(f"slowest step / {first}: {median[slowest] / median[first]:.2f} ({slowest}; goal <= 3)")
    print(f"pipeline {pipeline_rate:.0f} samples/s / {slowest} step {step_rate:.1f} samples/s = "
          f"{pipeline_rate / step_rate:.1f} (goal >= 3)")


if __name__ == "__main__":
    app.run(main)
