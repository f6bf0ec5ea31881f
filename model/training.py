"""The run's configuration, schedules and the custom training loop that minimises Eqs. 1-4.

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
import shutil
import signal
import tempfile
import threading
from typing import Any, Callable, Dict, Optional

import tensorflow as tf

from common.config import JsonConfig
from data_pipeline.config import VALIDATION_SPLITS, DataConfig
from model import config as model_config
from model.config import DISTRIBUTIONS
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
      lr_decay: factor applied on each validation plateau, at most `max_lr_decays` times; a plateau
        after the last decay ends training (converged).
      plateau_patience: validations without a new best EPE that make a plateau.
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
    lr_decay: float = 0.1
    max_lr_decays: int = 2
    plateau_patience: int = 3
    eval_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 25
    eval_batches: int = 8
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


def make_distribution(name: str = "auto") -> tf.distribute.Strategy:
    """The tf.distribute strategy of train.py --distribution.

    'auto': MirroredStrategy over several local GPUs, else one device (the GPU if any, else the
    CPU). 'mirrored': MirroredStrategy over every local GPU (the CPU without one).
    'multi_worker': MultiWorkerMirroredStrategy over the hosts that TF_CONFIG lists (README,
    "Training on several machines"); create it before any other TensorFlow work.
    """
    if name not in DISTRIBUTIONS:
        raise ValueError(f"make_distribution: name must be one of {DISTRIBUTIONS}, got {name!r}")
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("make_distribution: multi_worker needs the TF_CONFIG environment "
                             "variable (cluster and task of this worker)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")


def is_chief(distribution: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, config.json and summaries: always, except for
    the workers of a multi-worker cluster other than the chief (or worker 0 without one)."""
    resolver = getattr(distribution, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker"
                                            and resolver.task_id == 0)


