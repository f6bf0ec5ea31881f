"""The exported inference path: the SavedModel export.py writes and predict.py runs (README
"Export and inference").

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

A new image is cropped as an unlabelled training sample is (preprocess.detect_hand), with a box
standing in for the hand mask: the crop camera looks at the box centre (`crop_camera` uses only
the centre's direction, so no depth is needed) and its half-width is the farthest box corner
times the data set's margin (RHD and synthetic: the mask box, CROP_MARGIN_MASK; STB: the box of
the projected keypoints, CROP_MARGIN_KEYPOINTS). A box's corners lie at least as far from the
centre as any mask pixel, so an RHD-trained model sees a box crop up to sqrt(2) looser than its
unlabelled training crops: the tighter the box, the closer to training. Labelled training crops
were centred on the root keypoint instead of the box centre (README "Pre-processing": a median
32 mm apart on the synthetic set).
"""
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Dict, Optional, Sequence, Tuple

from matplotlib.figure import Figure
import numpy as np
import tensorflow as tf

from data_pipeline import geometry, preprocess
from data_pipeline.sample import NUM_KEYPOINTS
from evaluation import figures

FORMAT = "aligned-latent-hand-pose"
FORMAT_VERSION = 1
SETTINGS_FILE = "export.json"
# SavedModel and Keras model must agree this closely (absolute plus relative, np.allclose); on
# the CPU they run the same kernels and agree exactly.
TOLERANCE = 1e-5
# The box each data set's detect_hand takes the crop from, and that box's margin.
BOX_MARGINS = {"synthetic": preprocess.CROP_MARGIN_MASK, "rhd": preprocess.CROP_MARGIN_MASK,
               "stb": preprocess.CROP_MARGIN_KEYPOINTS}
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
      run: model.training.RunConfig of the checkpoint.
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
      model: a restored AlignedLatentModel (model.training.restore_model).
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


# ----------------------------------------------------------------------------------------------
# A new image: the crop from a box, the prediction, the picture.

@dataclasses.dataclass(frozen=True)
class Crop:
    """The crop of a new image and its camera (preprocess.Example's conventions).

    Attributes:
      image: (S, S, 3) uint8 RGB.
      R_view: (3, 3) the view rotation (the identity without viewpoint correction).
      K_crop: (3, 3) intrinsics of the crop in the rotated frame: crop pixel =
        project(K_crop, R_view X) for a point X of the input camera's frame.
      centre: (3,) the ray through the box centre (z = 1), input camera frame.
      corners_crop: (4, 2) the box corners, crop pixels.
    """

    image: np.ndarray
    R_view: np.ndarray
    K_crop: np.ndarray
    centre: np.ndarray
    corners_crop: np.ndarray


def parse_numbers(text: str, names: Sequence[str]) -> Tuple[float, ...]:
    """'1,2,3' -> (1.0, 2.0, 3.0): len(names) finite comma-separated numbers, else ValueError."""
    expected = f"expected {len(names)} comma-separated numbers {','.join(names)}"
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{expected}, got {text!r}") from None
    if len(values) != len(names) or not np.all(np.isfinite(values)):
        raise ValueError(f"{expected}, got {text!r}")
    return values


def parse_intrinsics(text: str) -> np.ndarray:
    """'fx,fy,cx,cy' (pixels) -> (3, 3) intrinsics; ValueError unless fx, fy > 0."""
    fx, fy, cx, cy = parse_numbers(text, ("fx", "fy", "cx", "cy"))
    if not (fx > 0 and fy > 0):
        raise ValueError(f"focal lengths must be positive, got fx={fx:g}, fy={fy:g}")
    return intrinsics(fx, fy, cx, cy)


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) pinhole intrinsics from focal lengths and principal point, pixels."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """The K assumed for an image without one: fx = fy = the image width (a 53 degree horizontal
    field of view, a common webcam's), principal point at the image centre ((W - 1) / 2,
    (H - 1) / 2), pixel centres at integer coordinates (data_pipeline/geometry.py)."""
    return intrinsics(width, width, (width - 1) / 2.0, (height - 1) / 2.0)


def crop_from_box(color: np.ndarray, K: np.ndarray, box: Sequence[float], image_size: int,
                  view_correction: bool, margin: float, source: str = "") -> Crop:
    """Crops a new image around a hand box as detect_hand crops an unlabelled sample.

    Args:
      color: (H, W, 3) uint8 RGB.
      K: (3, 3) intrinsics of `color`, pixels.
      box: (x, y, w, h) pixels, as cv2.boundingRect gives it: x, y the top-left pixel, w, h >= 1
        the size in pixels, inside the image; its corner pixels are (x, y) and
        (x + w - 1, y + h - 1).
      image_size: crop side S, pixels.
      view_correction: turn the crop camera towards the box centre (SPEC 5).
      margin: factor on the farthest corner's distance from the centre (BOX_MARGINS).
      source: the image, for messages.

    Raises:
      ValueError: the box is malformed or not inside the image.
      DataError: the box spans more than the crop camera's half-space.
    """
    x, y, w, h = (float(v) for v in box)
    height, width = color.shape[:2]
    if not (w >= 1 and h >= 1):
        raise ValueError(f"the box {x:g},{y:g},{w:g},{h:g} must be at least one pixel wide and "
                         "high")
    if not (x >= 0 and y >= 0 and x + w <= width and y + h <= height):
        raise ValueError(f"the box {x:g},{y:g},{w:g},{h:g} (x,y,w,h) is not inside the "
                         f"{width}x{height} image")
    lo, hi = np.array([x, y]), np.array([x + w - 1, y + h - 1])
    corners = preprocess.box_corners(lo, hi)
    centre = geometry.back_project(K, (lo + hi) / 2.0, 1.0)
    R_view, K_crop = preprocess.crop_camera(K, centre, corners, margin, image_size,
                                            view_correction, source)
    image = preprocess.warp_image(color, K, R_view, K_crop, image_size)
    corners_crop = geometry.project(K_crop, geometry.back_project(K, corners, np.ones(4))
                                    @ R_view.T)
    return Crop(image, R_view, K_crop, centre, corners_crop)


def crop_to_input(image: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 crop -> (S, S, 3) float32 in [0, 1], the conversion of
    data_pipeline.dataset.model_inputs."""
    return tf.image.convert_image_dtype(image, tf.float32).numpy()


