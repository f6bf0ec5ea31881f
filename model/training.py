"""Presets, schedules and the custom training loop that minimises Eqs. 1-4.

The loop is deliberately small: `Trainer.train_step` is a pure function of a batch (one
GradientTape over the strategy's `compute_losses`), run under a tf.distribute strategy; the rest
is bookkeeping the paper asks for (beta annealing, Adam, learning rate x0.1 on validation plateaus,
twice) plus what a researcher needs (resumable checkpoints, TensorBoard, a progress bar).
Validation is passed in as a callable so that model/ does not depend on the evaluation package.
"""
import dataclasses
import json
import math
import os
from typing import Callable, Dict, Optional

import tensorflow as tf

from model import config as model_config
from model import strategies

CONFIG_FILE = "config.json"

# Steps of the CPU-scale regime: equal for every strategy of an experiment (compared at equal
# steps, not equal time), and the demo's, which fits `make demo` in about 10 minutes.
EXPERIMENT_STEPS = 3_000
DEMO_STEPS = 1_500

# Training presets. 'paper' is SPEC 3's hyper-parameters at the paper's network widths. The
# CPU-scale regime keeps the paper's architecture at a quarter of every width (MODEL_PRESETS),
# 64 px crops, 64 cloud points and Adam at 1e-3, so that every strategy learns on 2 cores:
# 'experiment' is the step budget of the experiments (python -m experiments.run), 'cpu' the same
# regime for `make demo`. 'smoke' runs in seconds for tests. Step counts for 'paper' are our
# choice (the paper trains to convergence): about 100 epochs of RHD at batch 32.
PRESETS: Dict[str, Dict] = {
    "paper": dict(image_size=256, batch_size=32, max_steps=130_000, beta_anneal_steps=40_000,
                  eval_every=2_000, checkpoint_every=2_000, log_every=100, eval_batches=0,
                  plateau_patience=5, learning_rate=1e-4),
    "experiment": dict(image_size=64, batch_size=32, max_steps=EXPERIMENT_STEPS,
                       beta_anneal_steps=EXPERIMENT_STEPS // 3, eval_every=500,
                       checkpoint_every=500, log_every=50, eval_batches=8, plateau_patience=3,
                       learning_rate=1e-3),
    "cpu": dict(image_size=64, batch_size=32, max_steps=DEMO_STEPS,
                beta_anneal_steps=DEMO_STEPS // 3, eval_every=250, checkpoint_every=250,
                log_every=25, eval_batches=8, plateau_patience=3, learning_rate=1e-3),
    "smoke": dict(image_size=32, batch_size=4, max_steps=4, beta_anneal_steps=2,
                  eval_every=2, checkpoint_every=2, log_every=1, eval_batches=1,
                  plateau_patience=1, learning_rate=1e-4),
}
# The networks of each preset: ModelConfig.at_width's multiplier and the points per cloud N
# (a perfect square for FoldingNet's grid). 64 points keep S3's and S4's cloud decodes and EMD
# within 3x of S1's step (benchmarks/train_step.py); the paper samples 256.
MODEL_PRESETS: Dict[str, Dict] = {
    "paper": dict(width=1.0, num_points=256),
    "experiment": dict(width=0.25, num_points=64),
    "cpu": dict(width=0.25, num_points=64),
    "smoke": dict(width=1.0, num_points=256),
}


