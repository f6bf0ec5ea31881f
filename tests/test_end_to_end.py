"""train.py and evaluate.py as a user runs them: train, resume, refuse a changed model, evaluate."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_train_resume_and_evaluate(small_rhd, tmp_path):
    data_dir = small_rhd
    cache_dir, model_dir = (str(tmp_path / d) for d in ("cache", "run"))
    common = [f"--data_dir={data_dir}", f"--cache_dir={cache_dir}", f"--model_dir={model_dir}",
              "--preset=smoke"]

    first = _run("train.py", "--strategy=poe", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "starting" in first.stdout
    assert "validating on the val split (1 samples" in first.stdout
    assert os.path.exists(os.path.join(model_dir, "ckpt-4.index"))
    config = json.load(open(os.path.join(model_dir, "config.json")))
    assert config["model"]["strategy"] == "poe" and config["train"]["max_steps"] == 4
    assert sorted(config) == ["data", "model", "train"] and config["train"]["validate_on"] == "val"
    assert config["data"]["image_size"] == 32 and "image_size" not in config["model"]
    # Training never reads the test split: only the training and validation caches exist.
    assert sorted(name.split("-")[1] for name in os.listdir(cache_dir)) == ["train", "val"]
    assert any(f.startswith("events.") for f in os.listdir(os.path.join(model_dir, "train")))

    # Validating on the test split takes an explicit flag.
    resumed = _run("train.py", "--strategy=poe", "--max_steps=6", "--validate_on=test", *common)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "ckpt-4" in resumed.stdout
    assert "done at step 6" in resumed.stdout
    assert "validating on the test split (4 samples" in resumed.stdout
    config = json.load(open(os.path.join(model_dir, "config.json")))
    assert config["train"]["validate_on"] == "test"

    changed = _run("train.py", "--strategy=kl", *common)
    assert changed.returncode != 0
    assert "different model configuration" in changed.stderr
    assert json.load(open(os.path.join(model_dir, "config.json")))["model"]["strategy"] == "poe"

    out = str(tmp_path / "eval")
    evaluated = _run("evaluate.py", f"--ckpt={model_dir}", f"--cache_dir={cache_dir}",
                     f"--out={out}", "--batch_size=4")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert (metrics["num_samples"], metrics["split_size"], metrics["complete"]) == (4, 4, True)
    assert "synthetic test: 4 of 4 samples scored" in evaluated.stdout
    assert metrics["checkpoint"].endswith("ckpt-6")
    assert 0.0 <= metrics["auc_0_50"] <= 1.0 and metrics["epe_mean_mm"] > 0
    for name in ("pck.png", "fig3_samples.png", "fig4_interpolation.png", "predictions.npz"):
        assert os.path.getsize(os.path.join(out, name)) > 0

    # The mean-pose reference on the same test samples, scored by evaluate.py --predictions.
    reference = str(tmp_path / "mean_pose.npz")
    made = _run("-m", "evaluation.mean_pose", f"--data_dir={data_dir}",
                f"--cache_dir={cache_dir}", "--image_size=32", f"--out={reference}")
    assert made.returncode == 0, made.stderr[-3000:]
    mean_pose, model = np.load(reference), np.load(os.path.join(out, "predictions.npz"))
    np.testing.assert_allclose(mean_pose["gt"], model["gt"], rtol=1e-5, atol=1e-3)
    # One normalised pose for all: pred / (ground-truth middle MCP-PIP bone in mm) is constant.
    bone_mm = np.linalg.norm(mean_pose["gt"][:, 12] - mean_pose["gt"][:, 11], axis=-1)
    normalised = mean_pose["pred"] / bone_mm[:, None, None]
    np.testing.assert_allclose(normalised, np.broadcast_to(normalised[0], normalised.shape),
                               rtol=1e-4, atol=1e-6)
    scored = _run("evaluate.py", f"--predictions={reference}", f"--out={tmp_path / 'ref'}")
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert json.load(open(tmp_path / "ref" / "metrics.json"))["num_samples"] == 4


def test_train_rejects_bad_flags():
    result = _run("train.py", "--preset=smoke", "--labelled_fraction=2")
    assert result.returncode != 0
    assert ("error: --labelled_fraction: DataConfig.labelled_fraction must be in [0, 1], got 2.0"
            in result.stderr)
    # Paired weak-supervision batches need unlabelled samples to pair with.
    result = _run("train.py", "--preset=smoke", "--unlabelled_batch_size=4")
    assert result.returncode != 0
    assert ("error: --unlabelled_batch_size: DataConfig.unlabelled_batch_size > 0 needs "
            "unlabelled training samples" in result.stderr)
