"""Schedules (model/schedules.py), run configuration (model/run_config.py) and the Trainer's
bookkeeping (model/training.py); the loop itself: test_end_to_end.py."""
import dataclasses
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline.config import DataConfig
from model import presets, run_config, schedules, training
from model.config import ModelConfig


def _config(**overrides):
    return run_config.TrainConfig.from_preset("cpu", **overrides)


def test_beta_is_geometric_between_the_paper_bounds():
    cfg = _config(beta_anneal_steps=100)
    assert float(schedules.beta_at(0, cfg)) == pytest.approx(1e-5, rel=1e-5)
    # Halfway through a geometric ramp over two decades: one decade.
    assert float(schedules.beta_at(50, cfg)) == pytest.approx(1e-4, rel=1e-5)
    assert float(schedules.beta_at(100, cfg)) == pytest.approx(1e-3, rel=1e-5)
    assert float(schedules.beta_at(10_000, cfg)) == pytest.approx(1e-3, rel=1e-5)


def test_preset_overrides_and_validation():
    cfg = run_config.TrainConfig.from_preset("paper", batch_size=8, max_steps=None)
    assert (cfg.batch_size, cfg.max_steps, cfg.learning_rate) == (8, 130_000, 1e-4)
    with pytest.raises(ValueError, match="preset must be one of"):
        run_config.TrainConfig.from_preset("huge")
    with pytest.raises(ValueError, match="TrainConfig.batch_size must be positive"):
        _config(batch_size=0)
    with pytest.raises(ValueError, match="TrainConfig.validate_on must be one of"):
        _config(validate_on="train")
    # The dataclass defaults are the cpu preset, so the two cannot drift apart.
    assert run_config.TrainConfig() == run_config.TrainConfig.from_preset("cpu")


def test_plateau_schedule_decays_twice_then_converges():
    cfg = _config(plateau_patience=2)
    opt = tf.keras.optimizers.Adam(learning_rate=1e-4)
    opt.build([tf.Variable(1.0)])
    plateau = schedules.PlateauSchedule(opt, cfg)
    assert plateau.update(10.0) == "improved"
    assert plateau.update(9.0) == "improved"
    assert plateau.update(9.5) == "waiting"
    assert plateau.update(9.5) == "decayed"
    assert float(opt.learning_rate.numpy()) == pytest.approx(1e-5)
    assert [plateau.update(9.9), plateau.update(9.9)] == ["waiting", "decayed"]
    assert float(opt.learning_rate.numpy()) == pytest.approx(1e-6)
    assert plateau.update(8.0) == "improved"
    assert [plateau.update(9.9), plateau.update(9.9)] == ["waiting", "converged"]
    assert float(opt.learning_rate.numpy()) == pytest.approx(1e-6)


def test_plateau_state_survives_a_checkpoint(tmp_path):
    cfg = _config(plateau_patience=1)
    opt = tf.keras.optimizers.Adam(learning_rate=1e-4)
    opt.build([tf.Variable(1.0)])
    plateau = schedules.PlateauSchedule(opt, cfg)
    plateau.update(5.0)
    plateau.update(6.0)
    path = tf.train.Checkpoint(plateau=plateau, optimizer=opt).save(str(tmp_path / "ckpt"))

    opt2 = tf.keras.optimizers.Adam(learning_rate=1e-4)
    opt2.build([tf.Variable(1.0)])
    restored = schedules.PlateauSchedule(opt2, cfg)
    tf.train.Checkpoint(plateau=restored, optimizer=opt2).restore(path)
    assert float(restored.best_epe.numpy()) == 5.0
    assert int(restored.num_decays.numpy()) == 1
    assert math.isclose(float(opt2.learning_rate.numpy()), 1e-5, rel_tol=1e-6)


