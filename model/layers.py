"""Small building blocks shared by the encoders and decoders."""
import tensorflow as tf

# PyTorch's batch-norm settings (the paper's framework): Keras' default momentum 0.99 makes the
# moving statistics lag for thousands of steps, too slow for short runs.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def batch_norm(name=None) -> tf.keras.layers.BatchNormalization:
    """Batch normalisation over the last axis with the settings above."""
    return tf.keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)
