"""The SavedModel of the inference path: what export.py writes and predict.py loads
(docs/export.md).

The SavedModel maps an RGB crop to what the paper's inference gives (SPEC 2: the RGB encoder
only, z = the mean of q(z|R), no sampling):

  serving_default(image (B, S, S, 3) float32 in [0, 1]) ->
      pose  (B, 21, 3) normalised: R_view (X - X_root) / s, canonical RHD order (SPEC 5)
      z     (B, D) the mean of q(z|R)
      cloud (B, N, 3) normalised, the point cloud decoded from z (strategies kl, poe, and
            extended with the cloud decoder; absent otherwise)

The same function is the loaded object's `serve`. The pre-processing a new image needs is stored
twice, identically: as DIR/assets/export.json (readable without TensorFlow) and as the loaded
object's `settings` (a string variable holding that JSON). Its keys: format, format_version,
strategy, decoders, data, image_size (S), view_correction, num_points (N), latent_dim (D),
num_keypoints, box_margin, keypoint_order, outputs, checkpoint.

A new image is cropped for it by serving/crop.py.
"""
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Dict

import numpy as np
import tensorflow as tf

from data_pipeline.sample import NUM_KEYPOINTS
from serving.crop import BOX_MARGINS

FORMAT = "aligned-latent-hand-pose"
FORMAT_VERSION = 1
SETTINGS_FILE = "export.json"
# SavedModel and Keras model must agree this closely (absolute plus relative, np.allclose); on
# the CPU they run the same kernels and agree exactly.
TOLERANCE = 1e-5
# The keys of an export's settings (module doc).
SETTINGS_KEYS = ("format", "format_version", "strategy", "decoders", "data", "image_size",
                 "view_correction", "num_points", "latent_dim", "num_keypoints", "box_margin",
                 "keypoint_order", "outputs", "checkpoint")
_FINGERS = ("thumb", "index", "middle", "ring", "little")
# The canonical (RHD) order of SPEC 5, with RHD's joint names (the thumb's too).
KEYPOINT_NAMES = ("wrist",) + tuple(f"{finger}_{joint}" for finger in _FINGERS
                                    for joint in ("tip", "dip", "pip", "mcp"))
KEYPOINT_ORDER = ("RHD (SPEC 5): 0 wrist; 1-4 thumb tip..MCP; 5-8 index; 9-12 middle; "
                  "13-16 ring; 17-20 little; root 12 (middle MCP), scale bone 11-12")


def export_settings(run, checkpoint: str) -> Dict:
    """What a user of the export needs: the pre-processing and the outputs (module doc).

    Args:
      run: model.run_config.RunConfig of the checkpoint.
      checkpoint: the restored checkpoint's path.
    """
    model, data = run.model, run.data
    outputs = {"pose": [None, NUM_KEYPOINTS, 3], "z": [None, model.latent_dim]}
    if "cloud" in model.decoder_names:
        outputs["cloud"] = [None, data.num_points, 3]
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "strategy": model.strategy,
        "decoders": list(model.decoder_names), "data": data.data,
        "image_size": data.image_size, "view_correction": data.view_correction,
        "num_points": data.num_points, "latent_dim": model.latent_dim,
        "num_keypoints": NUM_KEYPOINTS, "box_margin": BOX_MARGINS[data.data],
        "keypoint_order": KEYPOINT_ORDER, "outputs": outputs,
        "checkpoint": os.path.abspath(checkpoint),
    }


class InferenceModule(tf.Module):
    """The inference path of a restored model as a tf.Module (module doc).

    Only the model's variables are tracked, not the Keras model itself, so saving does not
    serialise Keras' layer metadata; `serve` closes over the model.
    """

    def __init__(self, model, settings: Dict, settings_path: str):
        super().__init__(name="hand_pose_inference")
        self.model_variables = list(model.variables)
        self.settings = tf.Variable(json.dumps(settings, sort_keys=True), trainable=False,
                                    name="settings")
        self.settings_file = tf.saved_model.Asset(settings_path)
        has_cloud = "cloud" in settings["outputs"]
        size = settings["image_size"]

        def serve(image):
            mu, _ = model.encode_rgb(image, training=False)
            decoded = model.decode(mu, training=False)
            # 'pose' of decode(mu) is predict_pose(image): the pose decoder on the mean.
            out = {"pose": decoded["pose"], "z": mu}
            if has_cloud:
                out["cloud"] = decoded["cloud"]
            return out

        self.serve = tf.function(serve, input_signature=[
            tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])


def check_out_dir(out_dir: str) -> None:
    """FileExistsError unless out_dir is free for an export: absent, or an empty directory."""
    if os.path.exists(out_dir) and not (os.path.isdir(out_dir) and not os.listdir(out_dir)):
        raise FileExistsError(f"{out_dir} exists and is not an empty directory; pass a new "
                              "--out (nothing was written)")


