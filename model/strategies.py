"""The four training strategies of the paper (SPEC 2): S1 cvae, S2 extended, S3 kl, S4 poe.

`build_model(config)` returns an `AlignedLatentModel` whose `compute_losses(batch, beta,
training)` gives every term of the strategy's equation by name, '<latent>/<term>':

  latent 'rgb' = q(z|R), 'cloud' = q(z|C), 'joint' = q(z|R,C) (S3) or the product of experts (S4);
  terms 'pose', 'heatmap', 'chamfer', 'emd' (Eqs. 7-10, unweighted), 'recon' (Eq. 11),
  'kl_prior' (KL to N(0, I), unweighted); 'align/kl' = KL(q(z|R,C) || q(z|R)) of S3, its
  gradient reaching q(z|R) only;
  'total' = the minimised objective with lambda, beta and beta' applied.

Each strategy's objective is data (OBJECTIVES): the latents it decodes, those with a KL to the
prior, and S3's alignment; one `compute_losses` builds every term and the total from it:

  total = sum of <latent>/recon over the decoded latents
          + beta * sum of <latent>/kl_prior over the prior latents + beta' * align/kl

  cvae, extended (Eq. 1, Alg. 1): decoded rgb; prior rgb
  kl (Eq. 3):   decoded joint, rgb; prior joint, rgb; aligned KL(q(z|R,C) || q(z|R))
  poe (Eq. 4):  decoded rgb, cloud, joint; prior rgb, cloud (none for the product)

A subclass supplies only how it encodes (`encode_posteriors`). Every term is a mean over the
local batch. Latents are sampled with the reparameterisation trick when training (their means
otherwise), and all latents of a step are decoded in one call, concatenated along the batch axis,
since the decoders are shared; a consequence is that the decoders' batch norm sees statistics
pooled over the latents of the step. Inference uses the RGB encoder only: z = mean of q(z|R).
"""
import dataclasses
from typing import Dict, Optional, Tuple

import tensorflow as tf

from model import decoders as decoders_lib
from model import encoders as encoders_lib
from model import latent, losses
from model.config import STRATEGIES, ModelConfig

__all__ = ["STRATEGIES", "OBJECTIVES", "AlignedLatentModel", "batch_modalities", "build_model"]

# Decoder name (ModelConfig) -> key of its output and of its target in a batch.
OUTPUT_KEYS = {"pose": "pose", "heatmap": "heatmaps", "cloud": "cloud"}


@dataclasses.dataclass(frozen=True)
class Objective:
    """One strategy's objective as data (module doc).

    Attributes:
      decoded: latents decoded by every decoder, each with its reconstruction terms.
      prior_kl: latents with a beta-weighted KL to the prior N(0, I).
      aligned: (target, student) of a beta'-weighted KL(q_target || q_student), minimised with
        respect to the student only; None without alignment.
    """

    decoded: Tuple[str, ...]
    prior_kl: Tuple[str, ...]
    aligned: Optional[Tuple[str, str]] = None


OBJECTIVES = {
    "cvae": Objective(decoded=("rgb",), prior_kl=("rgb",)),
    "extended": Objective(decoded=("rgb",), prior_kl=("rgb",)),
    "kl": Objective(decoded=("joint", "rgb"), prior_kl=("joint", "rgb"),
                    aligned=("joint", "rgb")),
    "poe": Objective(decoded=("rgb", "cloud", "joint"), prior_kl=("rgb", "cloud")),
}


