"""The schedules of training (SPEC 3): the KL weight's annealing and the learning rate's decays,
on validation plateaus (the paper) or at fixed fractions of the step budget (the CPU regime)."""
import math

import tensorflow as tf

from model.run_config import TrainConfig


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

    def on_step(self, step: int) -> None:
        """Nothing: a plateau schedule decays at validations only."""
        del step


class FixedSchedule(tf.Module):
    """Learning rate x `lr_decay` at the fractions `lr_decay_fractions` of max_steps.

    The paper decays twice after convergence; a budget of a few thousand steps ends before a
    plateau rule fires, so the CPU regime decays by the clock instead. The rate is a function of
    the step alone, so a resumed run follows an uninterrupted one. `update(epe)` only tracks the
    best validation EPE ('improved' or 'waiting'); it never ends training.
    """

    def __init__(self, optimizer: tf.keras.optimizers.Optimizer, config: TrainConfig):
        super().__init__(name="fixed_schedule")
        self._optimizer = optimizer
        self._config = config
        self.boundaries = decay_steps(config)
        self.best_epe = tf.Variable(float("inf"), trainable=False, name="best_epe")
        self._decays = None  # decays applied to the optimizer by this object; None: not yet set

    def _decays_at(self, step: int) -> int:
        return sum(step >= boundary for boundary in self.boundaries)

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of the update that follows `step` completed steps."""
        return self._config.learning_rate * self._config.lr_decay ** self._decays_at(step)

    def on_step(self, step: int) -> None:
        """Sets the learning rate for the step after `step` (assigns only when it changes)."""
        decays = self._decays_at(step)
        if decays != self._decays:
            self._optimizer.learning_rate.assign(self.learning_rate_at(step))
            self._decays = decays

    def update(self, epe: float) -> str:
        if epe < float(self.best_epe.numpy()):
            self.best_epe.assign(epe)
            return "improved"
        return "waiting"


def decay_steps(config: TrainConfig):
    """The steps after which a 'fixed' schedule decays: round(fraction * max_steps), each >= 1."""
    return tuple(max(1, round(f * config.max_steps)) for f in config.lr_decay_fractions)


def make_schedule(optimizer: tf.keras.optimizers.Optimizer, config: TrainConfig):
    """The learning-rate schedule that config.lr_schedule names."""
    if config.lr_schedule == "plateau":
        return PlateauSchedule(optimizer, config)
    return FixedSchedule(optimizer, config)
