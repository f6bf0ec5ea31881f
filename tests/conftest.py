"""Shared pytest set-up: quiet TensorFlow logs, make the repository importable, and the data
sets that several test modules read."""
import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def small_rhd(tmp_path_factory):
    """A synthetic RHD-format set of 8 training and 4 test samples, read (never written) by the
    end-to-end tests of train.py/evaluate.py and of experiments.run."""
    from data_pipeline import synthetic  # pylint: disable=import-outside-toplevel

    data_dir = str(tmp_path_factory.mktemp("small_rhd") / "data")
    synthetic.generate("rhd", data_dir, num_train=8, num_test=4, seed=3, workers=1)
    return data_dir
