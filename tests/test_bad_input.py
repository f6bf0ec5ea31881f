"""Bad input as a user meets it: the message names the file or flag, and nothing already written
is lost or overwritten. Cases already covered elsewhere (readers, EMD shapes, another run's
config.json) are listed with their tests in the table of docs/bad-input.md; these are the rest.

Command lines run as subprocesses without TF_CPP_MIN_LOG_LEVEL, so the only thing on stderr must
be the error that common/cli.py (or absl, for flag values) prints.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from data_pipeline import cache as cache_lib
from data_pipeline import dataset, splits
from data_pipeline.config import DATASETS, SPLITS, DataConfig
from data_pipeline.sample import DataError
from model.config import STRATEGIES
from tests.test_preprocess import make_sample

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A model small enough to build in a second (the crop size is set per test).
TINY = dict(latent_dim=8, num_points=16, resnet_widths=(4, 4, 4, 4), cloud_widths=(4, 4),
            pose_hidden=8, heatmap_channels=8, fold_hidden=8)


def _run(script, *args):
    """Runs a command line of the repository as a user does (TensorFlow's noise not pre-hidden)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, script, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _only_line(result):
    """The single line a failed command printed on stderr (nothing else may be there)."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _truncate(path, keep=0.5):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:int(len(data) * keep)])


def _contents(directory):
    """{relative path: bytes} of every file under directory."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files


# ---------------------------------------------------------------------------------------------
# The pre-processed cache: refused at open when damaged, never used in part nor written over.

@pytest.fixture
def cache(monkeypatch, tmp_path):
    """A test-split cache of three hand-made samples, read through a patched open_reader.

    Returns (DataConfig, cache directory, list of the splits read so far).
    """
    reads = []

    def open_reader(data, split, data_dir=None):
        reads.append(split)
        return [make_sample(seed=i, source=f"color/{i:05d}.png",
                            root=(0.02 * i - 0.05, 0.01 * i - 0.03, 0.4 + 0.03 * i))
                for i in range(3)]

    monkeypatch.setattr(splits, "open_reader", open_reader)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "README.txt").write_text("a non-empty data directory")
    config = DataConfig(data_dir=str(data_dir), image_size=32, cache_dir=str(tmp_path / "cache"))
    path, _ = cache_lib.prepare_cache(config, "test")
    return config, path, reads


def test_a_truncated_cache_shard_is_refused_when_the_cache_is_opened(cache):
    config, path, reads = cache
    meta = cache_lib.read_meta(path)
    shard = os.path.join(path, meta["shards"][0])
    size = os.path.getsize(shard)
    assert meta["shard_bytes"] == [size]  # recorded at write time
    _truncate(shard)
    before = _contents(path)
    with pytest.raises(DataError) as raised:
        cache_lib.prepare_cache(config, "test")
    # Refused before any record is read (TFRecordDataset would raise DataLossError mid-epoch).
    assert (f"{shard}: {size // 2} bytes, but {size} were written (truncated or changed since "
            f"the cache was written); delete {path} to pre-process the split again"
            == str(raised.value))
    assert reads == ["test"] and _contents(path) == before  # not re-read, nothing written over
    # Deleting the directory, as the message says, pre-processes the split again.
    shutil.rmtree(path)
    assert cache_lib.prepare_cache(config, "test")[1] == meta and reads == ["test", "test"]


def _edit_meta(edit):
    def damage(path):
        meta_path = os.path.join(path, "meta.json")
        with open(meta_path) as f:
            meta = json.load(f)
        with open(meta_path, "w") as f:
            json.dump(edit(meta), f)
    return damage


def _older_meta_and_empty_shard(path):
    """A cache written before shard sizes were recorded, whose shard was emptied since."""
    _edit_meta(lambda meta: {k: v for k, v in meta.items() if k != "shard_bytes"})(path)
    _truncate(os.path.join(path, "shard-00000.tfrecord"), keep=0)


