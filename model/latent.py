"""Diagonal Gaussian latents: parametrisation, sampling, KL, product of experts (SPEC 2).

A posterior q(z|.) is given by its mean `mu` and log-variance `logvar`, both (B, D) float32.
"""
from typing import Sequence, Tuple

import tensorflow as tf

# Floor of the posterior standard deviation. It bounds every expert's precision by 1e6, so the
# alignment KL of S3 (which divides by the RGB posterior's variance) and the PoE weights of S4
# stay finite in float32 even when an encoder becomes very confident; z is on the scale of the
# N(0, I) prior, so 1e-3 is far below any useful posterior width.
MIN_STD = 1e-3


def gaussian_parameters(mean_logits: tf.Tensor, scale_logits: tf.Tensor
                        ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Maps the raw outputs of an encoder's two heads to (mu, logvar).

    The paper does not say how. We keep the mean linear (a tanh bound, as in a PyTorch port of
    the paper, saturates and stops gradients; the KL to the prior already keeps means near 0)
    and use std = softplus(s) + MIN_STD, logvar = 2 log std (the port uses softplus + 1e-9):
    softplus grows linearly, so a large head output cannot overflow the variance as exp(s)
    would, and the floor keeps precisions bounded (see MIN_STD).

    Args:
      mean_logits, scale_logits: (B, D) head outputs.

    Returns:
      mu, logvar: (B, D).
    """
    std = tf.nn.softplus(scale_logits) + MIN_STD
    return mean_logits, 2.0 * tf.math.log(std)


class Sampling(tf.keras.layers.Layer):
    """Reparameterised sample z = mu + exp(logvar / 2) * eps, eps ~ N(0, I).

    With training=False it returns mu, the deterministic latent used at inference (SPEC 2) and
    for validation losses. Given a `seed` ((2,) int tensor), eps is a function of it alone
    (stateless), so that a run resumed from a checkpoint draws the noise it would have drawn
    uninterrupted; without one it comes from TensorFlow's global random state.
    """

    def call(self, inputs, training=None, seed=None):
        mu, logvar = inputs
        if not training:
            return mu
        if seed is None:
            eps = tf.random.normal(tf.shape(mu), dtype=mu.dtype)
        else:
            eps = tf.random.stateless_normal(tf.shape(mu), seed, dtype=mu.dtype)
        return mu + tf.exp(0.5 * logvar) * eps


def kl_to_prior(mu: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over the D latent dimensions.

    Args:
      mu, logvar: (B, D).

    Returns:
      (B,) nats.
    """
    return 0.5 * tf.reduce_sum(tf.exp(logvar) + tf.square(mu) - 1.0 - logvar, axis=-1)


def kl_divergence(mu1: tf.Tensor, logvar1: tf.Tensor, mu2: tf.Tensor, logvar2: tf.Tensor
                  ) -> tf.Tensor:
    """KL(N(mu1, exp(logvar1)) || N(mu2, exp(logvar2))) of diagonal Gaussians (SPEC 2).

    0.5 * sum(lv2 - lv1 + (exp(lv1) + (mu1 - mu2)^2) * exp(-lv2) - 1).

    Args:
      mu1, logvar1, mu2, logvar2: (B, D).

    Returns:
      (B,) nats.
    """
    return 0.5 * tf.reduce_sum(
        logvar2 - logvar1 + (tf.exp(logvar1) + tf.square(mu1 - mu2)) * tf.exp(-logvar2) - 1.0,
        axis=-1)


def product_of_experts(mus: Sequence[tf.Tensor], logvars: Sequence[tf.Tensor],
                       include_prior: bool = True) -> Tuple[tf.Tensor, tf.Tensor]:
    """Product of diagonal Gaussian experts, in the stable form of SPEC 2 (precisions add).

    joint_logvar = -logsumexp_i(-lv_i), joint_mu = sum_i softmax_i(-lv_i) mu_i; with
    include_prior the prior expert N(0, I) (mu 0, logvar 0) is one of the experts, once.

    Args:
      mus, logvars: K tensors (B, D) each.
      include_prior: add the N(0, I) expert (S4 does).

    Returns:
      mu, logvar: (B, D) of the product (renormalised to a Gaussian).
    """
    if len(mus) != len(logvars) or not mus:
        raise ValueError(f"product_of_experts: need as many means as log-variances (>= 1), got "
                         f"{len(mus)} and {len(logvars)}")
    mus, logvars = list(mus), list(logvars)
    if include_prior:
        mus.append(tf.zeros_like(mus[0]))
        logvars.append(tf.zeros_like(logvars[0]))
    neg_lv = -tf.stack(logvars, axis=0)                      # (K, B, D)
    joint_logvar = -tf.reduce_logsumexp(neg_lv, axis=0)
    weights = tf.nn.softmax(neg_lv, axis=0)
    joint_mu = tf.reduce_sum(weights * tf.stack(mus, axis=0), axis=0)
    return joint_mu, joint_logvar

