"""The schedules of training (SPEC 3): the KL weight's annealing, the learning rate's plateaus."""
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
