r"""Estimates the 3D hand pose in one RGB image with a model exported by export.py.

  python predict.py --saved_model=exports/demo --image=hand.png [--box=x,y,w,h] \
      [--K=fx,fy,cx,cy] [--bone_mm=46] [--out=hand_pose.png]

The image is cropped as training crops an unlabelled sample (data_pipeline/preprocess.py:
detect_hand, crop_camera, warp_image), with the box standing in for the hand mask: the crop
camera is turned towards the box centre when the model was trained with viewpoint correction
(only the centre's direction matters, so no depth is needed), and the crop's half-width is the
farthest box corner times the training data set's margin (serving/crop.py).

  --box   x,y,w,h in pixels as cv2.boundingRect gives it (top-left pixel, width and height),
          inside the image; default: the whole image. A tight box around the hand works best.
  --K     the camera's fx,fy,cx,cy in pixels; default: fx = fy = the image width (a 53 degree
          horizontal field of view) and the principal point at the image centre,
          ((W - 1) / 2, (H - 1) / 2) with pixel centres at integer coordinates. The output says
          when the default is used.
  --bone_mm  the middle finger's MCP-PIP bone length in mm, the pose's unit (SPEC 5); default 46,
          the mean adult proximal phalanx of the synthetic hand model.

It prints the 21 keypoints in the canonical RHD order (SPEC 5: 0 wrist; 1-4 thumb tip..MCP;
5-8 index; 9-12 middle; 13-16 ring; 17-20 little; root 12), root-relative: normalised, as the
model outputs them (R_view (X - X_root) / s, the crop camera's frame), and in mm in the input
camera's frame (R_view^T undone, times --bone_mm). It writes a picture (--out, default
<image>_pose.png): the crop with the predicted skeleton projected by the crop camera (at the
depth at which it spans the box, since an image has no depth), the pose in 3D, and the cloud
decoded from z where the model has a cloud decoder.
"""
import os
import sys
from typing import Sequence

from common import cli

cli.quiet_tensorflow(sys.argv)

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402

from data_pipeline import io  # noqa: E402
from data_pipeline.sample import DataError  # noqa: E402
from data_pipeline.synthetic import hand_model  # noqa: E402
from serving import crop as crop_lib  # noqa: E402
from serving import prediction as prediction_lib  # noqa: E402
from serving import saved_model  # noqa: E402

# The middle finger's proximal phalanx (its MCP-PIP bone, the normalisation bone) of the
# synthetic hand model: a mean adult value.
_MIDDLE = hand_model.FINGERS.index("middle")
DEFAULT_BONE_MM = 1000.0 * float(hand_model.MEAN_BONE_LENGTHS[_MIDDLE, 0])

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "A directory written by export.py.")
flags.DEFINE_string("image", None, "The RGB image (PNG or any format OpenCV reads).")
flags.DEFINE_string("box", None, "x,y,w,h of the hand in pixels (top-left pixel, width, height); "
                    "default: the whole image.")
flags.DEFINE_string("K", None, "fx,fy,cx,cy of the camera in pixels; default: fx = fy = image "
                    "width, principal point at the image centre ((W - 1) / 2, (H - 1) / 2).")
flags.DEFINE_float("bone_mm", DEFAULT_BONE_MM, "Length of the middle MCP-PIP bone in mm, the "
                   "normalised pose's unit (default: the synthetic hand model's mean adult "
                   "value).")
flags.DEFINE_string("out", None, "The picture to write (default: <image>_pose.png).")
flags.mark_flags_as_required(["saved_model", "image"])
cli.define_verbose_flag()


