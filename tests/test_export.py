"""export.py and predict.py: the SavedModel reproduces the Keras model, predict.py crops a new
image as the training pipeline crops an unlabelled sample, and bad input is refused by flag."""
import dataclasses
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import io, preprocess, rhd, synthetic
from data_pipeline.config import DataConfig
from serving import crop as crop_lib
from serving import prediction as prediction_lib
from serving import saved_model
from model import config as model_config
from model import run_config, strategies

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32
POINTS = 16
# SavedModel against Keras: the same kernels run on the same input (exact on the CPU); 1e-5
# leaves room for another device's kernels.
TOLERANCE = 1e-5
# predict.py prints normalised coordinates with 6 decimals: rounding adds up to 5e-7.
PRINTED_TOLERANCE = TOLERANCE + 5e-7


def _run(script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, os.path.join(REPO, script), *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=180)


def _trained_run(model_dir, strategy):
    """A tiny model saved as train.py saves one (checkpoint and config.json); returns it."""
    cfg = model_config.ModelConfig(
        strategy=strategy, image_size=SIZE, latent_dim=8, num_points=POINTS,
        resnet_widths=(4, 4, 4, 4), cloud_widths=(4, 4), pose_hidden=8, heatmap_channels=8,
        fold_hidden=8)
    tf.keras.utils.set_random_seed(1)
    model = strategies.build_model(cfg)
    # Weights unlike any fresh initialisation, so only a real restore reproduces them.
    for v in model.variables:
        v.assign_add(tf.random.normal(v.shape, stddev=0.1))
    tf.train.Checkpoint(model=model).save(os.path.join(model_dir, "ckpt"))
    run_config.save_run_config(model_dir, run_config.RunConfig(
        cfg, DataConfig(image_size=SIZE, num_points=POINTS), run_config.TrainConfig()))
    return model


def _export(model_dir, out_dir):
    restored, run, checkpoint = run_config.restore_model(model_dir)
    return saved_model.export_model(restored, run, checkpoint, out_dir)


@pytest.fixture(scope="module")
def poe_export(tmp_path_factory):
    """(Keras model, model_dir, export_dir) of a tiny S4 model, whose export has a cloud."""
    root = tmp_path_factory.mktemp("poe")
    model = _trained_run(str(root / "run"), "poe")
    _export(str(root / "run"), str(root / "export"))
    return model, str(root / "run"), str(root / "export")


