"""ModelConfig: everything that defines the networks and the objective of one strategy (SPEC 2-4).

The defaults are the paper's values (SPEC 3 and 4). `ModelConfig.at_width` scales every network
width by one multiplier (the CPU-scale experiments use a quarter); tests set single widths to build
tiny networks quickly.
"""
import dataclasses
import math
from typing import Tuple

from common.config import JsonConfig

from data_pipeline.config import HEATMAP_STRIDE
from data_pipeline.sample import NUM_KEYPOINTS

STRATEGIES = ("cvae", "extended", "kl", "poe")
# Decoders besides pose that 'extended' may add (pose is always decoded).
OPTIONAL_DECODERS = ("heatmap", "cloud")
# The heatmap decoder starts from an (S/32) x (S/32) map and upsamples x8 to S/4 (SPEC 4).
HEATMAP_INPUT_STRIDE = 32
# The input shapes of the networks, which a run's data section owns (model/run_config.RunConfig).
DATA_FIELDS = ("image_size", "num_points")
# How training is spread over devices and hosts (train.py --distribution,
# model/distribute.make_distribution).
DISTRIBUTIONS = ("auto", "mirrored", "multi_worker")
# The attributes that ModelConfig.at_width scales.
WIDTH_FIELDS = ("resnet_widths", "cloud_widths", "pose_hidden", "heatmap_channels", "fold_hidden")


def _as_int_tuple(name, value) -> Tuple[int, ...]:
    try:
        values = tuple(int(v) for v in value)
    except TypeError:
        raise ValueError(f"ModelConfig.{name} must be a sequence of positive ints, got {value!r}")
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"ModelConfig.{name} must be a non-empty sequence of positive ints, "
                         f"got {value!r}")
    return values