def test_fixed_schedule_decays_at_its_fractions_of_the_budget():
    cfg = _config(max_steps=1000, learning_rate=1e-3, lr_decay_fractions=(0.6, 0.85))
    opt = tf.keras.optimizers.Adam(learning_rate=cfg.learning_rate)
    opt.build([tf.Variable(1.0)])
    schedule = schedules.make_schedule(opt, cfg)
    assert isinstance(schedule, schedules.FixedSchedule) and schedule.boundaries == (600, 850)
    # The rate of the update after `step` completed steps: x0.1 from step 600, x0.01 from 850.
    for step, rate in ((0, 1e-3), (599, 1e-3), (600, 1e-4), (849, 1e-4), (850, 1e-5),
                       (999, 1e-5)):
        schedule.on_step(step)
        assert float(opt.learning_rate.numpy()) == pytest.approx(rate, rel=1e-6), step
    # Validation only tracks the best EPE: no decay, never converged.
    assert [schedule.update(e) for e in (50.0, 51.0, 52.0, 53.0, 49.0)] == [
        "improved", "waiting", "waiting", "waiting", "improved"]
    assert float(opt.learning_rate.numpy()) == pytest.approx(1e-5, rel=1e-6)
    # A fresh schedule (a resumed run) sets the rate from the step alone.
    fresh = schedules.make_schedule(opt, cfg)
    fresh.on_step(700)
    assert float(opt.learning_rate.numpy()) == pytest.approx(1e-4, rel=1e-6)


def test_schedule_settings_are_checked_and_named_by_every_preset():
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        _config(lr_schedule="cosine")
    with pytest.raises(ValueError, match=r"increasing fractions .* got \(0.9, 0.5\)"):
        _config(lr_decay_fractions=(0.9, 0.5))
    with pytest.raises(ValueError, match=r"increasing fractions .* got \(\)"):
        _config(lr_decay_fractions=())
    with pytest.raises(ValueError, match="must be empty for lr_schedule='plateau'"):
        _config(lr_schedule="plateau")
    # The paper's preset decays on plateaus; the CPU regime at fixed fractions of its budget.
    assert run_config.TrainConfig.from_preset("paper").lr_schedule == "plateau"
    for preset in ("experiment", "cpu"):
        cfg = run_config.TrainConfig.from_preset(preset)
        assert (cfg.lr_schedule, cfg.lr_decay_fractions, cfg.eval_batches) == (
            "fixed", presets.CPU_LR_DECAY_FRACTIONS, 0)
        assert isinstance(schedules.make_schedule(None, cfg), schedules.FixedSchedule)


def test_fit_follows_the_fixed_schedule(tmp_path):
    cfg = _config(max_steps=4, checkpoint_every=2, eval_every=2, lr_decay_fractions=(0.5, 0.75))
    trainer = training.Trainer(ModelConfig(strategy="cvae", **SMALL), cfg, str(tmp_path))
    trainer.fit(tf.data.Dataset.from_tensors(_s1_batch()).repeat(), verbose=False)
    # Decays after steps 2 and 3: the last update (step 4) ran at 1e-5.
    assert float(trainer.optimizer.learning_rate.numpy()) == pytest.approx(1e-5, rel=1e-6)
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt-2"))
    assert reader.get_tensor("optimizer/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE") == (
        pytest.approx(1e-4, rel=1e-6))


def _run(strategy="poe", max_steps=4, **data):
    data_cfg = presets.data_config("smoke", data_dir="/data/rhd", **data)
    return run_config.RunConfig(presets.model_config("smoke", data_cfg, strategy=strategy),
                                data_cfg, run_config.TrainConfig.from_preset("smoke",
                                                                           max_steps=max_steps))


def test_run_config_round_trips_with_the_crop_size_stored_once(tmp_path):
    run = _run(labelled_fraction=0.5)
    d = run.to_dict()
    assert sorted(d) == ["data", "model", "train"]
    stored = json.dumps(d)
    assert stored.count('"image_size"') == 1 and stored.count('"num_points"') == 1
    assert run_config.RunConfig.from_dict(json.loads(stored)) == run
    run_config.save_run_config(str(tmp_path), run)
    assert run_config.read_run_config(str(tmp_path / "config.json")) == run


@pytest.mark.parametrize("section, key", [("model", "width"), ("data", "batch_size"),
                                          ("train", "image_size"), ("model", "image_size")])