def model_config_for(preset: str, *, width: Optional[float] = None,
                     num_points: Optional[int] = None, **fields) -> model_config.ModelConfig:
    """The networks of `preset` (MODEL_PRESETS), `width` and `num_points` overriding it when not
    None, and the other ModelConfig `fields` (strategy, decoders, image_size) as given."""
    if preset not in MODEL_PRESETS:
        raise ValueError(f"model_config_for: preset must be one of {sorted(MODEL_PRESETS)}, "
                         f"got {preset!r}")
    values = dict(MODEL_PRESETS[preset])
    values.update({k: v for k, v in (("width", width), ("num_points", num_points))
                   if v is not None})
    return model_config.ModelConfig.at_width(values.pop("width"), **values, **fields)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (SPEC 3) and loop cadence.

    Attributes:
      preset: name of the preset the other values started from.
      image_size: crop size in pixels (S); heatmaps are S/4.
      batch_size: global batch size.
      max_steps: optimisation steps in total.
      learning_rate: Adam's initial learning rate.
      beta_start, beta_end: KL weight annealed geometrically over `beta_anneal_steps`.
      lr_decay: factor applied on each validation plateau, at most `max_lr_decays` times; a plateau
        after the last decay ends training (converged).
      plateau_patience: validations without a new best EPE that make a plateau.
      eval_every, checkpoint_every, log_every: cadence in steps.
      eval_batches: validation batches per evaluation (0 = the whole split).
      labelled_fraction: share of training samples that keep their 3D pose (paper Fig. 8).
      labelled_only: train on the labelled samples alone (Fig. 8's fully supervised baseline).
      view_correction: whether pre-processing rotates the camera onto the hand (paper Fig. 5).
      seed: seeds weights, shuffling and augmentation.
    """

    preset: str = "cpu"
    image_size: int = 64
    batch_size: int = 32
    max_steps: int = DEMO_STEPS
    learning_rate: float = 1e-3
    beta_start: float = 1e-5
    beta_end: float = 1e-3
    beta_anneal_steps: int = DEMO_STEPS // 3
    lr_decay: float = 0.1
    max_lr_decays: int = 2
    plateau_patience: int = 3
    eval_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 25
    eval_batches: int = 8
    labelled_fraction: float = 1.0
    labelled_only: bool = False
    view_correction: bool = True
    seed: int = 0

    def __post_init__(self):
        positive = ("image_size", "batch_size", "max_steps", "eval_every", "checkpoint_every",
                    "log_every", "beta_anneal_steps", "plateau_patience")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.labelled_fraction <= 1.0:
            raise ValueError(f"--labelled_fraction must be in [0, 1], got {self.labelled_fraction}")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning_rate must be positive, got {self.learning_rate}")

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "TrainConfig":
        """The preset's values with `overrides` (None values ignored) on top."""
        if preset not in PRESETS:
            raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {preset!r}")
        values = dict(PRESETS[preset], preset=preset)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def beta_at(step, config: TrainConfig):
    """KL weight beta at `step`: geometric from beta_start to beta_end, then constant.

    The paper anneals beta from 1e-5 to 1e-3 without saying how; over two decades a geometric
    ramp spends equal time per decade, which a linear ramp would not.
    """
    t = tf.minimum(tf.cast(step, tf.float32) / float(config.beta_anneal_steps), 1.0)
    log_b = (1.0 - t) * math.log(config.beta_start) + t * math.log(config.beta_end)
    return tf.exp(log_b)


class PlateauSchedule(tf.Module):
    """Learning rate x `lr_decay` when validation EPE stops improving (checkpointed state).

    `update(epe)` returns 'improved', 'waiting', 'decayed' or 'converged' (a plateau after the
    last allowed decay).
    """

    def __init__(self, optimizer: tf.keras.optimizers.Optimizer, config: TrainConfig):
        super().__init__(name="plateau_schedule")
        self._optimizer = optimizer
        self._config = config
        self.best_epe = tf.Variable(float("inf"), trainable=False, name="best_epe")
        self.bad_evals = tf.Variable(0, trainable=False, name="bad_evals")
        self.num_decays = tf.Variable(0, trainable=False, name="num_decays")

    def update(self, epe: float) -> str:
        if epe < float(self.best_epe.numpy()):
            self.best_epe.assign(epe)
            self.bad_evals.assign(0)
            return "improved"
        self.bad_evals.assign_add(1)
        if int(self.bad_evals.numpy()) < self._config.plateau_patience:
            return "waiting"
        self.bad_evals.assign(0)
        if int(self.num_decays.numpy()) >= self._config.max_lr_decays:
            return "converged"
        self.num_decays.assign_add(1)
        lr = self._optimizer.learning_rate
        lr.assign(lr * self._config.lr_decay)
        return "decayed"


def default_distribution_strategy() -> tf.distribute.Strategy:
    """Mirrored over several GPUs, else one device (the GPU if any, else the CPU)."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")


class Trainer:
    """Owns the model, the optimizer, the schedules, checkpoints and summaries of one run."""

    def __init__(self, model_cfg: "model_config.ModelConfig", train_cfg: TrainConfig,
                 model_dir: str, distribution: Optional[tf.distribute.Strategy] = None):
        self.model_cfg = model_cfg
        self.config = train_cfg
        self.model_dir = model_dir
        self.distribution = distribution or default_distribution_strategy()
        with self.distribution.scope():
            tf.keras.utils.set_random_seed(train_cfg.seed)
            self.model = strategies.build_model(model_cfg)
            self.optimizer = tf.keras.optimizers.Adam(learning_rate=train_cfg.learning_rate)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.plateau = PlateauSchedule(self.optimizer, train_cfg)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              step=self.step, plateau=self.plateau)
        self.manager = tf.train.CheckpointManager(self.checkpoint, model_dir, max_to_keep=3)
        self._writer = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
        self._distributed_step = None

    def restore_latest(self) -> Optional[str]:
        """Resumes from the newest checkpoint in model_dir, if any; returns its path."""
        path = self.manager.latest_checkpoint
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def train_step(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """One replica's step: losses of the strategy's equation, then one Adam update."""
        beta = beta_at(self.step, self.config)
        with tf.GradientTape() as tape:
            losses = self.model.compute_losses(batch, beta, training=True)
            # compute_losses averages over the local batch; gradients sum over replicas.
            scaled = losses["total"] / self.distribution.num_replicas_in_sync
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return losses

    def _run_step(self, batch):
        per_replica = self.distribution.run(self.train_step, args=(batch,))
        losses = {k: self.distribution.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                  for k, v in per_replica.items()}
        self.step.assign_add(1)
        return losses

    def fit(self, train_ds: tf.data.Dataset,
            validate: Optional[Callable[[tf.keras.Model], Dict[str, float]]] = None,
            sample_images: Optional[tf.Tensor] = None, verbose: bool = True) -> Dict[str, float]:
        """Trains until max_steps or convergence; returns the last logged losses and metrics.

        Args:
          train_ds: an infinite dataset of batches (see data_pipeline.dataset.build_dataset).
          validate: model -> metrics dict with 'epe_mean_mm'; drives the plateau schedule.
          sample_images: (K, S, S, 3) images written to TensorBoard at each validation.
        """
        cfg = self.config
        if self._distributed_step is None:
            self._distributed_step = tf.function(self._run_step)
        iterator = iter(self.distribution.experimental_distribute_dataset(train_ds))
        metrics = {}
        trackers: Dict[str, tf.keras.metrics.Mean] = {}
        start = int(self.step.numpy())
        progbar = tf.keras.utils.Progbar(cfg.max_steps, verbose=1 if verbose else 0,
                                         stateful_metrics=None, unit_name="step")
        progbar.update(start)
        with self._writer.as_default():
            while int(self.step.numpy()) < cfg.max_steps:
                losses = self._distributed_step(next(iterator))
                step = int(self.step.numpy())
                for name, value in losses.items():
                    trackers.setdefault(name, tf.keras.metrics.Mean(name)).update_state(value)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    metrics = {name: float(t.result()) for name, t in trackers.items()}
                    for name, value in metrics.items():
                        tf.summary.scalar(f"loss/{name}", value, step=step)
                    tf.summary.scalar("beta", beta_at(step, cfg), step=step)
                    tf.summary.scalar("learning_rate", self.optimizer.learning_rate, step=step)
                    for t in trackers.values():
                        t.reset_state()
                progbar.update(step, values=[("loss", float(losses["total"]))])
                if not math.isfinite(float(losses["total"])):
                    raise FloatingPointError(
                        f"loss became {float(losses['total'])} at step {step}; last good "
                        f"checkpoint: {self.manager.latest_checkpoint}")
                converged = False
                if validate is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                    result = validate(self.model)
                    for name, value in result.items():
                        if isinstance(value, (int, float)):
                            tf.summary.scalar(f"val/{name}", value, step=step)
                    if sample_images is not None:
                        tf.summary.image("val/input", sample_images, step=step, max_outputs=4)
                    status = self.plateau.update(result["epe_mean_mm"])
                    metrics.update({f"val/{k}": v for k, v in result.items()
                                    if isinstance(v, (int, float))})
                    if verbose:
                        print(f"\nstep {step}: validation EPE {result['epe_mean_mm']:.2f} mm "
                              f"(best {float(self.plateau.best_epe.numpy()):.2f}, {status}, "
                              f"lr {float(self.optimizer.learning_rate.numpy()):.2e})")
                    converged = status == "converged"
                if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or converged:
                    self.manager.save(checkpoint_number=step)
                if converged:
                    break
        self._writer.flush()
        return metrics


def save_run_config(model_dir: str, run_config: Dict) -> None:
    """Writes model_dir/config.json, refusing to resume a run with another model.

    Resuming with other loop settings (max_steps, eval cadence) is allowed; changing the model,
    the data or the strategy is not, since the checkpoint would not match.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        for section in ("model", "data"):
            if previous.get(section) != run_config.get(section):
                raise ValueError(
                    f"{path} records a different {section} configuration than these flags:\n"
                    f"  recorded: {previous.get(section)}\n  now:      {run_config.get(section)}\n"
                    "Use another --model_dir, or the recorded flags to resume.")
    os.makedirs(model_dir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(run_config, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def load_run_config(ckpt_or_dir: str):
    """Finds config.json and the checkpoint for a model_dir or a checkpoint prefix in one.

    Returns:
      (config dict, checkpoint path).
    """
    if os.path.isdir(ckpt_or_dir):
        model_dir = ckpt_or_dir
        ckpt = tf.train.latest_checkpoint(model_dir)
        if ckpt is None:
            raise FileNotFoundError(f"--ckpt: no checkpoint in {model_dir} (train first)")
    else:
        model_dir = os.path.dirname(ckpt_or_dir) or "."
        ckpt = ckpt_or_dir
        if not tf.io.gfile.exists(ckpt + ".index"):
            raise FileNotFoundError(f"--ckpt: {ckpt}.index does not exist; pass a model_dir or a "
                                    "checkpoint prefix such as model_dir/ckpt-300")
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"--ckpt: {path} is missing; it is written by train.py")
    with open(path) as f:
        return json.load(f), ckpt


def restore_model(ckpt_or_dir: str):
    """Builds the model recorded in config.json and restores its weights.

    Returns:
      (model, config dict, checkpoint path).
    """
    run_config, ckpt = load_run_config(ckpt_or_dir)
    cfg = model_config.ModelConfig.from_dict(run_config["model"])
    model = strategies.build_model(cfg)  # variables exist, so restoring is immediate
    tf.train.Checkpoint(model=model).restore(ckpt).expect_partial()
    return model, run_config, ckpt
