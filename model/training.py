"""The custom training loop that minimises Eqs. 1-4.

The loop is deliberately small: `Trainer.train_step` is a pure function of a batch (one
GradientTape over the strategy's `compute_losses`), run under a tf.distribute strategy; the rest
is bookkeeping the paper asks for (beta annealing, Adam, learning rate x0.1 twice, on validation
plateaus or at fixed fractions of the budget; model/schedules.py) plus what a researcher needs
(resumable checkpoints, TensorBoard, a progress bar). The run's configuration is
model/run_config.py. Validation is passed in as a callable so that model/ does not depend on the
evaluation package.
"""
import os
import shutil
import signal
import tempfile
import threading
from typing import Callable, Dict, Optional

import tensorflow as tf

from common.progress import Progress
from model import config as model_config
from model import strategies
from model.distribute import is_chief, make_distribution
from model.run_config import TrainConfig
from model.schedules import beta_at, make_schedule


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
            self.schedule = make_schedule(self.optimizer, train_cfg)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              step=self.step, schedule=self.schedule)
        self._scratch = None if self.is_chief else tempfile.mkdtemp(prefix="worker_ckpt_")
        self.manager = tf.train.CheckpointManager(self.checkpoint, self._scratch or model_dir,
                                                  max_to_keep=3)
        self._writer = (tf.summary.create_file_writer(os.path.join(model_dir, "train"))
                        if self.is_chief else tf.summary.create_noop_writer())
        self._update = tf.function(self._distributed_update)
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

    def _distributed_update(self, batch):
        losses, grads = self.distribution.run(self.compute_gradients, args=(batch,))
        losses = {k: self.distribution.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                  for k, v in losses.items()}

        def apply():
            self.distribution.run(self.apply_gradients, args=(grads,))
            self.step.assign_add(1)
            return tf.constant(True)

        # In cross-replica context, as Keras' LossScaleOptimizer skips a non-finite update: the
        # reduced loss is the same on every replica and worker, so all take the same branch.
        applied = tf.cond(tf.math.is_finite(losses["total"]), apply, lambda: tf.constant(False))
        return losses, applied

    def update(self, batch):
        """The step of `fit`: one update, or none when the loss is not finite on any replica
        (the losses are reduced over replicas first, so every worker takes the same decision).
        One tf.function; benchmarks/loop.py times it against `train_step` alone.

        Returns:
          (losses, whether the update was applied).
        """
        losses, applied = self._update(batch)
        return losses, bool(applied)

    def fit(self, train_ds: tf.data.Dataset,
            validate: Optional[Callable[[tf.keras.Model], Dict[str, float]]] = None,
            sample_images: Optional[tf.Tensor] = None, verbose: bool = True) -> Dict[str, float]:
        """Trains until max_steps, convergence or SIGTERM; returns the last logged losses and
        metrics.

        Each step: one distributed update, the learning-rate schedule, then logging (every
        log_every), validation (every eval_every) and checkpointing (every checkpoint_every).
        However the loop ends (max_steps, convergence, SIGTERM at any moment, whatever the loop was
        doing), a checkpoint at the last applied step is left behind. A step whose loss is not
        finite applies no update and is logged; more than max_nonfinite_steps of them in a row
        stop training (FloatingPointError naming the step and the last good checkpoint, which
        stays intact). SIGTERM (what a cluster scheduler sends) ends the loop after the current
        step, validation or save; `stop_signal` then holds it.

        Args:
          train_ds: an infinite dataset of batches (see data_pipeline.dataset.build_dataset).
          validate: model -> metrics dict with 'epe_mean_mm'; drives a plateau schedule.
          sample_images: (K, S, S, 3) images written to TensorBoard at each validation.
          verbose: report progress (common/progress.py) and a line per validation.
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
        means = LossMeans()
        step = int(self.step.numpy())  # mirrored in Python: reading the variable costs a sync
        progress = Progress(cfg.max_steps, "step", "train", done=step, enabled=verbose)
        saved = self._saved_step()
        nonfinite = 0
        self.stop_signal = None
        previous = self._catch_sigterm()
        try:
            with self._writer.as_default():
                self.schedule.on_step(step)
                while step < cfg.max_steps and self.stop_signal is None:
                    losses, applied = self.update(next(iterator))
                    values = {name: float(value) for name, value in losses.items()}
                    if not applied:
                        nonfinite = self._skip(values["total"], step, nonfinite + 1)
                        continue
                    nonfinite = 0
                    step += 1
                    self.schedule.on_step(step)
                    progress.update(step, loss=values["total"])
                    metrics.update(self._log(values, means, step))
                    converged = False
                    if validate is not None and (step % cfg.eval_every == 0
                                                 or step == cfg.max_steps):
                        result, converged = self._validate(validate, sample_images, step,
                                                           progress)
                        metrics.update(result)
                    if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or converged:
                        saved = self._save(step)
                    if converged:
                        break
                if saved != step:  # stopped by a signal between two saves
                    saved = self._save(step)
            self._writer.flush()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if self._scratch:
                shutil.rmtree(self._scratch, ignore_errors=True)
        return metrics

    def _saved_step(self) -> Optional[int]:
        """The step of this trainer's newest checkpoint (CheckpointManager numbers them by
        step), None before the first."""
        path = self.manager.latest_checkpoint
        return int(path.rsplit("-", 1)[1]) if path else None

    def _save(self, step: int) -> int:
        self.manager.save(checkpoint_number=step)
        return step

    def _catch_sigterm(self):
        """Turns SIGTERM into a request to checkpoint and stop after the current step; returns
        the previous handler (None where signals cannot be caught: not the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum, frame):
            del frame
            self.stop_signal = signum

        return signal.signal(signal.SIGTERM, request_stop)

    def _skip(self, total: float, step: int, in_a_row: int) -> int:
        """Logs a step whose update was skipped (its loss is not finite); stops training when
        more than max_nonfinite_steps happened in a row. Returns the count in a row."""
        print(f"\nstep {step + 1}: loss is {total}, update skipped ({in_a_row} in a row)",
              flush=True)
        tf.summary.scalar("skipped_nonfinite", in_a_row, step=step)
        if in_a_row > self.config.max_nonfinite_steps:
            last = self.latest_checkpoint()
            raise FloatingPointError(
                f"loss not finite at {in_a_row} steps in a row (last: {total} at step "
                f"{step + 1}); training stopped. Last good checkpoint: {last}")
        return in_a_row

    def _log(self, losses: Dict[str, float], means: "LossMeans", step: int) -> Dict[str, float]:
        """Accumulates the step's losses; every log_every steps (and at the last) writes their
        means, beta and the learning rate to TensorBoard and returns the means, else {}."""
        cfg = self.config
        means.add(losses)
        if step % cfg.log_every and step != cfg.max_steps:
            return {}
        result = means.result()
        for name, value in result.items():
            tf.summary.scalar(f"loss/{name}", value, step=step)
        tf.summary.scalar("beta", beta_at(step, cfg), step=step)
        tf.summary.scalar("learning_rate", self.optimizer.learning_rate, step=step)
        means.reset()
        return result

    def _validate(self, validate, sample_images, step: int, progress: Progress):
        """Runs `validate`, writes its numbers to TensorBoard and tells the learning-rate
        schedule.

        Returns:
          ({'val/<name>': value}, whether training converged).
        """
        result = validate(self.model)
        numbers = {k: v for k, v in result.items() if isinstance(v, (int, float))}
        for name, value in numbers.items():
            tf.summary.scalar(f"val/{name}", value, step=step)
        if sample_images is not None:
            tf.summary.image("val/input", sample_images, step=step, max_outputs=4)
        status = self.schedule.update(result["epe_mean_mm"])
        progress.message(f"step {step}: validation EPE {result['epe_mean_mm']:.2f} mm "
                         f"(best {float(self.schedule.best_epe.numpy()):.2f}, {status}, "
                         f"lr {float(self.optimizer.learning_rate.numpy()):.2e})")
        return {f"val/{k}": v for k, v in numbers.items()}, status == "converged"


class LossMeans:
    """Means of each loss over the steps since the last `reset`, accumulated in Python.

    The losses arrive as host floats once per step (the loop reads them anyway); a
    tf.keras.metrics.Mean updated eagerly per loss would cost a graph call each, which for S4's
    nineteen terms was a sizeable part of a 64-px step on 2 cores.
    """

    def __init__(self):
        self._sums: Dict[str, float] = {}
        self._count = 0

    def add(self, losses: Dict[str, float]) -> None:
        for name, value in losses.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._count += 1

    def result(self) -> Dict[str, float]:
        return {name: total / self._count for name, total in self._sums.items()}

    def reset(self) -> None:
        self._sums, self._count = {}, 0