def test_run_config_refuses_unknown_keys(section, key):
    d = _run().to_dict()
    d[section][key] = 1
    with pytest.raises(ValueError, match=key):
        run_config.RunConfig.from_dict(d)


def test_run_config_refuses_a_config_json_of_the_old_layout(tmp_path):
    old = {"model": {"strategy": "poe", "image_size": 32}, "train": {"image_size": 32},
           "data": {"data": "synthetic", "image_size": 32}, "validation": {"split": "val"}}
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"config.json: .*older train.py"):
        run_config.read_run_config(str(tmp_path / "config.json"))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not a readable run configuration"):
        run_config.read_run_config(str(tmp_path / "config.json"))


def test_run_config_refuses_a_model_of_other_input_shapes():
    run = _run()
    with pytest.raises(ValueError, match="ModelConfig.image_size=64 differs"):
        run_config.RunConfig(dataclasses.replace(run.model, image_size=64), run.data, run.train)


def test_run_config_refuses_another_model_or_data(tmp_path):
    run_config.save_run_config(str(tmp_path), _run())
    # Other loop settings and another cache directory may change on resume.
    run_config.save_run_config(str(tmp_path), _run(max_steps=8, cache_dir="/elsewhere"))
    assert json.loads((tmp_path / "config.json").read_text())["train"]["max_steps"] == 8
    with pytest.raises(ValueError, match="different model configuration"):
        run_config.save_run_config(str(tmp_path), _run(strategy="kl"))
    with pytest.raises(ValueError, match="different data configuration"):
        run_config.save_run_config(str(tmp_path), _run(view_correction=False))
    # The refused writes left the recorded file intact.
    assert run_config.read_run_config(str(tmp_path / "config.json")) == _run(
        max_steps=8, cache_dir="/elsewhere")