@dataclasses.dataclass(frozen=True)
class ModelConfig(JsonConfig):
    """Networks and loss weights of one strategy.

    Attributes:
      strategy: 'cvae' (S1, Eq. 1), 'extended' (S2, Alg. 1), 'kl' (S3, Eq. 3) or 'poe' (S4, Eq. 4).
      decoders: for 'extended', the decoders besides pose: any of 'heatmap', 'cloud' ('pose' may be
        listed and is dropped, since pose is always decoded). Must be empty for the other
        strategies, whose decoders are fixed (pose for 'cvae'; pose, heatmap, cloud for 'kl' and
        'poe'). Stored in the canonical order ('heatmap', 'cloud').
      image_size: RGB crop size S in pixels; a multiple of 32 when the heatmap decoder is used.
      latent_dim: size of z (64).
      num_points: points per cloud N (256); a perfect square when the FoldingNet decoder is used.
      num_keypoints: 21.
      lambda_heat, lambda_cloud: Eq. 11 weights (0.01, 1).
      beta_prime: weight of the alignment KL of S3 (1).
      resnet_widths: channels of the four ResNet-18 stages (64, 128, 256, 512).
      cloud_widths: channels of the ResPEL residual blocks, the paper's halved widths.
      pose_hidden: hidden units of the pose decoder (128).
      heatmap_channels: channels of the DC-GAN generator's first map (256); each transposed
        convolution halves them.
      fold_hidden: hidden units of both FoldingNet MLPs (512).
    """

    strategy: str = "poe"
    decoders: Tuple[str, ...] = ()
    image_size: int = 256
    latent_dim: int = 64
    num_points: int = 256
    num_keypoints: int = NUM_KEYPOINTS
    lambda_heat: float = 0.01
    lambda_cloud: float = 1.0
    beta_prime: float = 1.0
    resnet_widths: Tuple[int, ...] = (64, 128, 256, 512)
    cloud_widths: Tuple[int, ...] = (64, 128, 256, 512)
    pose_hidden: int = 128
    heatmap_channels: int = 256
    fold_hidden: int = 512

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"ModelConfig.strategy must be one of {STRATEGIES}, "
                             f"got {self.strategy!r}")
        if isinstance(self.decoders, str):
            raise ValueError("ModelConfig.decoders must be a sequence of names, got the string "
                             f"{self.decoders!r}")
        names = [d for d in self.decoders if d != "pose"]
        unknown = [d for d in names if d not in OPTIONAL_DECODERS]
        if unknown:
            raise ValueError(f"ModelConfig.decoders: unknown decoder(s) {unknown}; choose from "
                             f"{OPTIONAL_DECODERS} (pose is always decoded)")
        if names and self.strategy != "extended":
            raise ValueError(f"ModelConfig.decoders={tuple(self.decoders)} is only for strategy "
                             f"'extended'; '{self.strategy}' has fixed decoders")
        object.__setattr__(self, "decoders", tuple(d for d in OPTIONAL_DECODERS if d in names))
        for name in ("resnet_widths", "cloud_widths"):
            object.__setattr__(self, name, _as_int_tuple(name, getattr(self, name)))
        if len(self.resnet_widths) != 4:
            raise ValueError("ModelConfig.resnet_widths must give the 4 stages of ResNet-18, got "
                             f"{self.resnet_widths}")
        for name in ("image_size", "latent_dim", "num_points", "num_keypoints", "pose_hidden",
                     "heatmap_channels", "fold_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        for name in ("lambda_heat", "lambda_cloud", "beta_prime"):
            if not float(getattr(self, name)) >= 0.0:
                raise ValueError(f"ModelConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if "heatmap" in self.decoder_names:
            if self.image_size % HEATMAP_INPUT_STRIDE:
                raise ValueError(
                    f"ModelConfig.image_size={self.image_size} must be a multiple of "
                    f"{HEATMAP_INPUT_STRIDE} for the heatmap decoder (an S/32 map upsampled x8 "
                    "to S/4)")
            if self.heatmap_channels % 4:
                raise ValueError("ModelConfig.heatmap_channels must be a multiple of 4 (halved "
                                 f"twice), got {self.heatmap_channels}")
        if "cloud" in self.decoder_names and math.isqrt(self.num_points) ** 2 != self.num_points:
            raise ValueError(f"ModelConfig.num_points={self.num_points} must be a perfect square "
                             "for the FoldingNet decoder's square grid")

    @classmethod
    def at_width(cls, width: float, **fields) -> "ModelConfig":
        """The paper's networks (SPEC 4) with every encoder and decoder width times `width`.

        width=1 is the paper; 0.25 gives ResNet-18 stages 16/32/64/128, ResPEL alike, a 32-unit
        pose decoder, a 64-channel DC-GAN generator and 128-unit FoldingNet MLPs. Widths round to
        the nearest integer (the generator's to a multiple of 4, since it halves twice), at least
        4. `fields` set the other attributes; the widths themselves come from `width` alone.
        """
        if not width > 0:
            raise ValueError(f"ModelConfig.at_width: width must be positive, got {width!r}")
        clash = sorted(set(fields) & set(WIDTH_FIELDS))
        if clash:
            raise ValueError(f"ModelConfig.at_width: {clash} follow from width; do not pass them")

        def scale(n, multiple=1):
            return max(4, multiple * round(n * width / multiple))

        paper = cls()
        return cls(resnet_widths=tuple(scale(w) for w in paper.resnet_widths),
                   cloud_widths=tuple(scale(w) for w in paper.cloud_widths),
                   pose_hidden=scale(paper.pose_hidden),
                   heatmap_channels=scale(paper.heatmap_channels, 4),
                   fold_hidden=scale(paper.fold_hidden), **fields)

    @property
    def decoder_names(self) -> Tuple[str, ...]:
        """Every decoder of the strategy: 'pose' first, then 'heatmap' and/or 'cloud'."""
        if self.strategy == "cvae":
            return ("pose",)
        if self.strategy == "extended":
            return ("pose",) + self.decoders
        return ("pose",) + OPTIONAL_DECODERS

    @property
    def heatmap_size(self) -> int:
        """Side of the heatmaps (S/4)."""
        return self.image_size // HEATMAP_STRIDE
