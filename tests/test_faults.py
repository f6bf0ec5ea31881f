"""train.py under faults, as a user meets them: kill -9 then the same command, and SIGTERM."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import cache, splits, synthetic
from model import presets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Largest difference allowed between the final weights of an interrupted and an uninterrupted
# run with the same seed (the resumed run reads the same batches and draws the same sampling
# noise; what is left is floating-point reordering).
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    synthetic.generate("rhd", str(root / "data"), num_train=8, num_test=2, seed=4, workers=1)
    return str(root / "data"), str(root / "cache")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """16 samples (15 to train on, 1 to validate) whose training cache has 4 shards: written
    here, with 4 samples per shard, where train.py will find it."""
    root = tmp_path_factory.mktemp("sharded")
    data_dir, cache_dir = str(root / "data"), str(root / "cache")
    synthetic.generate("rhd", data_dir, num_train=16, num_test=2, seed=4, workers=1)
    config = presets.data_config("smoke", data_dir=data_dir, cache_dir=cache_dir)
    reader = splits.open_reader(config.data, "train", data_dir)
    path = cache.cache_path(config, "train")
    os.makedirs(os.path.dirname(path))
    meta = cache.write_shards(reader, path, image_size=config.image_size,
                              view_correction=config.view_correction,
                              indices=splits.split_indices(config, "train", reader),
                              samples_per_shard=4)
    assert len(meta["shards"]) == 4 and meta["num_examples"] == 15
    return data_dir, cache_dir


def _command(data, model_dir, *extra, validate=False):
    data_dir, cache_dir = data
    return [sys.executable, "train.py", "--strategy=cvae", "--preset=smoke", "--image_size=32",
            f"--data_dir={data_dir}", f"--cache_dir={cache_dir}", f"--model_dir={model_dir}",
            *([] if validate else ["--eval_every=1000"]), *extra]


def _start(command):
    """Popen with the output collected by a thread (so that it never blocks the child)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    return proc, lines, reader


def _wait_for(predicate, proc, timeout=240, poll=0.2):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, "train.py ended early"
        assert time.time() < deadline, "timed out"
        time.sleep(poll)


def _run(command):
    proc, lines, reader = _start(command)
    try:
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    return proc.returncode, "".join(lines)


def _weights(ckpt):
    reader = tf.train.load_checkpoint(ckpt)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(ckpt)
            if name.startswith("model/") and ".OPTIMIZER_SLOT" not in name}


