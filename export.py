r"""Exports a trained model's inference path as a TensorFlow SavedModel.

  python export.py --ckpt=runs/demo --out=exports/demo

--ckpt is a model_dir written by train.py (its newest checkpoint) or a checkpoint prefix inside
one (runs/demo/ckpt-1500). --out must not exist, or be an empty directory. The SavedModel
(serving/saved_model.py) maps an RGB crop (B, S, S, 3) float32 in [0, 1] to the paper's inference
(z = the mean of q(z|R)), with the serving signature 'serving_default' and these outputs:

  pose   (B, 21, 3) the normalised pose, R_view (X - X_root) / s, canonical RHD order (SPEC 5);
         exactly model.predict_pose
  z      (B, D) the mean of q(z|R)
  cloud  (B, N, 3) the normalised cloud decoded from z (strategies kl, poe, and extended with
         the cloud decoder)

The pre-processing a new image needs (crop size S, view_correction, points N, data set,
strategy, the box margin) is stored in --out/assets/export.json and, as the same JSON, in the
loaded object's `settings`. predict.py crops an image and runs the export.

The SavedModel is written to a temporary directory beside --out, checked against the Keras model
on random crops (within 1e-5), and renamed to --out, so a failure never leaves a half-written
--out.
"""
import json
import os
import sys

from common import cli

cli.quiet_tensorflow(sys.argv)

from absl import app, flags, logging  # noqa: E402

from serving import saved_model  # noqa: E402
from model import run_config  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("ckpt", None,
                    "A model_dir written by train.py, or a checkpoint prefix inside one.")
flags.DEFINE_string("out", None, "Directory of the SavedModel to write; it must not exist, or "
                    "be empty.")
flags.mark_flags_as_required(["ckpt", "out"])
cli.define_verbose_flag()


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    if not FLAGS.verbose:
        # The SavedModel writer logs, at INFO, its renamed inputs and the temporary directory.
        logging.set_verbosity(logging.WARNING)
    out_dir = os.path.abspath(FLAGS.out)
    try:
        saved_model.check_out_dir(out_dir)  # before restoring, so the mistake costs nothing
    except FileExistsError as e:
        cli.exit_with(e, flag="out")
    try:
        model, run, checkpoint = run_config.restore_model(FLAGS.ckpt)
    except (FileNotFoundError, ValueError) as e:
        cli.exit_with(e, flag="ckpt")
    try:
        settings = saved_model.export_model(model, run, checkpoint, out_dir)
    except OSError as e:  # FileExistsError included: --out filled up meanwhile
        cli.exit_with(e, flag="out")
    except ValueError as e:  # the SavedModel does not reproduce the model: nothing written
        cli.exit_with(e)
    outputs = ", ".join(f"{name} {tuple(shape)}" for name, shape in settings["outputs"].items())
    print(f"exported {settings['strategy']} ({checkpoint}) to {out_dir}")
    print(f"serving_default: image (None, {settings['image_size']}, {settings['image_size']}, 3)"
          f" float32 in [0, 1] -> {outputs}")
    print("settings: " + json.dumps({k: settings[k] for k in (
        "data", "image_size", "view_correction", "num_points", "box_margin")}))


if __name__ == "__main__":
    app.run(main)
