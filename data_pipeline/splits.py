"""The splits of a data set: its readers and the validation carve-out of the training split.

Splits (docs/data.md, "Splits"): 'test' is the data set's test split, read only for evaluation.
'train' and 'val' share the data set's training split, carved by `validation_indices`: RHD and
synthetic hold out a seeded share of the training indices (DataConfig.validation_fraction),
STB the training sequence STB_VALIDATION_SEQUENCE. Validation steers training (plateaus,
convergence, the TensorBoard curve), so the test split never does.
"""
import os
from typing import Optional

import numpy as np

from data_pipeline.config import DATASETS, READER_SPLITS, SPLITS, DataConfig, default_data_dir
from data_pipeline.sample import DataError

# The validation carve-out of the training split (module doc); part of the cache key.
VALIDATION_SEED = 2019
STB_VALIDATION_SEQUENCE = "B6Random"
SYNTHETIC_SIZE = {"num_train": 2000, "num_test": 200, "seed": 0}
# What a missing data set directory should hold (docs/data.md, "Real data").
_WHERE_TO_GET = {
    "rhd": "the Rendered Hand Pose data set (Zimmermann & Brox 2017; the RHD_published_v2 "
           "directory with training/ and evaluation/)",
    "stb": "the Stereo Hand Pose Tracking Benchmark (Zhang et al. 2016; images/<sequence>/SK_*.png "
           "and labels/<sequence>_SK.mat)",
}


def check_choice(function, name, value, choices):
    if value not in choices:
        raise ValueError(f"{function}: {name} must be one of {choices}, got {value!r}")


def _generate_synthetic(data_dir):
    """Writes the default synthetic RHD-format set into data_dir (the generator is atomic)."""
    from data_pipeline import synthetic  # pylint: disable=import-outside-toplevel
    print(f"generating the synthetic RHD-format data set in {data_dir} "
          f"({SYNTHETIC_SIZE['num_train']} train, {SYNTHETIC_SIZE['num_test']} test)", flush=True)
    synthetic.generate("rhd", data_dir, SYNTHETIC_SIZE["num_train"], SYNTHETIC_SIZE["num_test"],
                       SYNTHETIC_SIZE["seed"], workers=min(2, os.cpu_count() or 1))


def open_reader(data: str, split: str, data_dir: Optional[str] = None):
    """The raw-sample reader of a data set's own split, 'train' or 'test' (a sequence of
    RawSample); 'val' is carved out of 'train' (`split_indices`).

    data='synthetic' reads the generated RHD-format set with the RHD reader, generating it first
    when data_dir does not exist.

    Raises:
      DataError: the data directory is missing or malformed (the message names the path).
    """
    check_choice("open_reader", "data", data, DATASETS)
    check_choice("open_reader", "split", split, READER_SPLITS)
    data_dir = data_dir or default_data_dir(data)
    if not os.path.isdir(data_dir) or not os.listdir(data_dir):
        if data == "synthetic":
            _generate_synthetic(data_dir)
        else:
            raise DataError(f"no {data.upper()} data at {os.path.abspath(data_dir)}: put "
                            f"{_WHERE_TO_GET[data]} there, or point DataConfig.data_dir at it")
    if data == "stb":
        from data_pipeline.stb import STBReader  # pylint: disable=import-outside-toplevel
        return STBReader(data_dir, split)
    from data_pipeline.rhd import RHDReader  # pylint: disable=import-outside-toplevel
    return RHDReader(data_dir, split)


def validation_indices(config: DataConfig, reader) -> np.ndarray:
    """The sorted positions in a training-split reader that form the validation split.

    RHD and synthetic: a seeded config.validation_fraction of the positions (at least one), drawn
    with VALIDATION_SEED, so the same data set always gives the same split. STB: every frame of
    STB_VALIDATION_SEQUENCE (1,500 of the 15,000 training frames): consecutive frames are near
    duplicates, so a whole sequence keeps validation frames from neighbouring training frames.

    Raises:
      DataError: the split would leave no training or no validation sample.
    """
    count, data = len(reader), config.data
    if data == "stb":
        val = [i for i, (sequence, _) in enumerate(reader.sample_ids)
               if sequence == STB_VALIDATION_SEQUENCE]
        rule = f"the {STB_VALIDATION_SEQUENCE} sequence"
    else:
        size = max(1, int(round(config.validation_fraction * count)))
        val = np.random.default_rng(VALIDATION_SEED).permutation(count)[:size]
        rule = f"{config.validation_fraction:.0%} of the samples"
    if not 0 < len(val) < count:
        raise DataError(f"{data} training split ({count} samples): the validation split "
                        f"({rule}) would leave {len(val)} validation and {count - len(val)} "
                        f"training samples; both need at least one")
    return np.sort(np.asarray(val, np.int64))


def split_indices(config: DataConfig, split: str, reader) -> np.ndarray:
    """The sorted reader positions of a split: 'train' and 'val' partition the training reader's
    positions (`validation_indices`); 'test' is every position of the test reader."""
    check_choice("split_indices", "split", split, SPLITS)
    everything = np.arange(len(reader), dtype=np.int64)
    if split == "test":
        return everything
    val = validation_indices(config, reader)
    return val if split == "val" else np.setdiff1d(everything, val)