def test_load_run_config_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run_config.load_run_config(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ckpt-3.index"):
        run_config.load_run_config(str(tmp_path / "ckpt-3"))


# A small S1 network and batch for the tests of the loop's own step.
SMALL = dict(image_size=32, latent_dim=8, num_points=16, resnet_widths=(8, 8, 16, 16),
             pose_hidden=16)


def _s1_batch(size=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": tf.constant(rng.uniform(size=(size, 32, 32, 3)), tf.float32),
            "pose": tf.constant(rng.normal(size=(size, 21, 3)), tf.float32)}


def test_train_step_weighs_the_kl_by_the_annealed_beta(tmp_path, monkeypatch):
    cfg = _config(beta_anneal_steps=100)
    trainer = training.Trainer(ModelConfig(strategy="cvae", **SMALL), cfg, str(tmp_path))
    betas = []
    compute_losses = trainer.model.compute_losses

    def record(batch, beta, training, seed=None):
        betas.append(float(beta))
        return compute_losses(batch, beta, training, seed)

    monkeypatch.setattr(trainer.model, "compute_losses", record)
    for step in (0, 50, 100):
        trainer.step.assign(step)
        trainer.train_step(_s1_batch())
    np.testing.assert_allclose(betas, [1e-5, 1e-4, 1e-3], rtol=1e-5)


def _nan_batch():
    batch = _s1_batch()
    batch["pose"] = tf.tensor_scatter_nd_update(batch["pose"], [[1, 5, 0]], [float("nan")])
    return batch


def test_a_nonfinite_loss_skips_its_update_and_training_goes_on(tmp_path, capsys):
    """A NaN target pose makes the pose loss NaN (never 0): that step applies no update."""
    trainer = training.Trainer(ModelConfig(strategy="cvae", **SMALL),
                               _config(max_steps=3, checkpoint_every=1), str(tmp_path))
    batches = [_s1_batch(seed=1), _nan_batch(), _s1_batch(seed=2), _s1_batch(seed=3)]
    ds = tf.data.Dataset.from_tensor_slices(
        {k: tf.stack([b[k] for b in batches]) for k in batches[0]})
    trainer.fit(ds.repeat(), verbose=False)
    assert int(trainer.step.numpy()) == 3
    assert int(trainer.optimizer.iterations.numpy()) == 3  # three updates for four batches
    assert "step 2: loss is nan, update skipped (1 in a row)" in capsys.readouterr().out


def test_nonfinite_losses_in_a_row_stop_training_and_keep_the_last_checkpoint(tmp_path):
    cfg = _config(max_steps=2, checkpoint_every=1, max_nonfinite_steps=2)
    trainer = training.Trainer(ModelConfig(strategy="cvae", **SMALL), cfg, str(tmp_path))
    trainer.fit(tf.data.Dataset.from_tensors(_s1_batch()).repeat(), verbose=False)
    saved = [v.numpy().copy() for v in trainer.model.trainable_variables]
    index = (tmp_path / "ckpt-2.index").read_bytes()
    trainer.config = dataclasses.replace(cfg, max_steps=4)
    with pytest.raises(FloatingPointError, match=r"3 steps in a row .*step 3\); training "
                                                 r"stopped. Last good checkpoint: .*ckpt-2"):
        trainer.fit(tf.data.Dataset.from_tensors(_nan_batch()).repeat(), verbose=False)
    # No update was applied, and the last good checkpoint is untouched.
    for before, after in zip(saved, trainer.model.trainable_variables):
        np.testing.assert_array_equal(before, after.numpy())
    assert (tmp_path / "ckpt-2.index").read_bytes() == index
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")


# SIGTERM at every phase of the loop: (phase, the wrapped Trainer attribute, whether the signal
# goes before or after the wrapped call, the call that sends it, the step the loop stops at).
# Batches 1, 2, 3 give steps 1, (none: not finite), 2, then again 3, (none), 4, ... Checkpoints are
# due every 3 steps, so every phase but saving stops where only the save on stopping leaves a
# checkpoint; saving stops right after the regular save of step 3.
CHECKPOINT_EVERY = 3
SIGTERM_PHASES = {
    "reading and updating": ("update", "before", 3, 2),
    "a skipped step": ("update", "after", 2, 1),
    "logging": ("_log", "after", 1, 1),
    "validation": ("validate", "after", 1, 1),
    "saving": ("_save", "after", 1, 3),
}


@pytest.mark.parametrize("phase", list(SIGTERM_PHASES))
def test_sigterm_at_any_phase_leaves_a_checkpoint_at_the_last_applied_step(tmp_path, phase):
    import os  # pylint: disable=import-outside-toplevel
    import signal  # pylint: disable=import-outside-toplevel

    name, when, call, stop = SIGTERM_PHASES[phase]
    trainer = training.Trainer(ModelConfig(strategy="cvae", **SMALL),
                               _config(max_steps=50, checkpoint_every=CHECKPOINT_EVERY,
                                       eval_every=1, log_every=1), str(tmp_path))
    batches = [_s1_batch(seed=1), _nan_batch(), _s1_batch(seed=2)]
    ds = tf.data.Dataset.from_tensor_slices(
        {k: tf.stack([b[k] for b in batches]) for k in batches[0]}).repeat()
    calls = []

    def wrap(function):
        def wrapped(*args, **kwargs):
            calls.append(name)
            if when == "before" and len(calls) == call:
                os.kill(os.getpid(), signal.SIGTERM)
            result = function(*args, **kwargs)
            if when == "after" and len(calls) == call:
                os.kill(os.getpid(), signal.SIGTERM)
            return result
        return wrapped

    validate = lambda model: {"epe_mean_mm": 10.0}  # noqa: E731
    if name == "validate":
        validate = wrap(validate)
    else:
        setattr(trainer, name, wrap(getattr(trainer, name)))
    handler = signal.getsignal(signal.SIGTERM)
    trainer.fit(ds, validate=validate, verbose=False)
    assert trainer.stop_signal == signal.SIGTERM and int(trainer.step.numpy()) == stop
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith(f"ckpt-{stop}")
    if name == "_save":
        assert len(calls) == 1  # the step saved when the signal came is not saved again
    assert signal.getsignal(signal.SIGTERM) is handler  # the handler before fit is back


@pytest.mark.slow
def test_fit_learns_a_fixed_batch(tmp_path):
    """Trainer.fit runs Eq. 4's step; repeated on one batch, the RGB-only pose error must fall.

    The batch has 8 samples: with fewer, training-mode batch norm (batch statistics) and the
    inference path (moving statistics) see very different activations.
    """
    model_cfg = ModelConfig(strategy="poe", image_size=32, latent_dim=8, num_points=16,
                            resnet_widths=(8, 8, 16, 16), cloud_widths=(8, 16), pose_hidden=16,
                            heatmap_channels=16, fold_hidden=16)
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(size=(8, 32, 32, 3)), "pose": rng.normal(size=(8, 21, 3)),
             "cloud": rng.normal(size=(8, 16, 3)), "heatmaps": rng.uniform(size=(8, 8, 8, 21))}
    batch = {k: tf.constant(v, tf.float32) for k, v in batch.items()}
    # A constant rate (a plateau schedule that no validation drives): what is checked is that
    # the step learns, not the cpu preset's decays.
    trainer = training.Trainer(model_cfg, _config(learning_rate=3e-3, max_steps=100,
                                                  checkpoint_every=100, lr_schedule="plateau",
                                                  lr_decay_fractions=()), str(tmp_path))

    def pose_error():  # inference path: z = mean of q(z|R)
        pred = trainer.model.predict_pose(batch["image"], training=False)
        return float(tf.reduce_mean(tf.norm(pred - batch["pose"], axis=-1)))

    before = pose_error()
    trainer.fit(tf.data.Dataset.from_tensors(batch).repeat(), verbose=False)
    assert int(trainer.step.numpy()) == 100
    assert pose_error() < 0.7 * before  # about 0.5 in practice; 1.0 would mean no learning