def _verify(model, export_dir: str, settings: Dict) -> None:
    """Loads the SavedModel in export_dir and checks it against the Keras model on random crops.

    Raises:
      ValueError: an output differs by more than TOLERANCE.
    """
    size = settings["image_size"]
    crops = np.random.default_rng(0).uniform(size=(2, size, size, 3)).astype(np.float32)
    exported = tf.saved_model.load(export_dir).signatures["serving_default"](
        image=tf.constant(crops))
    mu, _ = model.encode_rgb(tf.constant(crops), training=False)
    expected = {"pose": model.predict_pose(tf.constant(crops), training=False), "z": mu}
    if "cloud" in settings["outputs"]:
        expected["cloud"] = model.decode(mu, training=False)["cloud"]
    if sorted(exported) != sorted(expected):
        raise ValueError(f"export_model: the SavedModel's outputs {sorted(exported)} are not "
                         f"{sorted(expected)}")
    for name, value in expected.items():
        if not np.allclose(exported[name].numpy(), value.numpy(), rtol=TOLERANCE,
                           atol=TOLERANCE):
            gap = np.max(np.abs(exported[name].numpy() - value.numpy()))
            raise ValueError(f"export_model: the SavedModel's {name!r} differs from the Keras "
                             f"model's by {gap:.3g} (tolerance {TOLERANCE:g})")


def export_model(model, run, checkpoint: str, out_dir: str) -> Dict:
    """Writes the SavedModel of `model`'s inference path (module doc) to out_dir.

    It is written and checked against the Keras model (`_verify`) in a temporary directory
    beside out_dir, then renamed to out_dir, so a failure never leaves a half-written out_dir.

    Args:
      model: a restored AlignedLatentModel (model.run_config.restore_model).
      run: its RunConfig.
      checkpoint: the checkpoint it was restored from.
      out_dir: the export's directory; must not exist, or be an empty directory.

    Returns:
      the settings stored with the export.

    Raises:
      FileExistsError: out_dir exists and is not an empty directory (nothing is written).
      ValueError: the SavedModel does not reproduce the Keras model.
    """
    out_dir = os.path.abspath(out_dir)
    check_out_dir(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    settings = export_settings(run, checkpoint)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    try:
        staged = os.path.join(tmp, "saved_model")
        with tempfile.TemporaryDirectory() as scratch:
            # The Asset is copied into staged/assets/ under its own name by the save.
            settings_path = os.path.join(scratch, SETTINGS_FILE)
            with open(settings_path, "w") as f:
                json.dump(settings, f, indent=2, sort_keys=True)
            module = InferenceModule(model, settings, settings_path)
            tf.saved_model.save(module, staged,
                                signatures={"serving_default": module.serve})
        _verify(model, staged, settings)
        check_out_dir(out_dir)  # again: something may have appeared meanwhile
        # rename(2) replaces an empty directory and fails on a non-empty one.
        os.rename(staged, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return settings


def read_settings(export_dir: str) -> Dict:
    """The settings of an export (module doc), read from its assets/export.json.

    Raises:
      FileNotFoundError: export_dir does not exist.
      ValueError: export_dir is not a SavedModel that export.py wrote.
    """
    if not os.path.isdir(export_dir):
        raise FileNotFoundError(f"{export_dir} is not a directory")
    path = os.path.join(export_dir, "assets", SETTINGS_FILE)
    not_export = f"{export_dir} is not a SavedModel written by export.py"
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(export_dir, "saved_model.pb"))):
        raise ValueError(f"{not_export} (it lacks saved_model.pb or assets/{SETTINGS_FILE})")
    try:
        with open(path) as f:
            settings = json.load(f)
    except ValueError as e:
        raise ValueError(f"{not_export} ({path} is not JSON: {e})") from e
    if not isinstance(settings, dict) or settings.get("format") != FORMAT:
        raise ValueError(f"{not_export} ({path} does not describe a {FORMAT} export)")
    if settings.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {settings.get('format_version')!r}, this "
                         f"version reads {FORMAT_VERSION}; export the checkpoint again")
    missing = sorted(set(SETTINGS_KEYS) - set(settings))
    if missing:
        raise ValueError(f"{path}: missing {missing}; export the checkpoint again")
    return settings


@dataclasses.dataclass(frozen=True)
class Export:
    """A loaded export: its settings and its serving function (image -> dict, module doc)."""

    settings: Dict
    serve: object


def load_export(export_dir: str) -> Export:
    """Loads a SavedModel written by `export_model`.

    Raises:
      FileNotFoundError, ValueError: see `read_settings`; ValueError also when TensorFlow cannot
        load it.
    """
    settings = read_settings(export_dir)
    try:
        loaded = tf.saved_model.load(export_dir)
        serve = loaded.signatures["serving_default"]
    except (KeyError, OSError, ValueError, tf.errors.OpError) as e:
        raise ValueError(f"{export_dir}: cannot be loaded as a SavedModel ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:300]})") from e
    return Export(settings, serve)