def _latest_step(model_dir):
    """The step of the checkpoint that model_dir's `checkpoint` file names, 0 before the first."""
    latest = tf.train.latest_checkpoint(str(model_dir))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def _kill_9_after(command, model_dir, step):
    """Starts `command` and kills it with SIGKILL as soon as the `checkpoint` file names a
    checkpoint of `step` or later (TensorFlow updates it after writing the checkpoint's files: a
    kill between the two would resume from the checkpoint before); polled often, as smoke steps
    take a few tens of milliseconds."""
    proc = _start(command)[0]
    try:
        _wait_for(lambda: _latest_step(model_dir) >= step, proc, poll=0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_kill_9_then_the_same_command_ends_as_an_uninterrupted_run(data, tmp_path):
    steps = ["--max_steps=8", "--checkpoint_every=2"]
    code, out = _run(_command(data, tmp_path / "whole", *steps))
    assert code == 0, out[-3000:]

    interrupted = _command(data, tmp_path / "cut", *steps)
    _kill_9_after(interrupted, tmp_path / "cut", 4)
    # Nothing half-written: config.json parses and the newest checkpoint loads.
    from model import run_config  # pylint: disable=import-outside-toplevel
    run_config.read_run_config(str(tmp_path / "cut" / "config.json"))
    latest = tf.train.latest_checkpoint(str(tmp_path / "cut"))
    assert 4 <= _latest_step(tmp_path / "cut") < 8, latest
    # Read now: the resumed run's checkpoint manager may delete it (it keeps the newest three).
    start = _weights(latest)
    code, out = _run(interrupted)
    assert code == 0, out[-3000:]
    assert f"resuming from {latest}" in out and "done at step 8" in out
    whole, cut = (_weights(str(tmp_path / d / "ckpt-8")) for d in ("whole", "cut"))
    assert sorted(whole) == sorted(cut)
    assert any(np.abs(whole[k] - start[k]).max() > 1e-4 for k in whole)  # it trained after
    for name in whole:
        np.testing.assert_allclose(cut[name], whole[name], rtol=0, atol=TOLERANCE, err_msg=name)


def _validations(out):
    """{step: 'validation EPE ... (best ..., status, lr ...)'} of train.py's output."""
    return dict(line.split(": ", 1) for line in out.splitlines()
                if line.startswith("step ") and ": validation EPE" in line)


def _step_of(validations, status):
    """The first step whose validation ended in `status` ('decayed', 'converged'), or None."""
    steps = [int(key.split()[1]) for key, line in validations.items() if f", {status}," in line]
    return min(steps) if steps else None


@pytest.mark.slow
def test_kill_9_across_shards_and_a_plateau_decay_ends_as_an_uninterrupted_run(sharded,
                                                                               tmp_path):
    # Validation every 2 steps with a patience of 1 (the smoke preset's) and two decays allowed:
    # at this learning rate EPE improves for a few validations, then plateaus: a decay, a second
    # one and convergence. Which steps those are depends on the CPU's floating-point kernels, so
    # the uninterrupted run says where to cut: at the checkpoint of its first decay.
    steps = ["--max_steps=30", "--checkpoint_every=2", "--eval_every=2", "--learning_rate=1e-3"]
    code, whole_out = _run(_command(sharded, tmp_path / "whole", *steps, validate=True))
    assert code == 0, whole_out[-3000:]
    assert "pre-processing synthetic train" not in whole_out  # it read the 4-shard cache
    whole_validations = _validations(whole_out)
    decay, end = (_step_of(whole_validations, s) for s in ("decayed", "converged"))
    assert decay and end and decay < end, whole_validations
    assert f"done at step {end}" in whole_out

    interrupted = _command(sharded, tmp_path / "cut", *steps, validate=True)
    _kill_9_after(interrupted, tmp_path / "cut", decay)
    latest = tf.train.latest_checkpoint(str(tmp_path / "cut"))
    assert decay <= _latest_step(tmp_path / "cut") < end, latest  # killed before it converged
    reader = tf.train.load_checkpoint(latest)
    start = _weights(latest)  # read now: the resumed run keeps only the newest three
    # The killed run had decayed the learning rate, and its stream had gone through every shard
    # and past the end of an epoch (the first validation always improves, so decay >= 4, and
    # 4 steps x 4 > 15 examples).
    assert reader.get_tensor("schedule/num_decays/.ATTRIBUTES/VARIABLE_VALUE") >= 1, latest
    code, out = _run(interrupted)
    assert code == 0, out[-3000:]
    # The plateau decisions after the resume (the second decay, then convergence) are the
    # uninterrupted run's: best EPE, patience, decays and learning rate came back with the
    # checkpoint.
    resumed = _validations(out)
    assert resumed and all(resumed[step] == whole_validations[step] for step in resumed), (
        resumed, whole_validations)
    assert _step_of(resumed, "converged") == end, resumed
    assert f"resuming from {latest}" in out and f"done at step {end}" in out
    whole, cut = (_weights(str(tmp_path / d / f"ckpt-{end}")) for d in ("whole", "cut"))
    assert sorted(whole) == sorted(cut)
    assert any(np.abs(whole[k] - start[k]).max() > 1e-4 for k in whole)  # it trained after
    for name in whole:
        np.testing.assert_allclose(cut[name], whole[name], rtol=0, atol=TOLERANCE, err_msg=name)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_at_the_current_step_and_exits_0(data, tmp_path):
    command = _command(data, tmp_path / "run", "--max_steps=100000", "--checkpoint_every=100000")
    proc, lines, reader = _start(command)
    try:
        _wait_for(lambda: any("train: step 1/100000" in line for line in lines), proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    out = "".join(lines)
    assert proc.returncode == 0, out[-3000:]
    step = int(out.split("stopped by signal 15 at step ")[1].split(";")[0])
    assert step >= 1
    assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith(f"ckpt-{step}")
    code, out = _run(_command(data, tmp_path / "run", f"--max_steps={step + 1}"))
    assert code == 0 and f"ckpt-{step}" in out and f"done at step {step + 1}" in out