class Trainer:
    """Owns the model, the optimizer, the schedules, checkpoints and summaries of one run.

    Under a multi-worker strategy every worker runs the same steps, but only the chief writes to
    model_dir; the others save their (identical) checkpoints to a scratch directory, which they
    remove when `fit` ends, and write no summaries.
    """

    def __init__(self, model_cfg: "model_config.ModelConfig", train_cfg: TrainConfig,
                 model_dir: str, distribution: Optional[tf.distribute.Strategy] = None):
        self.model_cfg = model_cfg
        self.config = train_cfg
        self.model_dir = model_dir
        self.distribution = distribution or make_distribution()
        self.is_chief = is_chief(self.distribution)
        with self.distribution.scope():
            tf.keras.utils.set_random_seed(train_cfg.seed)
            self.model = strategies.build_model(model_cfg)
            self.optimizer = tf.keras.optimizers.Adam(learning_rate=train_cfg.learning_rate)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.plateau = PlateauSchedule(self.optimizer, train_cfg)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              step=self.step, plateau=self.plateau)
        self._scratch = None if self.is_chief else tempfile.mkdtemp(prefix="worker_ckpt_")
        self.manager = tf.train.CheckpointManager(self.checkpoint, self._scratch or model_dir,
                                                  max_to_keep=3)
        self._writer = (tf.summary.create_file_writer(os.path.join(model_dir, "train"))
                        if self.is_chief else tf.summary.create_noop_writer())
        # Two functions: the loss, reduced over replicas, decides in Python whether the update
        # runs, so a step whose loss is not finite applies nothing on any worker.
        self._compute = tf.function(self._distributed_compute)
        self._apply = tf.function(self._distributed_apply)
        self.stop_signal: Optional[int] = None

    def latest_checkpoint(self) -> Optional[str]:
        """The newest checkpoint in model_dir (the chief's), None before the first."""
        return tf.train.latest_checkpoint(self.model_dir)

    def restore_latest(self) -> Optional[str]:
        """Resumes from the newest checkpoint in model_dir, if any; returns its path."""
        path = self.latest_checkpoint()
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def compute_gradients(self, batch: Dict[str, tf.Tensor]):
        """One replica's losses of the strategy's equation and their gradients.

        Returns:
          (losses dict, gradients in the order of model.trainable_variables).
        """
        beta = beta_at(self.step, self.config)
        # The sampling noise is a function of (seed, step, replica), so that a resumed run
        # draws what it would have drawn uninterrupted.
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.random.experimental.stateless_fold_in(
            tf.stack([tf.constant(self.config.seed, tf.int64), self.step]), replica)
        with tf.GradientTape() as tape:
            losses = self.model.compute_losses(batch, beta, training=True, seed=seed)
            # compute_losses averages over the local batch; gradients sum over replicas.
            scaled = losses["total"] / self.distribution.num_replicas_in_sync
        return losses, tape.gradient(scaled, self.model.trainable_variables)

    def apply_gradients(self, grads) -> None:
        """One Adam update of model.trainable_variables (summed over replicas)."""
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))

    def train_step(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """One replica's step: losses of the strategy's equation, then one Adam update."""
        losses, grads = self.compute_gradients(batch)
        self.apply_gradients(grads)
        return losses

    def _distributed_compute(self, batch):
        losses, grads = self.distribution.run(self.compute_gradients, args=(batch,))
        losses = {k: self.distribution.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                  for k, v in losses.items()}
        return losses, grads

    def _distributed_apply(self, grads):
        self.distribution.run(self.apply_gradients, args=(grads,))
        self.step.assign_add(1)

    def update(self, batch):
        """The step of `fit`: one update, or none when the loss is not finite on any replica
        (the losses are reduced over replicas first, so every worker takes the same decision).
        Two tf.functions (losses and gradients, then the update) with the finiteness check in
        Python between them; benchmarks/train_step.py times it against `train_step` in one.

        Returns:
          (losses, whether the update was applied).
        """
        losses, grads = self._compute(batch)
        finite = math.isfinite(float(losses["total"]))
        if finite:
            self._apply(grads)
        return losses, finite

    def fit(self, train_ds: tf.data.Dataset,
            validate: Optional[Callable[[tf.keras.Model], Dict[str, float]]] = None,
            sample_images: Optional[tf.Tensor] = None, verbose: bool = True) -> Dict[str, float]:
        """Trains until max_steps, convergence or SIGTERM; returns the last logged losses and
        metrics.

        Each step: one distributed update, then logging (every log_every), validation with the
        plateau schedule (every eval_every) and checkpointing (every checkpoint_every, and at the
        end). A step whose loss is not finite applies no update and is logged; more than
        max_nonfinite_steps of them in a row stop training (FloatingPointError naming the step
        and the last good checkpoint, which stays intact). SIGTERM (what a cluster scheduler
        sends) saves a checkpoint at the current step and returns; `stop_signal` then holds it.

        Args:
          train_ds: an infinite dataset of batches (see data_pipeline.dataset.build_dataset).
          validate: model -> metrics dict with 'epe_mean_mm'; drives the plateau schedule.
          sample_images: (K, S, S, 3) images written to TensorBoard at each validation.
          verbose: show a progress bar and a line per validation.
        """
        cfg = self.config
        options = tf.data.Options()
        # Each worker reads every record and keeps its share of the elements, as the files are
        # fewer than workers may be.
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        iterator = iter(self.distribution.experimental_distribute_dataset(
            train_ds.with_options(options)))
        metrics: Dict[str, float] = {}
        trackers: Dict[str, tf.keras.metrics.Mean] = {}
        progbar = tf.keras.utils.Progbar(cfg.max_steps, verbose=1 if verbose else 0,
                                         unit_name="step")
        progbar.update(int(self.step.numpy()))
        nonfinite = 0
        self.stop_signal = None
        previous = self._catch_sigterm()
        try:
            with self._writer.as_default():
                while int(self.step.numpy()) < cfg.max_steps and self.stop_signal is None:
                    losses, applied = self.update(next(iterator))
                    step = int(self.step.numpy())
                    if not applied:
                        nonfinite = self._skip(losses, step, nonfinite + 1)
                        continue
                    nonfinite = 0
                    progbar.update(step, values=[("loss", float(losses["total"]))])
                    metrics.update(self._log(losses, trackers, step))
                    converged = False
                    if validate is not None and (step % cfg.eval_every == 0
                                                 or step == cfg.max_steps):
                        result, converged = self._validate(validate, sample_images, step,
                                                           verbose)
                        metrics.update(result)
                    if (step % cfg.checkpoint_every == 0 or step == cfg.max_steps or converged
                            or self.stop_signal is not None):
                        self.manager.save(checkpoint_number=step)
                    if converged:
                        break
            self._writer.flush()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if self._scratch:
                shutil.rmtree(self._scratch, ignore_errors=True)
        return metrics

    def _catch_sigterm(self):
        """Turns SIGTERM into a request to checkpoint and stop after the current step; returns
        the previous handler (None where signals cannot be caught: not the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum, frame):
            del frame
            self.stop_signal = signum

        return signal.signal(signal.SIGTERM, request_stop)

    def _skip(self, losses: Dict[str, tf.Tensor], step: int, in_a_row: int) -> int:
        """Logs a step whose update was skipped (its loss is not finite); stops training when
        more than max_nonfinite_steps happened in a row. Returns the count in a row."""
        total = float(losses["total"])
        print(f"\nstep {step + 1}: loss is {total}, update skipped ({in_a_row} in a row)",
              flush=True)
        tf.summary.scalar("skipped_nonfinite", in_a_row, step=step)
        if in_a_row > self.config.max_nonfinite_steps:
            last = self.latest_checkpoint()
            raise FloatingPointError(
                f"loss not finite at {in_a_row} steps in a row (last: {total} at step "
                f"{step + 1}); training stopped. Last good checkpoint: {last}")
        return in_a_row

    def _log(self, losses: Dict[str, tf.Tensor], trackers: Dict[str, tf.keras.metrics.Mean],
             step: int) -> Dict[str, float]:
        """Accumulates the step's losses; every log_every steps (and at the last) writes their
        means, beta and the learning rate to TensorBoard and returns the means, else {}."""
        cfg = self.config
        for name, value in losses.items():
            trackers.setdefault(name, tf.keras.metrics.Mean(name)).update_state(value)
        if step % cfg.log_every and step != cfg.max_steps:
            return {}
        means = {name: float(t.result()) for name, t in trackers.items()}
        for name, value in means.items():
            tf.summary.scalar(f"loss/{name}", value, step=step)
        tf.summary.scalar("beta", beta_at(step, cfg), step=step)
        tf.summary.scalar("learning_rate", self.optimizer.learning_rate, step=step)
        for t in trackers.values():
            t.reset_state()
        return means

    def _validate(self, validate, sample_images, step: int, verbose: bool):
        """Runs `validate`, writes its numbers to TensorBoard and steps the plateau schedule.

        Returns:
          ({'val/<name>': value}, whether training converged).
        """
        result = validate(self.model)
        numbers = {k: v for k, v in result.items() if isinstance(v, (int, float))}
        for name, value in numbers.items():
            tf.summary.scalar(f"val/{name}", value, step=step)
        if sample_images is not None:
            tf.summary.image("val/input", sample_images, step=step, max_outputs=4)
        status = self.plateau.update(result["epe_mean_mm"])
        if verbose:
            print(f"\nstep {step}: validation EPE {result['epe_mean_mm']:.2f} mm "
                  f"(best {float(self.plateau.best_epe.numpy()):.2f}, {status}, "
                  f"lr {float(self.optimizer.learning_rate.numpy()):.2e})")
        return {f"val/{k}": v for k, v in numbers.items()}, status == "converged"


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