def test_every_preset_names_its_networks_data_and_training():
    assert all(sorted(p) == ["data", "model", "train"] for p in presets.PRESETS.values())
    data = presets.data_config("experiment", data="synthetic")
    cfg = presets.model_config("experiment", data, strategy="poe")
    assert (cfg.resnet_widths, cfg.num_points, cfg.fold_hidden) == ((16, 32, 64, 128), 64, 128)
    assert (data.image_size, data.num_points) == (cfg.image_size, 64)
    paper = presets.data_config("paper")
    assert presets.model_config("paper", paper) == presets.model_config("paper", paper, width=1.0)
    small = presets.data_config("cpu", num_points=16, image_size=None)
    wide = presets.model_config("cpu", small, width=0.5, strategy="cvae")
    assert (wide.resnet_widths[0], wide.num_points, wide.strategy) == (32, 16, "cvae")
    with pytest.raises(ValueError, match="preset must be one of"):
        presets.data_config("huge")


def test_data_config_round_trips_and_checks_each_field_once():
    cfg = DataConfig(data="stb", image_size=64, labelled_fraction=0.25, cache_dir="/c")
    assert DataConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['crop'\]"):
        DataConfig.from_dict(dict(cfg.to_dict(), crop=3))
    for field, value, message in (("data", "mnist", "DataConfig.data must be one of"),
                                  ("image_size", 30, "DataConfig.image_size must be a multiple"),
                                  ("num_points", 0, "DataConfig.num_points must be a positive"),
                                  ("labelled_fraction", 1.5, "labelled_fraction must be in"),
                                  ("validation_fraction", 1.0, "validation_fraction must be in")):
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(cfg, **{field: value})
    assert cfg.same_data(dataclasses.replace(cfg, cache_dir=None))
    assert not cfg.same_data(dataclasses.replace(cfg, view_correction=False))
    # A config.json written before a field existed reads with the field's default, so that
    # models trained then can still be evaluated.
    older = {k: v for k, v in cfg.to_dict().items() if k != "unlabelled_batch_size"}
    assert DataConfig.from_dict(older) == cfg and cfg.unlabelled_batch_size == 0
    assert not cfg.same_data(dataclasses.replace(cfg, unlabelled_batch_size=32))