def report(settings: dict, prediction: dict, notes: Sequence[str], R_view: np.ndarray,
           bone_mm: float) -> str:
    """The printed result (module doc).

    Args:
      settings: the export's settings (serving/saved_model.py).
      prediction: pose (21, 3) normalised, optional cloud (N, 3), from serving/prediction.py's predict_crop.
      notes: lines on the image, box and camera used.
      R_view: (3, 3) the crop's view rotation.
      bone_mm: the bone length s, mm.

    Returns:
      the lines to print: settings, notes, and one line per keypoint with its normalised
      coordinates (6 decimals) and root-relative mm in the input camera's frame.
    """
    mm = prediction_lib.camera_pose_mm(prediction["pose"], R_view, bone_mm)
    lines = [f"model: {settings['strategy']} trained on {settings['data']}, "
             f"{settings['image_size']} px crops, viewpoint correction "
             f"{'on' if settings['view_correction'] else 'off'}",
             *notes,
             f"21 keypoints, {settings['keypoint_order']}",
             "  normalised: R_view (X - X_root) / s, the crop camera's frame (the model's output)",
             "  mm: root-relative, the input camera's frame (x right, y down, z forward), "
             f"times s = {bone_mm:g} mm",
             f"{'#':>2} {'keypoint':<12} {'normalised x':>12} {'y':>10} {'z':>10}"
             f" {'mm x':>8} {'y':>8} {'z':>8}"]
    for k, name in enumerate(saved_model.KEYPOINT_NAMES):
        n, m = prediction["pose"][k], mm[k]
        lines.append(f"{k:>2} {name:<12} {n[0]:>+12.6f} {n[1]:>+10.6f} {n[2]:>+10.6f}"
                     f" {m[0]:>+8.1f} {m[1]:>+8.1f} {m[2]:>+8.1f}")
    if "cloud" in prediction:
        lines.append(f"cloud decoded from z: {len(prediction['cloud'])} points (in the picture)")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    try:
        settings = saved_model.read_settings(FLAGS.saved_model)
    except (FileNotFoundError, ValueError) as e:
        cli.exit_with(e, flag="saved_model")
    try:
        color = io.read_rgb(FLAGS.image)
    except DataError as e:
        cli.exit_with(e, flag="image")
    height, width = color.shape[:2]
    notes = []
    if FLAGS.box is None:
        box = (0.0, 0.0, float(width), float(height))
        box_note = " (no --box: the whole image)"
    else:
        try:
            box = crop_lib.parse_numbers(FLAGS.box, ("x", "y", "w", "h"))
        except ValueError as e:
            cli.exit_with(e, flag="box")
        box_note = ""
    notes.append(f"image: {FLAGS.image} ({width}x{height}), box x,y,w,h = "
                 f"{','.join(f'{v:g}' for v in box)}{box_note}")
    if FLAGS.K is None:
        K = crop_lib.default_intrinsics(width, height)
        K_note = " (no --K: fx = fy = image width, principal point at the image centre)"
    else:
        try:
            K = crop_lib.parse_intrinsics(FLAGS.K)
        except ValueError as e:
            cli.exit_with(e, flag="K")
        K_note = ""
    notes.append(f"K: fx={K[0, 0]:g} fy={K[1, 1]:g} cx={K[0, 2]:g} cy={K[1, 2]:g}{K_note}")
    if not FLAGS.bone_mm > 0:
        cli.exit_with(ValueError(f"must be positive, got {FLAGS.bone_mm:g}"), flag="bone_mm")
    if FLAGS["bone_mm"].using_default_value:
        notes.append(f"bone length s: {FLAGS.bone_mm:g} mm (no --bone_mm: the synthetic hand "
                     "model's mean adult middle MCP-PIP bone)")
    try:
        crop = crop_lib.crop_from_box(color, K, box, settings["image_size"],
                                        settings["view_correction"], settings["box_margin"],
                                        FLAGS.image)
    except ValueError as e:  # DataError included: the box spans more than a half-space
        cli.exit_with(e, flag="box")
    try:
        export = saved_model.load_export(FLAGS.saved_model)
    except (FileNotFoundError, ValueError) as e:
        cli.exit_with(e, flag="saved_model")
    prediction = prediction_lib.predict_crop(export, crop)
    print(report(settings, prediction, notes, crop.R_view, FLAGS.bone_mm))
    out = FLAGS.out or os.path.splitext(FLAGS.image)[0] + "_pose.png"
    try:
        prediction_lib.save_picture(crop, prediction, out,
                                title=f"{os.path.basename(FLAGS.image)}: {settings['strategy']}")
    except OSError as e:
        cli.exit_with(e, flag="out")
    print(f"picture: {os.path.abspath(out)}")


if __name__ == "__main__":
    app.run(main)