def predict_crop(export: Export, crop: Crop) -> Dict[str, np.ndarray]:
    """Runs the export on one crop.

    Returns:
      dict: pose (21, 3) normalised, z (D,), and cloud (N, 3) normalised where exported.
    """
    out = export.serve(image=tf.constant(crop_to_input(crop.image)[None]))
    return {k: v.numpy()[0] for k, v in out.items()}


def camera_pose_mm(pose: np.ndarray, R_view: np.ndarray, bone_mm: float) -> np.ndarray:
    """Normalised pose (21, 3) -> root-relative keypoints in the input camera's frame, mm:
    R_view^T pose * bone length (the inverse of SPEC 5's normalisation, up to the root)."""
    return np.asarray(pose, np.float64) @ np.asarray(R_view) * bone_mm


def skeleton_pixels(pose: np.ndarray, crop: Crop) -> np.ndarray:
    """Crop pixels (21, 2) of a normalised pose: project(K_crop, R_view X).

    An image has no depth, so the root is put on the ray through the box centre at the depth
    (in bone lengths) at which the skeleton spans as many crop pixels as the box does (weak
    perspective: extent in pixels = f_crop * extent / depth).
    """
    pose = np.asarray(pose, np.float64)
    ray = crop.R_view @ crop.centre
    ray = ray / ray[2]
    pose_extent = max(np.ptp(pose[:, 0]), np.ptp(pose[:, 1]), 1e-6)
    box_extent = max(np.max(np.ptp(crop.corners_crop, axis=0)), 1.0)
    depth = crop.K_crop[0, 0] * pose_extent / box_extent
    depth = max(depth, 2.0 * np.max(np.abs(pose[:, 2])))  # every keypoint in front
    return geometry.project(crop.K_crop, depth * ray + pose)


def save_picture(crop: Crop, prediction: Dict[str, np.ndarray], path: str,
                 title: Optional[str] = None) -> str:
    """The crop with the predicted skeleton drawn over it (`skeleton_pixels`), the pose in 3D,
    and the cloud decoded from z, coloured by depth (paper Fig. 3), where the export has one.

    Args:
      crop: from `crop_from_box`.
      prediction: from `predict_crop`: pose (21, 3), optional cloud (N, 3), normalised.
      path: output PNG, written atomically.
      title: optional figure title.

    Returns:
      path.
    """
    cloud = prediction.get("cloud")
    columns = 2 if cloud is None else 3
    fig = Figure(figsize=(3.2 * columns, 3.4))
    ax = fig.add_subplot(1, columns, 1)
    ax.imshow(crop.image)
    uv = skeleton_pixels(prediction["pose"], crop)
    for a, b in figures.SKELETON:
        ax.plot(uv[[a, b], 0], uv[[a, b], 1], color=figures.PRED_COLOUR, linewidth=1.5)
    ax.scatter(uv[:, 0], uv[:, 1], color="yellow", s=8, zorder=3)
    size = crop.image.shape[0]
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title("crop, predicted skeleton", fontsize=9)
    ax = fig.add_subplot(1, columns, 2, projection="3d")
    figures.draw_pose(ax, prediction["pose"], figures.PRED_COLOUR)
    figures.setup_3d(ax, prediction["pose"], "pose from z_rgb (normalised)")
    if cloud is not None:
        ax = fig.add_subplot(1, columns, 3, projection="3d")
        figures.draw_cloud(ax, cloud, (float(cloud[:, 2].min()), float(cloud[:, 2].max())))
        figures.setup_3d(ax, cloud, "cloud from z_rgb")
    if title:
        fig.suptitle(title, fontsize=9)
    return figures.save_figure(fig, path)
