"""How training is spread over devices and hosts (train.py --distribution)."""
import os

import tensorflow as tf

from model.config import DISTRIBUTIONS


def make_distribution(name: str = "auto") -> tf.distribute.Strategy:
    """The tf.distribute strategy of train.py --distribution.

    'auto': MirroredStrategy over several local GPUs, else one device (the GPU if any, else the
    CPU). 'mirrored': MirroredStrategy over every local GPU (the CPU without one).
    'multi_worker': MultiWorkerMirroredStrategy over the hosts that TF_CONFIG lists
    (docs/training.md, "Training on several machines"); create it before any other TensorFlow work.
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
