"""DataConfig: which data set, pre-processed how (docs/data.md); the data sets' and splits' names.

No TensorFlow here, so that every command line can take its choices from this module before
TensorFlow starts.
"""
import dataclasses
import os
from typing import Optional

from common.config import JsonConfig

DATASETS = ("synthetic", "rhd", "stb")
SPLITS = ("train", "val", "test")
# The data sets' own splits, which the readers open; 'val' is carved out of 'train'.
READER_SPLITS = ("train", "test")
# The splits that may steer training (train.py --validate_on); 'val' is carved out of 'train'.
VALIDATION_SPLITS = ("val", "test")
# Heatmaps are (S / HEATMAP_STRIDE) x (S / HEATMAP_STRIDE) for an S x S crop (SPEC 4).
HEATMAP_STRIDE = 4
# Smallest crop side: two heatmap cells.
MIN_IMAGE_SIZE = 8

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEFAULT_DIRS = {"synthetic": "synthetic_rhd", "rhd": "RHD_published_v2", "stb": "STB"}


def default_data_dir(data: str) -> str:
    """Where a data set is expected by default: <repo>/data/{synthetic_rhd,RHD_published_v2,STB}."""
    if data not in DATASETS:
        raise ValueError(f"default_data_dir: data must be one of {DATASETS}, got {data!r}")
    return os.path.join(REPO_ROOT, "data", _DEFAULT_DIRS[data])


def default_cache_dir() -> str:
    """Root of the pre-processed data cache by default: <repo>/data/cache."""
    return os.path.join(REPO_ROOT, "data", "cache")


@dataclasses.dataclass(frozen=True)
class DataConfig(JsonConfig):
    """The data a run trains or is evaluated on, and its pre-processing.

    Attributes:
      data: 'synthetic', 'rhd' or 'stb'.
      data_dir: the data set's directory; None means `default_data_dir(data)`.
      image_size: crop side S in pixels; a multiple of HEATMAP_STRIDE, at least MIN_IMAGE_SIZE.
      view_correction: the paper's viewpoint correction (Fig. 5), else a plain crop.
      num_points: cloud points N drawn per sample and step.
      labelled_fraction: weak supervision (paper Fig. 8): the first round(fraction * n) of the n
        training samples keep their 3D pose; the rest are pre-processed without it.
      labelled_only: yield only the labelled training samples (Fig. 8's fully supervised
        baseline).
      unlabelled_batch_size: 0, or U > 0 for weak supervision in paired batches: each training
        batch is a batch of the labelled samples plus U unlabelled ones
        (dataset.paired_dataset_from_cache); needs labelled_fraction < 1 and not labelled_only.
      cache_dir: root of the pre-processed cache; None means `default_cache_dir()`. Where the
        cache lives does not change the data (`same_data`).
      validation_fraction: share of RHD's or the synthetic set's training samples held out as the
        'val' split (STB holds out a sequence instead; data_pipeline/splits.py).
    """

    data: str = "synthetic"
    data_dir: Optional[str] = None
    image_size: int = 256
    view_correction: bool = True
    num_points: int = 256
    labelled_fraction: float = 1.0
    labelled_only: bool = False
    unlabelled_batch_size: int = 0
    cache_dir: Optional[str] = None
    validation_fraction: float = 0.05

    def __post_init__(self):
        if self.data not in DATASETS:
            raise ValueError(f"DataConfig.data must be one of {DATASETS}, got {self.data!r}")
        for name in ("image_size", "num_points"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"DataConfig.{name} must be a positive int, got {value!r}")
        if self.image_size < MIN_IMAGE_SIZE or self.image_size % HEATMAP_STRIDE:
            raise ValueError(f"DataConfig.image_size must be a multiple of {HEATMAP_STRIDE} and "
                             f"at least {MIN_IMAGE_SIZE}, got {self.image_size}")
        if not 0.0 <= self.labelled_fraction <= 1.0:
            raise ValueError("DataConfig.labelled_fraction must be in [0, 1], got "
                             f"{self.labelled_fraction!r}")
        value = self.unlabelled_batch_size
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"DataConfig.unlabelled_batch_size must be an int >= 0, got "
                             f"{value!r}")
        if value and (self.labelled_fraction >= 1.0 or self.labelled_only):
            raise ValueError("DataConfig.unlabelled_batch_size > 0 needs unlabelled training "
                             "samples: labelled_fraction < 1 and labelled_only false, got "
                             f"labelled_fraction={self.labelled_fraction}, "
                             f"labelled_only={self.labelled_only}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError("DataConfig.validation_fraction must be in (0, 1), got "
                             f"{self.validation_fraction!r}")

    @property
    def resolved_data_dir(self) -> str:
        """The data set's directory, absolute."""
        return os.path.abspath(self.data_dir or default_data_dir(self.data))

    @property
    def resolved_cache_dir(self) -> str:
        """The cache root, absolute."""
        return os.path.abspath(self.cache_dir or default_cache_dir())

    def same_data(self, other: "DataConfig") -> bool:
        """Whether `other` gives the same examples (everything but the cache's place)."""
        return dataclasses.replace(self, cache_dir=None) == dataclasses.replace(other,
                                                                                 cache_dir=None)
