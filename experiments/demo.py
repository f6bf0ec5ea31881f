r"""The demo's result as a record: the model's test metrics beside the training mean pose's, with
the code and data that made them.

  python -m experiments.demo --model=runs/demo --data_dir=data/synthetic_rhd \
      --out=runs/demo/demo.json

`make demo` writes runs/demo/demo.json (not committed); `make records` writes the committed
results/demo.json.

Reads <model>/eval_test/metrics.json and <model>/mean_pose/metrics.json (`make demo` writes
both with evaluate.py), prints the model's test EPE over the mean pose's and writes --out: both
metrics, that ratio, the run's config.json and the provenance of experiments/provenance.py. No
TensorFlow here.
"""
import json
import os
import sys

from absl import app, flags

from evaluation.files import atomic_write
from experiments import provenance

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("epe_mean_mm", "epe_median_mm", "auc_0_50", "auc_20_50", "num_samples")

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "runs/demo", "The demo's model directory.")
flags.DEFINE_string("data_dir", "data/synthetic_rhd", "The data set it was trained on.")
flags.DEFINE_string("out", None, "Also write the record to this JSON file.")


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"error: --model: {path}: not readable ({e}); run `make demo` first")


def demo_record(model_dir, data_dir):
    """{'model', 'mean_pose'} metrics (KEYS), 'ratio' of their mean EPEs, 'checkpoint',
    'config' and 'provenance', with paths relative to the repository."""
    model = _read(os.path.join(model_dir, "eval_test", "metrics.json"))
    reference = _read(os.path.join(model_dir, "mean_pose", "metrics.json"))
    record = {"model": {k: model[k] for k in KEYS},
              "mean_pose": {k: reference[k] for k in KEYS},
              "ratio": model["epe_mean_mm"] / reference["epe_mean_mm"],
              "checkpoint": os.path.abspath(model["checkpoint"]),
              "config": _read(os.path.join(model_dir, "config.json")),
              "provenance": provenance.run_provenance(data_dir, provenance.git_state(REPO),
                                                      None, repo=REPO)}
    return provenance.portable(record, REPO)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    record = demo_record(FLAGS.model, FLAGS.data_dir)
    print(f"test EPE: model {record['model']['epe_mean_mm']:.2f} mm, training mean pose "
          f"{record['mean_pose']['epe_mean_mm']:.2f} mm, ratio {record['ratio']:.2f}")
    if FLAGS.out:
        text = json.dumps(record, indent=1) + "\n"
        print(f"record: {atomic_write(FLAGS.out, lambda f: f.write(text.encode('utf-8')))}")


if __name__ == "__main__":
    app.run(main)
