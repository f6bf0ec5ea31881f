"""The inspect contract on generated RHD- and STB-format data, through the real readers."""
import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipeline import geometry
from data_pipeline import inspect as inspect_lib
from data_pipeline import synthetic
from data_pipeline.config import DataConfig
from data_pipeline.sample import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {"image", "pose", "pose_cam", "cloud", "heatmaps", "visible", "K", "root", "scale",
        "R_view", "hand"}


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect_data")
    synthetic.generate("rhd", str(root / "rhd"), 3, 2, seed=1, workers=1)
    synthetic.generate("stb", str(root / "stb"), 10, 2, seed=1, workers=1)
    return {"synthetic": str(root / "rhd"), "stb": str(root / "stb")}


def _check_contract(sample, image_size=64, num_points=256):
    assert set(sample) == KEYS
    assert sample["image"].shape == (image_size, image_size, 3)
    assert sample["heatmaps"].shape == (image_size // 4, image_size // 4, 21)
    assert sample["cloud"].shape == (num_points, 3)
    assert str(sample["hand"]) in ("left", "right")
    pose_cam, root, scale, R = (sample[k] for k in ("pose_cam", "root", "scale", "R_view"))
    np.testing.assert_allclose(root, pose_cam[12])
    assert float(scale) == pytest.approx(np.linalg.norm(pose_cam[12] - pose_cam[11]))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(sample["pose"], (pose_cam - root) @ R.T / scale, atol=1e-5)
    # K is the crop's camera: the heatmap peaks sit at the projected keypoints inside the crop.
    uv = geometry.project(sample["K"], pose_cam @ R.T)
    maps = sample["heatmaps"]
    for j in range(21):
        if np.all((uv[j] >= 2) & (uv[j] <= image_size - 3)):
            row, col = np.unravel_index(np.argmax(maps[..., j]), maps.shape[:2])
            assert np.abs(np.array([4 * col + 1.5, 4 * row + 1.5]) - uv[j]).max() <= 2.0 + 1e-3
    # The cloud is within 0.2 m of the root (float16 storage: a small tolerance).
    assert np.linalg.norm(sample["cloud"] * scale, axis=-1).max() < 0.2 + 1e-3


@pytest.mark.parametrize("data", ["synthetic", "stb"])
@pytest.mark.parametrize("augment", [False, True])
def test_inspect_sample_follows_the_contract(data_dirs, data, augment):
    config = DataConfig(data=data, data_dir=data_dirs[data], image_size=64)
    sample = inspect_lib.inspect_sample(config, "train", 1, augment=augment, seed=2)
    _check_contract(sample)
    if not augment:  # viewpoint correction puts the root on the crop centre
        np.testing.assert_allclose(sample["R_view"] @ sample["root"],
                                   [0, 0, np.linalg.norm(sample["root"])], atol=1e-6)
        np.testing.assert_allclose(geometry.project(sample["K"], [0, 0, 1.0]), [31.5, 31.5])


def test_rhd_cloud_points_lie_on_the_depth_map(data_dirs):
    from data_pipeline.rhd import RHDReader  # pylint: disable=import-outside-toplevel
    config = DataConfig(data_dir=data_dirs["synthetic"], image_size=32, view_correction=False)
    sample = inspect_lib.inspect_sample(config, "test", 0)
    raw = RHDReader(data_dirs["synthetic"], "test")[0]
    camera = sample["cloud"].astype(np.float64) * sample["scale"] @ sample["R_view"] \
        + sample["root"]
    uv = geometry.project(raw.K_depth, camera)
    pixels = np.round(uv).astype(int)
    np.testing.assert_allclose(uv, pixels, atol=0.1)  # float16 storage
    assert raw.hand_mask[pixels[:, 1], pixels[:, 0]].all()
    np.testing.assert_allclose(raw.depth[pixels[:, 1], pixels[:, 0]], camera[:, 2], atol=1e-3)


def test_bad_index_and_missing_data_are_clear_errors(data_dirs, tmp_path):
    with pytest.raises(ValueError, match="index=99 is out of range.*has 2 samples"):
        inspect_lib.inspect_sample(DataConfig(data_dir=data_dirs["synthetic"]), "test", 99)
    with pytest.raises(DataError, match="DataConfig.data_dir"):
        inspect_lib.inspect_sample(DataConfig(data="rhd", data_dir=str(tmp_path / "missing")),
                                   "test", 0)


@pytest.mark.slow
def test_command_line_writes_npz_and_png(data_dirs, tmp_path):
    out, png = tmp_path / "s.npz", tmp_path / "s.png"
    command = [sys.executable, "-m", "data_pipeline.inspect", "--data=stb",
               f"--data_dir={data_dirs['stb']}", "--split=test", "--index=1", f"--out={out}",
               "--augment", f"--png={png}", "--image_size=64"]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    with np.load(out) as npz:
        _check_contract({k: npz[k] for k in npz.files})
    assert png.stat().st_size > 10_000
    # As a user starts it, without the test session's TensorFlow log level.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    bad = subprocess.run(command[:5] + ["--split=test", "--index=7", f"--out={out}"], cwd=REPO,
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "error: --index: inspect_sample: index=7 is out of range" \
        in bad.stderr
    assert "cuDNN" not in bad.stderr  # TensorFlow's start-up noise is hidden