class AlignedLatentModel(tf.keras.Model):
    """Encoders, shared decoders and the objective of one strategy.

    Variables are created by the constructor (a dummy inference pass, see `build_from_config`),
    so that a tf.train.Checkpoint can be restored, or an optimizer built, right after
    `build_model`.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(name=kwargs.pop("name", config.strategy), **kwargs)
        self.config = config
        self.rgb_encoder = encoders_lib.RGBEncoder(config.latent_dim, config.resnet_widths,
                                                   name="rgb_encoder")
        self.sampling = latent.Sampling(name="sampling")
        self.pose_decoder = decoders_lib.PoseDecoder(config.num_keypoints, config.pose_hidden,
                                                     name="pose_decoder")
        self.heatmap_decoder = None
        self.cloud_decoder = None
        if "heatmap" in config.decoder_names:
            self.heatmap_decoder = decoders_lib.HeatmapDecoder(
                config.image_size, config.num_keypoints, config.heatmap_channels,
                name="heatmap_decoder")
        if "cloud" in config.decoder_names:
            self.cloud_decoder = decoders_lib.FoldingDecoder(config.num_points,
                                                             config.fold_hidden,
                                                             name="cloud_decoder")

    # Structure.
    @property
    def encoder_names(self) -> Tuple[str, ...]:
        """Posteriors the model has: 'rgb', plus 'cloud' (S4) or 'joint' (S3)."""
        return ("rgb",)

    @property
    def decoder_names(self) -> Tuple[str, ...]:
        """Decoders the model has: 'pose', plus 'heatmap' and/or 'cloud'."""
        return self.config.decoder_names

    @property
    def objective(self) -> Objective:
        """The strategy's objective (OBJECTIVES)."""
        return OBJECTIVES[self.config.strategy]

    @property
    def latent_names(self) -> Tuple[str, ...]:
        """Latents decoded during training, in the order of the loss terms."""
        return self.objective.decoded

    # Inference.
    def encode_rgb(self, image: tf.Tensor, training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
        """q(z|R): image (B, S, S, 3) in [0, 1] -> mu, logvar (B, D)."""
        return self.rgb_encoder(image, training=training)

    def decode(self, z: tf.Tensor, training: bool = False) -> Dict[str, tf.Tensor]:
        """Every decoder on z (B, D): 'pose' (B, K, 3), and where present 'heatmaps'
        (B, S/4, S/4, K) and 'cloud' (B, N, 3)."""
        out = {OUTPUT_KEYS["pose"]: self.pose_decoder(z)}
        if self.heatmap_decoder is not None:
            out[OUTPUT_KEYS["heatmap"]] = self.heatmap_decoder(z, training=training)
        if self.cloud_decoder is not None:
            out[OUTPUT_KEYS["cloud"]] = self.cloud_decoder(z)
        return out

    def predict_pose(self, image: tf.Tensor, training: bool = False) -> tf.Tensor:
        """The paper's inference: pose decoder on the mean of q(z|R). -> (B, K, 3) normalised."""
        mu, _ = self.encode_rgb(image, training=training)
        return self.pose_decoder(mu)

    def call(self, image, training=None):
        """Same as `predict_pose`."""
        return self.predict_pose(image, training=training)

    def build_from_config(self, batch_size: int = 1) -> "AlignedLatentModel":
        """Creates every variable with a dummy inference pass (zeros); returns self.

        Idempotent. Needed only if variables must exist before any call (the constructor via
        `build_model` already does it); it does not touch batch-norm statistics.
        """
        cfg = self.config
        image = tf.zeros([batch_size, cfg.image_size, cfg.image_size, 3])
        cloud = tf.zeros([batch_size, cfg.num_points, 3])
        self.encode_posteriors(image, cloud, training=False)
        self.decode(tf.zeros([batch_size, cfg.latent_dim]), training=False)
        self.built = True
        return self

    # Training.
    def encode_posteriors(self, image: tf.Tensor, cloud: tf.Tensor, training: bool = False
                          ) -> Dict[str, Tuple[tf.Tensor, tf.Tensor]]:
        """Posteriors of the strategy, name -> (mu, logvar) each (B, D): every latent of its
        objective.

        Args:
          image: (B, S, S, 3) in [0, 1].
          cloud: (B, N, 3), or None for the strategies without a cloud encoder (S1, S2).
          training: batch norm in training mode.
        """
        return {"rgb": self.encode_rgb(image, training=training)}

    def _decode_latents(self, posteriors, batch, training, seed) -> Dict[str, tf.Tensor]:
        """Samples each decoded posterior, decodes all in one call and returns '<latent>/<term>'
        terms."""
        names = list(self.objective.decoded)
        z = tf.concat([self.sampling(posteriors[n], training=training,
                                     seed=None if seed is None else
                                     tf.random.experimental.stateless_fold_in(seed, i))
                       for i, n in enumerate(names)], axis=0)
        predictions = self.decode(z, training=training)
        targets = {k: tf.concat([batch[k]] * len(names), axis=0) for k in predictions}
        errors = losses.per_sample_errors(predictions, targets)
        split = {k: tf.split(v, len(names), axis=0) for k, v in errors.items()}
        labelled = batch.get("labelled")
        terms = {}
        for i, name in enumerate(names):
            recon = losses.reconstruction_terms({k: v[i] for k, v in split.items()},
                                                self.config.lambda_heat,
                                                self.config.lambda_cloud, labelled)
            terms.update({f"{name}/{k}": v for k, v in recon.items()})
        return terms

    def compute_losses(self, batch: Dict[str, tf.Tensor], beta, training: bool,
                       seed: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
        """The strategy's terms and 'total' for one (local) batch.

        Args:
          batch: dict with 'image' (B, S, S, 3), 'pose' (B, K, 3), and as the strategy needs
            'cloud' (B, N, 3), 'heatmaps' (B, S/4, S/4, K); optional 'labelled' (B,) 0/1.
          beta: weight of the KL terms to the prior (scalar, annealed by the caller).
          training: sample latents and update batch norm.
          seed: optional (2,) int tensor that fixes the latents' sampling noise (stateless);
            None draws it from TensorFlow's global random state.

        Returns:
          dict of scalar tensors (see the module docstring).
        """
        missing = [m for m in batch_modalities(self.config) if m not in batch]
        if missing:
            raise ValueError(f"compute_losses: strategy {self.config.strategy!r} reads "
                             f"{missing}, which the batch lacks (build the dataset with "
                             "modalities=batch_modalities(config))")
        objective = self.objective
        posteriors = self.encode_posteriors(batch["image"], batch.get("cloud"), training)
        terms = self._decode_latents(posteriors, batch, training, seed)
        for name in objective.prior_kl:
            terms[f"{name}/kl_prior"] = tf.reduce_mean(latent.kl_to_prior(*posteriors[name]))
        total = terms[f"{objective.decoded[0]}/recon"]
        for name in objective.decoded[1:]:
            total += terms[f"{name}/recon"]
        prior_kl = terms[f"{objective.prior_kl[0]}/kl_prior"]
        for name in objective.prior_kl[1:]:
            prior_kl += terms[f"{name}/kl_prior"]
        total += beta * prior_kl
        if objective.aligned is not None:
            target, student = objective.aligned
            fixed = [tf.stop_gradient(t) for t in posteriors[target]]
            terms["align/kl"] = tf.reduce_mean(
                latent.kl_divergence(*fixed, *posteriors[student]))
            total += self.config.beta_prime * terms["align/kl"]
        terms["total"] = total
        return terms


class ConditionalVAE(AlignedLatentModel):
    """S1 (Eq. 1, pose decoder only) and S2 (Alg. 1, extra heatmap / cloud decoders): the RGB
    encoder alone."""


class KLAlignedModel(AlignedLatentModel):
    """S3 (Eq. 3, Alg. 2): ELBO of q(z|R,C) + ELBO of q(z|R) + beta' KL(q(z|R,C) || q(z|R)).

    The joint encoder has its own ResNet-18 (Alg. 2 initialises the two encoders separately), so
    the joint ELBO trains it alone. The KL aligns the RGB posterior with the joint one: it is
    minimised with respect to q(z|R) only, the joint posterior held fixed in it. The paper does
    not say; minimised with respect to both, the pair collapsed onto one uninformative posterior
    in our experiment regime (both pose losses flat at the mean pose's after 3,000 steps), since
    matching each other is cheaper for the two encoders than encoding the hand.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.joint_encoder = encoders_lib.JointEncoder(config.latent_dim, config.resnet_widths,
                                                       config.cloud_widths, name="joint_encoder")

    @property
    def encoder_names(self):
        return ("rgb", "joint")

    def encode_posteriors(self, image, cloud, training=False):
        return {"joint": self.joint_encoder(image, cloud, training=training),
                "rgb": self.encode_rgb(image, training=training)}


class ProductOfExpertsModel(AlignedLatentModel):
    """S4 (Eq. 4, Alg. 3): reconstructions from z_R, z_C and z_joint ~ PoE(p(z), q(z|R), q(z|C)),
    plus beta times the KL to the prior of q(z|R) and q(z|C) (none for the product)."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.cloud_encoder = encoders_lib.PointCloudEncoder(config.latent_dim,
                                                            config.cloud_widths,
                                                            name="cloud_encoder")

    @property
    def encoder_names(self):
        return ("rgb", "cloud")

    def encode_posteriors(self, image, cloud, training=False):
        rgb = self.encode_rgb(image, training=training)
        cloud = self.cloud_encoder(cloud, training=training)
        joint = latent.product_of_experts([rgb[0], cloud[0]], [rgb[1], cloud[1]],
                                          include_prior=True)
        return {"rgb": rgb, "cloud": cloud, "joint": joint}


def batch_modalities(config: ModelConfig) -> Tuple[str, ...]:
    """The optional batch entries (data_pipeline.dataset.MODALITIES) that training this strategy
    reads: 'cloud' for a cloud encoder (S3's joint one, S4's) or decoder, 'heatmaps' for a
    heatmap decoder. S1 reads neither, so its pipeline need not compute them."""
    reads_cloud = config.strategy in ("kl", "poe") or "cloud" in config.decoder_names
    return ((("cloud",) if reads_cloud else ())
            + (("heatmaps",) if "heatmap" in config.decoder_names else ()))


_MODELS = {"cvae": ConditionalVAE, "extended": ConditionalVAE, "kl": KLAlignedModel,
           "poe": ProductOfExpertsModel}


def build_model(config: ModelConfig) -> AlignedLatentModel:
    """The model of `config.strategy`, with all variables created."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_model expects a ModelConfig, got {type(config).__name__}")
    return _MODELS[config.strategy](config).build_from_config()