# (how to damage the cache directory, the file the message names, what it says of it)
DAMAGED_CACHES = {
    "truncated meta.json": (lambda path: _truncate(os.path.join(path, "meta.json")),
                            "meta.json", "not readable ("),
    "meta.json without counts": (_edit_meta(lambda meta: {"shards": meta["shards"]}),
                                 "meta.json", "not a cache description (no num_examples, "),
    "meta.json of another length": (_edit_meta(lambda meta: {**meta, "shard_bytes": []}),
                                    "meta.json", "lists 1 shards and 0 shard sizes"),
    "no meta.json": (lambda path: os.remove(os.path.join(path, "meta.json")),
                     "meta.json", "missing, so the cache is incomplete"),
    "no shard": (lambda path: os.remove(os.path.join(path, "shard-00000.tfrecord")),
                 "shard-00000.tfrecord", "missing"),
    "empty shard, sizes not recorded": (_older_meta_and_empty_shard, "shard-00000.tfrecord",
                                        "0 bytes (truncated"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_CACHES))
def test_a_damaged_cache_is_refused_naming_the_file(cache, case):
    config, path, reads = cache
    damage, name, says = DAMAGED_CACHES[case]
    damage(path)
    before = _contents(path)
    with pytest.raises(DataError) as raised:
        cache_lib.prepare_cache(config, "test")
    message = str(raised.value)
    assert message.startswith(f"{os.path.join(path, name)}: {says}"), message
    assert message.endswith(f"delete {path} to pre-process the split again")
    assert reads == ["test"] and _contents(path) == before


def test_a_cache_written_before_shard_sizes_were_recorded_is_still_used(cache):
    config, path, reads = cache
    _edit_meta(lambda meta: {k: v for k, v in meta.items() if k != "shard_bytes"})(path)
    _, meta = cache_lib.prepare_cache(config, "test")
    assert "shard_bytes" not in meta and reads == ["test"]
    batch = next(iter(dataset.dataset_from_cache(path, meta, config, batch_size=8)))
    assert batch["index"].numpy().tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# Command lines: unknown flag values, missing or misplaced data.

@pytest.mark.parametrize("script, flag, value, choices", [
    ("train.py", "strategy", "S5", STRATEGIES),
    ("train.py", "data", "nyu", DATASETS),
    ("evaluate.py", "data", "nyu", DATASETS),
    ("evaluate.py", "split", "validation", SPLITS),
])
def test_an_unknown_flag_value_exits_naming_the_flag_and_its_choices(tmp_path, script, flag,
                                                                    value, choices):
    out = tmp_path / "out"
    written = "--model_dir" if script == "train.py" else "--out"
    result = _run(script, f"--{flag}={value}", f"{written}={out}")
    assert result.returncode != 0
    assert result.stderr.startswith(f"FATAL Flags parsing error: flag --{flag}={value}: value "
                                    f"should be one of <{'|'.join(choices)}>\n"), result.stderr
    assert not out.exists()


@pytest.mark.parametrize("value, says", [
    ("s1,s9", "unknown ['s9']; choose from ['s1', 's4']"),
    ("", "choose at least one of ['s1', 's4']"),
])
def test_a_choice_list_flag_refuses_unknown_items_and_an_empty_list(value, says):
    from absl import flags

    from common import cli
    flag_values = flags.FlagValues()
    cli.define_choice_list("rows", ["s1"], ["s1", "s4"], "Rows", flag_values=flag_values)
    flag_values(["prog", "--rows=s4,s1"])
    assert flag_values.rows == ["s4", "s1"]
    with pytest.raises(flags.IllegalFlagValueError, match=re.escape(says)):
        flag_values(["prog", f"--rows={value}"])


def _rhd_without_training(root):
    os.makedirs(os.path.join(root, "evaluation", "color"))
    return os.path.join(root, "training", "anno_training.pickle")


def _stb_without_labels(root):
    os.makedirs(os.path.join(root, "images", "B2Counting"))
    return os.path.join(root, "labels", "B2Counting_SK.mat")


@pytest.mark.parametrize("data, make, says", [
    ("rhd", lambda root: root, "no RHD data at {}: put the Rendered Hand Pose data set"),
    ("rhd", _rhd_without_training, "RHD: expected {}; download RHD_published_v2 and point "
                                   "DataConfig.data_dir at its directory"),
    ("stb", _stb_without_labels, "STB: expected {}; download the STB data set and point "
                                 "DataConfig.data_dir at its directory"),
], ids=["missing directory", "RHD without training/", "STB without labels/"])
def test_missing_or_misplaced_data_exits_naming_the_path_and_flag(tmp_path, data, make, says):
    root = str(tmp_path / "data")
    expected = make(root)  # the path the message must name
    before = _contents(root) if os.path.isdir(root) else None
    model_dir, cache_dir = tmp_path / "run", tmp_path / "cache"
    result = _run("train.py", f"--data={data}", f"--data_dir={root}", f"--model_dir={model_dir}",
                  f"--cache_dir={cache_dir}")
    assert _only_line(result).startswith(f"error: --data_dir: {says.format(expected)}")
    assert not model_dir.exists() and not cache_dir.exists()
    assert (_contents(root) if os.path.isdir(root) else None) == before