def _check_outputs(model, export_dir, has_cloud):
    crops = np.random.default_rng(3).uniform(size=(4, SIZE, SIZE, 3)).astype(np.float32)
    loaded = saved_model.load_export(export_dir)
    out = {k: v.numpy() for k, v in loaded.serve(image=tf.constant(crops)).items()}
    assert sorted(out) == sorted(["pose", "z"] + (["cloud"] if has_cloud else []))
    mu, _ = model.encode_rgb(tf.constant(crops), training=False)
    np.testing.assert_allclose(out["pose"], model.predict_pose(crops, training=False).numpy(),
                               rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(out["z"], mu.numpy(), rtol=TOLERANCE, atol=TOLERANCE)
    if has_cloud:
        assert out["cloud"].shape == (4, POINTS, 3)
        np.testing.assert_allclose(out["cloud"], model.decode(mu)["cloud"].numpy(),
                                   rtol=TOLERANCE, atol=TOLERANCE)
    return loaded


def test_saved_model_reproduces_the_keras_model_with_its_cloud(poe_export):
    model, _, export_dir = poe_export
    loaded = _check_outputs(model, export_dir, has_cloud=True)
    settings = loaded.settings
    assert (settings["strategy"], settings["data"], settings["image_size"],
            settings["view_correction"], settings["num_points"]) == (
                "poe", "synthetic", SIZE, True, POINTS)
    assert settings["box_margin"] == preprocess.CROP_MARGIN_MASK
    assert settings["outputs"]["cloud"] == [None, POINTS, 3]
    # The same settings are readable from the loaded object.
    obj = tf.saved_model.load(export_dir)
    assert json.loads(obj.settings.numpy()) == settings
    with open(obj.settings_file.asset_path.numpy()) as f:
        assert json.load(f) == settings


def test_saved_model_without_a_cloud_decoder(tmp_path):
    model = _trained_run(str(tmp_path / "run"), "cvae")
    settings = _export(str(tmp_path / "run"), str(tmp_path / "export"))
    assert "cloud" not in settings["outputs"]
    _check_outputs(model, str(tmp_path / "export"), has_cloud=False)


def test_predict_crops_as_the_pipeline_crops_an_unlabelled_sample(poe_export, tmp_path):
    model, _, export_dir = poe_export
    synthetic.generate("rhd", str(tmp_path / "rhd"), 2, 1, seed=5, workers=1)
    reader = rhd.RHDReader(str(tmp_path / "rhd"), "train")
    sample = reader[0]
    # The box of the unlabelled sample's crop: detect_hand's mask box, as cv2.boundingRect.
    x, y, w, h = cv2.boundingRect(sample.hand_mask.astype(np.uint8))
    _, pixels, margin = preprocess.detect_hand(sample)
    np.testing.assert_array_equal(pixels.min(axis=0), [x, y])
    np.testing.assert_array_equal(pixels.max(axis=0), [x + w - 1, y + h - 1])
    # The pipeline's own pre-processing of the unlabelled sample, with that box as its mask:
    # the box's farthest pixels are its corners, which is all predict.py is given.
    box_mask = np.zeros_like(sample.hand_mask)
    box_mask[y:y + h, x:x + w] = True
    example = preprocess.preprocess(dataclasses.replace(sample, hand_mask=box_mask), SIZE,
                                    view_correction=True, unlabelled_scale=0.046)

    color = io.read_rgb(reader.describe(0))
    crop = crop_lib.crop_from_box(color, sample.K_color, (x, y, w, h), SIZE, True, margin)
    np.testing.assert_allclose(crop.R_view, example.R_view, atol=1e-12)
    np.testing.assert_allclose(crop.K_crop, example.K_crop, rtol=1e-12)
    # Same image, same camera, same warp: the crops are equal pixel for pixel.
    np.testing.assert_array_equal(crop.image, example.image)
    assert example.image.std() > 10  # a real crop of the hand, not a black border
    # The skeleton is drawn with its root on the box centre, the crop's centre.
    root_uv = prediction_lib.skeleton_pixels(np.zeros((21, 3)), crop)[12]
    np.testing.assert_allclose(root_uv, [(SIZE - 1) / 2] * 2, atol=1e-9)
    # Without viewpoint correction too.
    plain = preprocess.preprocess(dataclasses.replace(sample, hand_mask=box_mask), SIZE,
                                  view_correction=False, unlabelled_scale=0.046)
    np.testing.assert_array_equal(
        crop_lib.crop_from_box(color, sample.K_color, (x, y, w, h), SIZE, False, margin).image,
        plain.image)
    image = tf.image.convert_image_dtype(example.image, tf.float32)[None]  # as model_inputs
    expected = model.predict_pose(image, training=False).numpy()[0]
    np.testing.assert_allclose(prediction_lib.predict_crop(saved_model.load_export(export_dir), crop)["pose"],
                               expected, rtol=TOLERANCE, atol=TOLERANCE)

    K = sample.K_color
    picture = tmp_path / "picture.png"
    result = _run("predict.py", f"--saved_model={export_dir}", f"--image={reader.describe(0)}",
                  f"--box={x},{y},{w},{h}", f"--K={K[0, 0]!r},{K[1, 1]!r},{K[0, 2]!r},{K[1, 2]!r}",
                  "--bone_mm=50", f"--out={picture}")
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\s*(\d+) (\w+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$",
                      result.stdout, flags=re.M)
    assert [int(r[0]) for r in rows] == list(range(21))
    assert [r[1] for r in rows] == list(saved_model.KEYPOINT_NAMES)
    printed = np.array([[float(v) for v in r[2:5]] for r in rows])
    np.testing.assert_allclose(printed, expected, rtol=0, atol=PRINTED_TOLERANCE)
    # mm: the input camera's frame (R_view undone), times the bone length.
    printed_mm = np.array([[float(v) for v in r[5:8]] for r in rows])
    np.testing.assert_allclose(printed_mm, expected @ example.R_view * 50.0, atol=0.051)
    assert "no --K" not in result.stdout and "no --box" not in result.stdout
    assert picture.stat().st_size > 0


def test_export_refuses_an_existing_out_and_keeps_it(poe_export, tmp_path):
    _, model_dir, _ = poe_export
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = _run("export.py", f"--ckpt={model_dir}", f"--out={out}")
    assert result.returncode != 0
    assert f"error: --out: {out} exists and is not an empty directory" in result.stderr
    assert (out / "notes.txt").read_text() == "keep me"
    assert os.listdir(out) == ["notes.txt"]


def test_a_failed_export_leaves_nothing(poe_export, tmp_path, monkeypatch):
    _, model_dir, _ = poe_export

    def mismatch(*_):
        raise ValueError("export_model: the SavedModel's 'pose' differs")

    monkeypatch.setattr(saved_model, "_verify", mismatch)
    with pytest.raises(ValueError, match="differs"):
        _export(model_dir, str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []  # neither --out nor the temporary directory


def test_predict_refuses_what_export_did_not_write(poe_export, tmp_path):
    _, model_dir, export_dir = poe_export
    image = tmp_path / "hand.png"
    cv2.imwrite(str(image), np.full((40, 60, 3), 128, np.uint8))
    result = _run("predict.py", f"--saved_model={model_dir}", f"--image={image}")
    assert result.returncode != 0
    assert (f"error: --saved_model: {model_dir} is not a SavedModel written by export.py"
            in result.stderr), result.stderr
    result = _run("predict.py", f"--saved_model={export_dir}", f"--image={image}",
                  "--box=50,10,20,20")
    assert result.returncode != 0
    assert ("error: --box: the box 50,10,20,20 (x,y,w,h) is not inside the 60x40 image"
            in result.stderr), result.stderr
    assert not os.path.exists(tmp_path / "hand_pose.png")


def test_bad_boxes_cameras_and_exports_are_refused(poe_export, tmp_path):
    _, _, export_dir = poe_export
    for text in ("1,2,3", "a,b,c,d", "1,2,3,4,5", "0,0,nan,4"):
        with pytest.raises(ValueError, match="expected 4 comma-separated numbers x,y,w,h"):
            crop_lib.parse_numbers(text, ("x", "y", "w", "h"))
    with pytest.raises(ValueError, match="focal lengths must be positive"):
        crop_lib.parse_intrinsics("0,100,50,50")
    np.testing.assert_array_equal(crop_lib.parse_intrinsics("100,90,50,40"),
                                  [[100, 0, 50], [0, 90, 40], [0, 0, 1]])
    color = np.zeros((40, 60, 3), np.uint8)
    K = crop_lib.default_intrinsics(60, 40)
    np.testing.assert_array_equal(K, [[60, 0, 29.5], [0, 60, 19.5], [0, 0, 1]])
    for box in ((-1, 0, 10, 10), (0, 0, 61, 10), (0, 35, 10, 10)):
        with pytest.raises(ValueError, match="is not inside the 60x40 image"):
            crop_lib.crop_from_box(color, K, box, SIZE, True, 1.1)
    with pytest.raises(ValueError, match="at least one pixel"):
        crop_lib.crop_from_box(color, K, (0, 0, 0.5, 10), SIZE, True, 1.1)
    crop = crop_lib.crop_from_box(color, K, (0, 0, 60, 40), SIZE, True, 1.1)
    assert crop.image.shape == (SIZE, SIZE, 3) and crop.image.dtype == np.uint8

    with pytest.raises(FileNotFoundError, match="is not a directory"):
        saved_model.read_settings(str(tmp_path / "absent"))
    fake = tmp_path / "fake"
    (fake / "assets").mkdir(parents=True)
    (fake / "saved_model.pb").write_bytes(b"")
    (fake / "assets" / saved_model.SETTINGS_FILE).write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="is not a SavedModel written by export.py"):
        saved_model.read_settings(str(fake))
    settings = saved_model.read_settings(export_dir)
    (fake / "assets" / saved_model.SETTINGS_FILE).write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="cannot be loaded as a SavedModel"):
        saved_model.load_export(str(fake))
