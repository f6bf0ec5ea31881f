"""The configuration of a run: TrainConfig, RunConfig, config.json and restoring a trained model.

config.json in a model_dir holds {model, data, train} (`RunConfig.to_dict`); train.py writes it
before training and refuses to resume with another model or data; evaluate.py, export.py and the
experiments read it back to rebuild the model (`restore_model`).
"""
import dataclasses
import json
import os
from typing import Any, Dict, Tuple

import tensorflow as tf

from common.config import JsonConfig
from data_pipeline.config import VALIDATION_SPLITS, DataConfig
from model import config as model_config
from model import presets, strategies

CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """Optimisation settings (SPEC 3) and loop cadence.

    Attributes:
      preset: name of the preset the other values started from (model/presets.py).
      batch_size: global batch size.
      max_steps: optimisation steps in total.
      learning_rate: Adam's initial learning rate.
      beta_start, beta_end: KL weight annealed geometrically over `beta_anneal_steps`.
      lr_schedule: when the learning rate decays by `lr_decay` (model/schedules.py): 'plateau'
        on each validation plateau, at most `max_lr_decays` times, a plateau after the last decay
        ending training (converged), as the paper does; 'fixed' at the fractions
        `lr_decay_fractions` of max_steps, the budgeted CPU regime's stand-in.
      lr_decay: the learning rate's factor at each decay.
      lr_decay_fractions: for 'fixed', increasing fractions of max_steps in (0, 1) at which the
        learning rate decays; empty for 'plateau'.
      plateau_patience: for 'plateau', validations without a new best EPE that make a plateau.
      eval_every, checkpoint_every, log_every: cadence in steps.
      eval_batches: validation batches per evaluation (0 = the whole split).
      validate_on: the split whose EPE drives the plateaus: 'val' (held out of the training
        data) or 'test' (then the test split chooses the model).
      max_nonfinite_steps: steps in a row whose loss is not finite (each skipped, no update)
        that are tolerated; one more stops training.
      seed: seeds weights, shuffling and augmentation.
    """

    preset: str = "cpu"
    batch_size: int = 32
    max_steps: int = presets.DEMO_STEPS
    learning_rate: float = 1e-3
    beta_start: float = 1e-5
    beta_end: float = 1e-3
    beta_anneal_steps: int = presets.DEMO_STEPS // 3
    lr_schedule: str = "fixed"
    lr_decay: float = 0.1
    lr_decay_fractions: Tuple[float, ...] = presets.CPU_LR_DECAY_FRACTIONS
    max_lr_decays: int = 2
    plateau_patience: int = 3
    eval_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 25
    eval_batches: int = 0
    validate_on: str = "val"
    max_nonfinite_steps: int = 5
    seed: int = 0

    def __post_init__(self):
        if self.preset not in presets.NAMES:
            raise ValueError(f"TrainConfig.preset must be one of {presets.NAMES}, "
                             f"got {self.preset!r}")
        positive = ("batch_size", "max_steps", "eval_every", "checkpoint_every", "log_every",
                    "beta_anneal_steps", "plateau_patience", "max_nonfinite_steps")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("learning_rate", "beta_start", "beta_end"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        if self.eval_batches < 0:
            raise ValueError(f"TrainConfig.eval_batches must be >= 0, got {self.eval_batches}")
        if self.lr_schedule not in presets.LR_SCHEDULES:
            raise ValueError(f"TrainConfig.lr_schedule must be one of {presets.LR_SCHEDULES}, got "
                             f"{self.lr_schedule!r}")
        fractions = tuple(self.lr_decay_fractions)
        if self.lr_schedule == "fixed" and not (
                fractions and all(0 < f < 1 for f in fractions)
                and all(a < b for a, b in zip(fractions, fractions[1:]))):
            raise ValueError("TrainConfig.lr_decay_fractions must be increasing fractions of "
                             f"max_steps in (0, 1) for lr_schedule='fixed', got {fractions}")
        if self.lr_schedule == "plateau" and fractions:
            raise ValueError("TrainConfig.lr_decay_fractions must be empty for "
                             f"lr_schedule='plateau' (it decays on plateaus), got {fractions}")
        if self.validate_on not in VALIDATION_SPLITS:
            raise ValueError(f"TrainConfig.validate_on must be one of {VALIDATION_SPLITS}, got "
                             f"{self.validate_on!r}")

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "TrainConfig":
        """The preset's values with `overrides` (None values ignored) on top."""
        values = dict(presets.section(preset, "train"), preset=preset)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run, as config.json holds it: {model, data, train}.

    The model's input shapes (crop side, points per cloud) are the data's: they are stored once,
    in the data section, and must agree.
    """

    model: model_config.ModelConfig
    data: DataConfig
    train: TrainConfig

    SECTIONS = ("model", "data", "train")

    def __post_init__(self):
        for name in model_config.DATA_FIELDS:
            if getattr(self.model, name) != getattr(self.data, name):
                raise ValueError(f"RunConfig: ModelConfig.{name}={getattr(self.model, name)} "
                                 f"differs from DataConfig.{name}={getattr(self.data, name)}")

    def to_dict(self) -> Dict[str, Any]:
        model = {k: v for k, v in self.model.to_dict().items()
                 if k not in model_config.DATA_FIELDS}
        return {"model": model, "data": self.data.to_dict(), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunConfig":
        """Inverse of `to_dict`. Refuses other layouts, such as config.json files written before
        it (with a 'validation' section and the crop size in every section)."""
        if not isinstance(d, dict) or sorted(d) != sorted(cls.SECTIONS):
            found = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"RunConfig.from_dict: expected the sections {list(cls.SECTIONS)}, "
                             f"found {found}; a config.json written by an older train.py "
                             "cannot be read: retrain, or use the version that wrote it")
        data = DataConfig.from_dict(d["data"])
        shapes = {k: getattr(data, k) for k in model_config.DATA_FIELDS}
        clash = sorted(set(d["model"]) & set(shapes))
        if clash:
            raise ValueError(f"RunConfig.from_dict: {clash} belong to the data section, not the "
                             "model section")
        model = model_config.ModelConfig.from_dict({**d["model"], **shapes})
        return cls(model, data, TrainConfig.from_dict(d["train"]))


def save_run_config(model_dir: str, run: RunConfig) -> None:
    """Writes model_dir/config.json, refusing to resume a run with another model or data.

    Resuming with other loop settings (max_steps, cadence) or another cache directory is
    allowed; another model, strategy or data is not, since the checkpoint would not match.
    The file is written under a temporary name and renamed, so it is never half-written.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if os.path.exists(path):
        previous = read_run_config(path)
        for name, same in (("model", previous.model == run.model),
                           ("data", previous.data.same_data(run.data))):
            if not same:
                raise ValueError(
                    f"{path} records a different {name} configuration than these settings:\n"
                    f"  recorded: {getattr(previous, name)}\n  now:      {getattr(run, name)}\n"
                    "Use another model_dir, or the recorded settings to resume.")
    os.makedirs(model_dir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(run.to_dict(), f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_run_config(path: str) -> RunConfig:
    """Reads a config.json; ValueError naming the file if it is not one this version wrote."""
    try:
        with open(path) as f:
            return RunConfig.from_dict(json.load(f))
    except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a readable run configuration ({e})") from e


def load_run_config(ckpt_or_dir: str):
    """Finds config.json and the checkpoint for a model_dir or a checkpoint prefix in one.

    Returns:
      (RunConfig, checkpoint path).
    """
    if os.path.isdir(ckpt_or_dir):
        model_dir = ckpt_or_dir
        ckpt = tf.train.latest_checkpoint(model_dir)
        if ckpt is None:
            raise FileNotFoundError(f"load_run_config: no checkpoint in {model_dir} (train first)")
    else:
        model_dir = os.path.dirname(ckpt_or_dir) or "."
        ckpt = ckpt_or_dir
        if not tf.io.gfile.exists(ckpt + ".index"):
            raise FileNotFoundError(f"load_run_config: {ckpt}.index does not exist; pass a "
                                    "model_dir or a checkpoint prefix such as model_dir/ckpt-300")
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_run_config: {path} is missing; it is written by train.py")
    return read_run_config(path), ckpt


def restore_model(ckpt_or_dir: str):
    """Builds the model recorded in config.json and restores its weights.

    Returns:
      (model, RunConfig, checkpoint path).
    """
    run, ckpt = load_run_config(ckpt_or_dir)
    model = strategies.build_model(run.model)  # variables exist, so restoring is immediate
    try:
        status = tf.train.Checkpoint(model=model).restore(ckpt)
        # Every variable of the model must come from the checkpoint (a checkpoint of another
        # strategy or size must not half-restore); the optimizer's slots are not needed.
        status.assert_existing_objects_matched().expect_partial()
        # A larger model's checkpoint also holds every variable of a smaller one (poe's RGB
        # encoder and pose decoder are cvae's): every saved model variable must be used too.
        saved = [name for name, _ in tf.train.list_variables(ckpt)
                 if name.startswith("model/") and ".OPTIMIZER_SLOT" not in name]
        if len(saved) != len(model.variables):
            raise AssertionError(f"it holds {len(saved)} model variables, the model has "
                                 f"{len(model.variables)}")
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ValueError(f"restore_model: {ckpt} does not hold the {run.model.strategy} model "
                         f"that {CONFIG_FILE} describes ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:300]})") from e
    return model, run, ckpt