# ---------------------------------------------------------------------------------------------
# evaluate.py --ckpt: nothing there, a corrupt config.json, a checkpoint of another model.

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{(strategy, crop size): directory holding that tiny model's ckpt-1, no config.json}."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from model import config as model_config  # pylint: disable=import-outside-toplevel
    from model import strategies  # pylint: disable=import-outside-toplevel

    made = {}
    for strategy in ("cvae", "poe"):
        model = strategies.build_model(model_config.ModelConfig(strategy=strategy, image_size=32,
                                                                **TINY))
        directory = tmp_path_factory.mktemp(strategy)
        tf.train.Checkpoint(model=model).save(str(directory / "ckpt"))
        made[strategy, 32] = directory
    return made


def _model_dir(checkpoints, tmp_path, trained, described):
    """A copy of the checkpoint of `trained` (strategy, size) with a config.json describing
    `described` (strategy, size); returns its path."""
    from model import config as model_config  # pylint: disable=import-outside-toplevel
    from model import run_config  # pylint: disable=import-outside-toplevel

    model_dir = tmp_path / "run"
    shutil.copytree(checkpoints[trained], model_dir)
    strategy, size = described
    run = run_config.RunConfig(model_config.ModelConfig(strategy=strategy, image_size=size, **TINY),
                               DataConfig(image_size=size, num_points=TINY["num_points"]),
                               run_config.TrainConfig())
    run_config.save_run_config(str(model_dir), run)
    return model_dir


def test_ckpt_pointing_at_nothing_exits_naming_the_flag(tmp_path):
    missing = tmp_path / "nowhere" / "ckpt-5"
    assert _only_line(_run("evaluate.py", f"--ckpt={missing}")) == (
        f"error: --ckpt: load_run_config: {missing}.index does not exist; pass a model_dir or a "
        f"checkpoint prefix such as model_dir/ckpt-300")
    assert not (tmp_path / "nowhere").exists()


def test_ckpt_with_a_corrupt_config_json_exits_naming_the_file(checkpoints, tmp_path):
    model_dir = _model_dir(checkpoints, tmp_path, ("poe", 32), ("poe", 32))
    _truncate(model_dir / "config.json")
    before = _contents(model_dir)
    line = _only_line(_run("evaluate.py", f"--ckpt={model_dir}"))
    assert line.startswith(f"error: --ckpt: {model_dir / 'config.json'}: not a readable run "
                           f"configuration ("), line
    assert _contents(model_dir) == before  # no eval_test/, the files as they were


@pytest.mark.parametrize("trained, described", [
    (("cvae", 32), ("poe", 32)),
    (("poe", 32), ("poe", 64)),
    # The cvae model's variables are a subset of the poe checkpoint's: every saved one must be
    # used too.
    (("poe", 32), ("cvae", 32)),
], ids=["another strategy", "another crop size", "a larger strategy's checkpoint"])
def test_a_checkpoint_of_another_model_is_refused(checkpoints, tmp_path, trained, described):
    from model import run_config  # pylint: disable=import-outside-toplevel

    model_dir = _model_dir(checkpoints, tmp_path, trained, described)
    with pytest.raises(ValueError) as raised:
        run_config.restore_model(str(model_dir))
    assert str(raised.value).startswith(
        f"restore_model: {model_dir / 'ckpt-1'} does not hold the {described[0]} model that "
        f"config.json describes (")


def test_evaluate_refuses_a_checkpoint_of_another_strategy_naming_the_flag(checkpoints, tmp_path):
    model_dir = _model_dir(checkpoints, tmp_path, ("cvae", 32), ("poe", 32))
    before = _contents(model_dir)
    line = _only_line(_run("evaluate.py", f"--ckpt={model_dir}"))
    assert line.startswith(f"error: --ckpt: restore_model: {model_dir / 'ckpt-1'} does not hold "
                           f"the poe model that config.json describes ("), line
    assert _contents(model_dir) == before  # no eval_test/, the checkpoint as it was
