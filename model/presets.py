"""The training presets (docs/training.md, "Presets"): networks, data and optimisation of each; no
TensorFlow.

'paper' is SPEC 3's hyper-parameters at the paper's network widths. The CPU-scale regime keeps
the paper's architecture at a quarter of every width, 64 px crops, 64 cloud points and Adam at
1e-3, so that every strategy learns on 2 cores: 'experiment' is the step budget of the experiments
(python -m experiments.run), 'cpu' the same regime for `make demo`. 'smoke' runs in seconds for
tests: an eighth of every width and 16 points, so that a checkpoint with its Adam state is about
4.5 MB. Step counts for 'paper' are our choice (the paper trains to convergence): about 100 epochs
of RHD at batch 32.
"""
from typing import Any, Dict, Optional

from data_pipeline.config import DataConfig
from model.config import ModelConfig

# Steps of the CPU-scale regime: equal for every strategy of an experiment (compared at equal
# steps, not equal time), and the demo's, which fits `make demo` in about 10 minutes.
EXPERIMENT_STEPS = 3_000
DEMO_STEPS = 1_500
# The CPU regime's learning-rate decays (x0.1 each), at these fractions of its step budget: the
# paper decays twice after convergence, which a budget of a few thousand steps never reaches on a
# plateau rule. Chosen on the validation split (docs/training.md, "The learning-rate schedule of
# the CPU regime").
CPU_LR_DECAY_FRACTIONS = (0.7, 0.9)
# TrainConfig.lr_schedule: decays on validation plateaus (the paper) or at fixed fractions.
LR_SCHEDULES = ("plateau", "fixed")
_PLATEAU = dict(lr_schedule="plateau", lr_decay_fractions=())
_FIXED = dict(lr_schedule="fixed", lr_decay_fractions=CPU_LR_DECAY_FRACTIONS)

# Per preset: the networks ('model': ModelConfig.at_width's multiplier), the data's crop side and
# points per cloud N ('data': a perfect square N for FoldingNet's grid; 64 points keep S3's and
# S4's cloud decodes and EMD within 3x of S1's step, benchmarks/train_step.py; the paper samples
# 256), and the optimisation ('train': TrainConfig fields).
PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "paper": dict(
        model=dict(width=1.0), data=dict(image_size=256, num_points=256),
        train=dict(batch_size=32, max_steps=130_000, beta_anneal_steps=40_000, eval_every=2_000,
                   checkpoint_every=2_000, log_every=100, eval_batches=0, plateau_patience=5,
                   learning_rate=1e-4, **_PLATEAU)),
    "experiment": dict(
        model=dict(width=0.25), data=dict(image_size=64, num_points=64),
        train=dict(batch_size=32, max_steps=EXPERIMENT_STEPS,
                   beta_anneal_steps=EXPERIMENT_STEPS // 3, eval_every=500, checkpoint_every=500,
                   log_every=50, eval_batches=0, plateau_patience=3, learning_rate=1e-3,
                   **_FIXED)),
    "cpu": dict(
        model=dict(width=0.25), data=dict(image_size=64, num_points=64),
        train=dict(batch_size=32, max_steps=DEMO_STEPS, beta_anneal_steps=DEMO_STEPS // 3,
                   eval_every=250, checkpoint_every=250, log_every=25, eval_batches=0,
                   plateau_patience=3, learning_rate=1e-3, **_FIXED)),
    "smoke": dict(
        model=dict(width=0.125), data=dict(image_size=32, num_points=16),
        train=dict(batch_size=4, max_steps=4, beta_anneal_steps=2, eval_every=2,
                   checkpoint_every=2, log_every=1, eval_batches=1, plateau_patience=1,
                   learning_rate=1e-4, **_PLATEAU)),
}
NAMES = tuple(PRESETS)


def section(preset: str, name: str) -> Dict[str, Any]:
    """A copy of one section ('model', 'data' or 'train') of `preset`."""
    if preset not in PRESETS:
        raise ValueError(f"presets: preset must be one of {NAMES}, got {preset!r}")
    return dict(PRESETS[preset][name])


def _given(fields: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def data_config(preset: str, **fields) -> DataConfig:
    """The preset's crop side and points per cloud, and the other DataConfig `fields`; a field
    given as None keeps the preset's value or the default."""
    return DataConfig(**{**section(preset, "data"), **_given(fields)})


def model_config(preset: str, data: DataConfig, *, width: Optional[float] = None,
                 **fields) -> ModelConfig:
    """The preset's networks (or `width`'s) for the crops and clouds of `data`, with the other
    ModelConfig `fields` (strategy, decoders) as given."""
    values = section(preset, "model")
    values.update(_given({"width": width}))
    return ModelConfig.at_width(values["width"], image_size=data.image_size,
                                num_points=data.num_points, **fields)
