"""Writes a synthetic data set in the RHD or STB format.

  python -m data_pipeline.synthetic --format=rhd --out data/synthetic_rhd \
      --num_train 2000 --num_test 200 --seed 0 [--workers W]
"""
from absl import app
from absl import flags
from absl import logging

from common import cli
from data_pipeline.synthetic.builder import FORMATS, generate

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", None, FORMATS, "Data set format to write.")
flags.DEFINE_string("out", None, "Root directory of the data set to create.")
flags.DEFINE_integer("num_train", None, "Number of training samples.", lower_bound=1)
flags.DEFINE_integer("num_test", None, "Number of test samples.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the data set.")
flags.DEFINE_integer("workers", None, "Worker processes (default: one per CPU).", lower_bound=1)
flags.mark_flags_as_required(["format", "out", "num_train", "num_test"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    try:
        generate(FLAGS.format, FLAGS.out, FLAGS.num_train, FLAGS.num_test, FLAGS.seed,
                 FLAGS.workers)
    except ValueError as e:
        cli.exit_with(e)


if __name__ == "__main__":
    app.run(main)
