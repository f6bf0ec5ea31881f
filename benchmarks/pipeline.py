"""Throughput of the training input pipeline (with augmentation), in samples per second.

  python benchmarks/pipeline.py [--data_dir DIR] [--num_batches 50] [--presets paper,experiment]

Runs the training configuration of build_dataset (shuffle, repeat, augmentation, drop_remainder)
on the synthetic RHD-format set, generating it and its caches first when missing (not timed), and
prints samples/s per preset: paper = 256-px crops in batches of 32, experiment and cpu = 64-px
crops in batches of 32 (with each preset's points per cloud).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from common import cli  # noqa: E402
from model import presets  # noqa: E402


def measure(data_config, batch_size, num_batches, warmup_batches):
    """Samples per second of the augmented training pipeline over `data_config` (a DataConfig),
    after warm-up batches."""
    from data_pipeline import dataset  # pylint: disable=import-outside-toplevel
    ds = dataset.build_dataset(data_config, "train", batch_size=batch_size, augment=True,
                               shuffle=True, repeat=True, drop_remainder=True)
    batches = iter(ds)
    for _ in range(warmup_batches):
        next(batches)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(batches)
    return num_batches * batch_size / (time.perf_counter() - start)


def define_flags():
    """The CLI's flags (defined only when run as a program, so train_step.py can import measure)."""
    flags.DEFINE_string("data_dir", None, "Synthetic RHD-format set (default: data/synthetic_rhd, "
                        "generated when missing).")
    flags.DEFINE_integer("num_batches", 50, "Batches timed per preset.", lower_bound=1)
    flags.DEFINE_integer("warmup_batches", 5, "Batches drawn before timing.", lower_bound=0)
    cli.define_choice_list("presets", ["paper", "experiment"], presets.NAMES, "Presets to time")
    cli.define_verbose_flag()


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    for name in FLAGS.presets:
        data_cfg = presets.data_config(name, data="synthetic", data_dir=FLAGS.data_dir)
        batch_size = presets.section(name, "train")["batch_size"]
        rate = measure(data_cfg, batch_size, FLAGS.num_batches, FLAGS.warmup_batches)
        print(f"pipeline {name}: image {data_cfg.image_size}, batch {batch_size}: "
              f"{rate:.1f} samples/s ({FLAGS.num_batches} batches, {os.cpu_count()} CPUs)",
              flush=True)


if __name__ == "__main__":
    cli.quiet_tensorflow(sys.argv)
    define_flags()
    app.run(main)
