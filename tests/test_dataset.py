"""The on-disk cache and the tf.data builder, on tiny hand-made samples (no reader needed)."""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import cache as cache_lib
from data_pipeline import dataset, splits
from data_pipeline.config import DataConfig
from data_pipeline.sample import DataError
from tests.test_preprocess import make_sample

S = 32


def _samples(n=7, bad=(3,)):
    samples = []
    for i in range(n):
        if i in bad:
            samples.append(make_sample(seed=i, source=f"color/{i:05d}.png",
                                       mask_override=np.zeros((320, 320), bool)))
        else:
            samples.append(make_sample(seed=i, source=f"color/{i:05d}.png",
                                       root=(0.02 * i - 0.05, 0.01 * i - 0.03, 0.4 + 0.03 * i)))
    return samples


@pytest.fixture
def fake_reader(monkeypatch, tmp_path):
    """build_dataset over `_samples()` via a patched open_reader; returns (data_dir, calls)."""
    calls = []

    def open_reader(data, split, data_dir=None):
        calls.append((data, split))
        return _samples()

    monkeypatch.setattr(splits, "open_reader", open_reader)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "README.txt").write_text("a non-empty data directory")
    return str(data_dir), calls


def _config(data_dir, cache_dir=None, data="synthetic", **fields):
    return DataConfig(data=data, data_dir=data_dir, image_size=S, cache_dir=cache_dir, **fields)


def _build(data_dir, cache_dir, split="train", **kwargs):
    """build_dataset; kwargs that are DataConfig fields go to the config, the rest to the call."""
    fields = {k: kwargs.pop(k) for k in list(kwargs) if k in DataConfig.__dataclass_fields__}
    kwargs.setdefault("batch_size", 3)
    return dataset.build_dataset(_config(data_dir, cache_dir, **fields), split, **kwargs)


def _train_indices(n=7, bad=(3,)):
    """The training split's usable positions among `_samples(n, bad)` (validation carved out)."""
    val = splits.validation_indices(DataConfig(), _samples(n, bad))
    return [i for i in range(n) if i not in val and i not in bad]


def test_batches_have_the_contract_shapes_and_dtypes(fake_reader, tmp_path, capsys):
    data_dir, _ = fake_reader
    ds = _build(data_dir, str(tmp_path / "cache"), num_points=50, augment=True)
    out = capsys.readouterr().out
    assert _train_indices() == [0, 1, 4, 5, 6]  # sample 2 validates, sample 3 is unusable
    assert "skipping sample 3: color/00003.png: the hand mask is empty" in out
    assert "skipped 1 of 6 samples" in out
    batches = list(ds)
    assert [int(b["image"].shape[0]) for b in batches] == [3, 2]
    b = batches[0]
    expected = {"image": ((3, S, S, 3), tf.float32), "pose": ((3, 21, 3), tf.float32),
                "cloud": ((3, 50, 3), tf.float32),
                "heatmaps": ((3, S // 4, S // 4, 21), tf.float32),
                "scale": ((3,), tf.float32), "visible": ((3, 21), tf.float32),
                "labelled": ((3,), tf.float32), "has_cloud": ((3,), tf.float32),
                "index": ((3,), tf.int64)}
    for key, (shape, dtype) in expected.items():
        assert tuple(b[key].shape) == shape, key
        assert b[key].dtype == dtype, key
    assert set(b) == set(expected)
    assert 0.0 <= float(tf.reduce_min(b["image"])) and float(tf.reduce_max(b["image"])) <= 1.0
    np.testing.assert_array_equal(np.concatenate([x["index"] for x in batches]), _train_indices())
    np.testing.assert_array_equal(b["has_cloud"], 1.0)
    # Normalisation survives augmentation: root at 0, unit 11-12 bone.
    np.testing.assert_allclose(b["pose"][:, 12], 0.0, atol=1e-6)
    np.testing.assert_allclose(tf.norm(b["pose"][:, 12] - b["pose"][:, 11], axis=-1), 1.0,
                               atol=1e-5)
    assert float(tf.reduce_max(b["heatmaps"])) > 0.8


def test_pose_matches_the_preprocessed_sample(fake_reader, tmp_path):
    data_dir, _ = fake_reader
    batch = next(iter(_build(data_dir, str(tmp_path / "cache"), split="test")))
    from data_pipeline import preprocess  # pylint: disable=import-outside-toplevel
    ex = preprocess.preprocess(_samples()[1], S, view_correction=True)
    np.testing.assert_allclose(batch["pose"][1], ex.pose, atol=1e-6)
    assert float(batch["scale"][1]) == pytest.approx(ex.scale, rel=1e-6)
    np.testing.assert_array_equal(batch["labelled"], 1.0)


def test_labelled_fraction_marks_the_first_training_samples_by_index(fake_reader, tmp_path):
    data_dir, _ = fake_reader
    cache = str(tmp_path / "cache")
    ds = _build(data_dir, cache, labelled_fraction=0.5, batch_size=10)
    b = next(iter(ds))
    # Training positions 0, 1, 3 | 4, 5, 6: the first half keep their label (3 is unusable).
    np.testing.assert_array_equal(b["index"], [0, 1, 4, 5, 6])
    np.testing.assert_array_equal(b["labelled"], [1, 1, 0, 0, 0])
    # Unlabelled examples carry no pose and the labelled examples' mean bone length.
    np.testing.assert_array_equal(b["pose"][2:], 0.0)
    np.testing.assert_array_equal(b["visible"][2:], 0.0)
    np.testing.assert_allclose(b["scale"][2:], np.mean(b["scale"][:2]), rtol=1e-6)
    path, meta = cache_lib.prepare_cache(_config(data_dir, cache, labelled_fraction=0.5), "train")
    assert (meta["num_labelled"], meta["unlabelled_scale"]) == (3, pytest.approx(
        float(np.mean(b["scale"][:2])), rel=1e-6))
    assert path != cache_lib.cache_path(_config(data_dir, cache), "train")
    # Validation is always labelled.
    val = next(iter(_build(data_dir, cache, split="val", labelled_fraction=0.5)))
    np.testing.assert_array_equal(val["labelled"], 1.0)
    # The baseline of Fig. 8 trains on the labelled part alone.
    only = next(iter(_build(data_dir, cache, labelled_fraction=0.5, labelled_only=True,
                            batch_size=10)))
    np.testing.assert_array_equal(only["index"], [0, 1])
    np.testing.assert_array_equal(only["labelled"], 1.0)


def test_paired_batches_hold_the_baselines_labelled_batch_plus_unlabelled_ones(fake_reader,
                                                                              tmp_path):
    """Fig. 8's fair design: a weak run's batch is the labelled-only baseline's batch (same
    examples, same augmentation) plus unlabelled examples, interleaved."""
    data_dir, _ = fake_reader
    cache = str(tmp_path / "cache")
    kwargs = dict(labelled_fraction=0.5, batch_size=2, augment=True, shuffle=True, repeat=True,
                  drop_remainder=True, deterministic=True, seed=5)
    paired = list(_build(data_dir, cache, unlabelled_batch_size=3, **kwargs).take(4))
    baseline = list(_build(data_dir, cache, labelled_only=True, **kwargs).take(4))
    order = dataset.paired_order(2, 3)
    np.testing.assert_array_equal(order, [2, 0, 3, 1, 4])  # u0 l0 u1 l1 u2
    np.testing.assert_array_equal(dataset.paired_order(2, 2), [0, 2, 1, 3])
    labelled_slots = np.argsort(order)[:2]  # where the labelled batch's examples sit
    for batch, base in zip(paired, baseline):
        assert batch["image"].shape == (5, S, S, 3)
        np.testing.assert_array_equal(batch["labelled"], [0, 1, 0, 1, 0])
        for key in base:
            np.testing.assert_array_equal(tf.gather(batch[key], labelled_slots), base[key])
    unlabelled = np.concatenate([np.asarray(b["index"])[[0, 2, 4]] for b in paired])
    assert set(unlabelled) == {4, 5, 6}  # training positions past the labelled half
    np.testing.assert_array_equal(np.concatenate([b["pose"] for b in paired])[
        np.concatenate([b["labelled"] for b in paired]) == 0], 0.0)


def test_a_resumed_paired_stream_reads_what_an_uninterrupted_one_reads(fake_reader, tmp_path):
    data_dir, _ = fake_reader
    cache = str(tmp_path / "cache")
    kwargs = dict(labelled_fraction=0.5, unlabelled_batch_size=3, batch_size=2, augment=True,
                  shuffle=True, repeat=True, drop_remainder=True, deterministic=True, seed=7)
    whole = list(_build(data_dir, cache, **kwargs).take(5))
    resumed = list(_build(data_dir, cache, skip=3 * 2, **kwargs).take(2))
    for a, b in zip(whole[3:], resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # Batches differ along the stream (the skip is not a no-op).
    assert not np.array_equal(whole[0]["image"], resumed[0]["image"])


def test_paired_batches_refuse_what_they_cannot_serve(fake_reader, tmp_path):
    data_dir, _ = fake_reader
    cache = str(tmp_path / "cache")
    kwargs = dict(labelled_fraction=0.5, unlabelled_batch_size=3, batch_size=2)
    with pytest.raises(ValueError, match="skip must be a non-negative multiple of batch_size=2"):
        _build(data_dir, cache, repeat=True, drop_remainder=True, skip=3, **kwargs)
    with pytest.raises(ValueError, match="needs repeat=True and drop_remainder=True"):
        _build(data_dir, cache, **kwargs)
    # Validation and test batches are plain (the paired design is the training stream's).
    val = next(iter(_build(data_dir, cache, split="val", **kwargs)))
    assert len(val["index"]) <= 2
    paired = dict(labelled_fraction=0.5, unlabelled_batch_size=3)
    for fields, message in (({"labelled_fraction": 1.0}, "needs unlabelled training samples"),
                            ({"labelled_only": True}, "needs unlabelled training samples"),
                            ({"unlabelled_batch_size": -1}, "must be an int >= 0")):
        with pytest.raises(ValueError, match=f"DataConfig.unlabelled_batch_size.*{message}"):
            _config(data_dir, cache, **{**paired, **fields})
    # Every unlabelled sample skipped: refused, not an endless filter.
    only_labelled = str(tmp_path / "labelled")
    cache_lib.write_shards(_samples(3, bad=()), only_labelled, image_size=S,
                           view_correction=True, workers=1)
    with pytest.raises(ValueError, match="holds no unlabelled example"):
        dataset.paired_dataset_from_cache(
            only_labelled, cache_lib.read_meta(only_labelled),
            _config(data_dir, cache, **paired), batch_size=2, repeat=True,
            drop_remainder=True)


def test_unlabelled_records_do_not_depend_on_the_3d_label(tmp_path):
    """Two copies of an unlabelled sample that differ only in their 3D keypoints give identical
    training inputs: the same record, byte for byte."""
    labelled = make_sample(seed=0, source="a.png")
    unlabelled = make_sample(seed=1, source="b.png", root=(0.03, 0.01, 0.45))
    moved = dataclasses.replace(
        unlabelled, keypoints=make_sample(seed=2, root=(0.06, -0.02, 0.47)).keypoints)
    records = []
    for name, sample in (("a", unlabelled), ("b", moved)):
        meta = cache_lib.write_shards([labelled, sample], str(tmp_path / name), image_size=S,
                                    view_correction=True, num_labelled=1, workers=1)
        assert meta["num_examples"] == 2
        records.append([r.numpy() for r in tf.data.TFRecordDataset(
            str(tmp_path / name / meta["shards"][0]))])
    assert records[0][0] == records[1][0]  # the labelled sample
    assert records[0][1] == records[1][1]
    # Fully labelled, the same two samples differ.
    labelled_records = []
    for name, sample in (("c", unlabelled), ("d", moved)):
        meta = cache_lib.write_shards([labelled, sample], str(tmp_path / name), image_size=S,
                                    view_correction=True, workers=1)
        labelled_records.append([r.numpy() for r in tf.data.TFRecordDataset(
            str(tmp_path / name / meta["shards"][0]))][1])
    assert labelled_records[0] != labelled_records[1]


def test_unlabelled_samples_need_a_labelled_one(tmp_path):
    samples = _samples(3, bad=(0,))
    with pytest.raises(DataError, match="no labelled sample.*labelled fraction"):
        cache_lib.write_shards(samples, str(tmp_path / "u"), image_size=S, view_correction=True,
                             num_labelled=1, workers=1)
    assert not os.path.exists(tmp_path / "u")


def test_deterministic_builds_repeat_exactly(fake_reader, tmp_path):
    data_dir, _ = fake_reader
    kwargs = dict(augment=True, shuffle=True, repeat=True, deterministic=True, seed=3)
    first = list(_build(data_dir, str(tmp_path / "cache"), **kwargs).take(4))
    second = list(_build(data_dir, str(tmp_path / "cache"), **kwargs).take(4))
    for a, b in zip(first, second):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # Epochs differ (reshuffled, re-augmented) and another seed gives other batches.
    other = next(iter(_build(data_dir, str(tmp_path / "cache"), **{**kwargs, "seed": 4})))
    assert not np.array_equal(other["image"], first[0]["image"])
    indices = np.concatenate([b["index"] for b in first])
    assert sorted(indices[:5]) == _train_indices()


def test_cache_is_reused_and_keyed_by_settings(fake_reader, tmp_path):
    data_dir, calls = fake_reader
    cache = str(tmp_path / "cache")
    _build(data_dir, cache)
    assert len(calls) == 1
    _build(data_dir, cache, augment=True, batch_size=2)  # same pre-processing: no re-read
    assert len(calls) == 1
    assert dataset.dataset_size(_config(data_dir, cache), "train") == 5
    _build(data_dir, cache, view_correction=False)  # another setting: another cache
    assert len(calls) == 2
    assert sorted(p for p in os.listdir(cache)) == sorted(
        os.path.basename(cache_lib.cache_path(_config(data_dir, cache, view_correction=v), "train"))
        for v in (True, False))


def test_an_interrupted_write_leaves_no_complete_looking_cache(tmp_path, monkeypatch):
    samples = _samples(4, bad=())
    out = str(tmp_path / "cache" / "x")
    os.makedirs(os.path.dirname(out))

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_lib.preprocess_lib, "preprocess", explode)
    with pytest.raises(KeyboardInterrupt):
        cache_lib.write_shards(samples, out, image_size=S, view_correction=True, workers=1)
    assert not os.path.exists(out)


def test_parallel_writer_matches_the_serial_one(tmp_path):
    samples = _samples(5)
    kwargs = dict(image_size=S, view_correction=True, samples_per_shard=2, num_labelled=2)
    serial = cache_lib.write_shards(samples, str(tmp_path / "a"), workers=1, **kwargs)
    parallel = cache_lib.write_shards(samples, str(tmp_path / "b"), workers=2, **kwargs)
    assert serial == parallel and serial["num_examples"] == 4 and len(serial["shards"]) == 2
    assert serial["unlabelled_scale"] > 0
    for shard in serial["shards"]:
        a = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "a" / shard))]
        b = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "b" / shard))]
        assert a == b


def test_all_samples_bad_is_an_error(tmp_path):
    with pytest.raises(DataError, match="none of the 2 samples.*color/00000.png"):
        cache_lib.write_shards(_samples(2, bad=(0, 1)), str(tmp_path / "c"), image_size=S,
                             view_correction=True, workers=1)


def test_missing_real_data_names_the_path_and_flag(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"{missing}.*RHD_published_v2.*DataConfig.data_dir"):
        dataset.build_dataset(_config(missing, str(tmp_path), data="rhd"), "train")
    with pytest.raises(DataError, match=f"{missing}.*Stereo Hand Pose.*DataConfig.data_dir"):
        dataset.build_dataset(_config(missing, str(tmp_path), data="stb"), "test")


def test_bad_arguments_name_the_argument(tmp_path):
    config = _config(str(tmp_path), str(tmp_path))
    with pytest.raises(ValueError, match="prepare_cache: split must be one of"):
        dataset.build_dataset(config, "validation")
    with pytest.raises(ValueError, match="dataset_from_cache: batch_size must be positive"):
        dataset.dataset_from_cache(str(tmp_path), {"image_size": S, "shards": ["x"]}, config,
                                   batch_size=0)


def test_sample_cloud_with_and_without_replacement():
    cloud = tf.reshape(tf.range(30, dtype=tf.float32), [10, 3])
    seed = tf.constant([1, 2], tf.int64)
    few = dataset.sample_cloud(cloud, 6, seed).numpy()
    assert len({tuple(p) for p in few}) == 6  # no repeats when enough candidates
    many = dataset.sample_cloud(cloud, 25, seed).numpy()
    assert many.shape == (25, 3)
    assert {tuple(p) for p in many} <= {tuple(p) for p in cloud.numpy()}
    # A test sample without depth points.
    np.testing.assert_array_equal(dataset.sample_cloud(tf.zeros([0, 3]), 4, seed), np.zeros((4, 3)))


def test_sample_cloud_draws_argsorts_first_points():
    # The subset and order of the definition: the num_points smallest of the uniform keys.
    cloud = tf.random.stateless_normal([300, 3], [4, 5])
    for i in range(20):
        seed = tf.constant([7, i], tf.int64)
        keys = tf.random.stateless_uniform([300], seed)
        expected = tf.gather(cloud, tf.argsort(keys)[:40])
        np.testing.assert_array_equal(dataset.sample_cloud(cloud, 40, seed), expected)


def test_left_out_modalities_leave_the_rest_of_each_batch_unchanged(fake_reader, tmp_path):
    data_dir, _ = fake_reader
    kwargs = dict(num_points=20, augment=True, shuffle=True, seed=3, deterministic=True)
    full = list(_build(data_dir, str(tmp_path / "cache"), **kwargs))
    for modalities in ((), ("heatmaps",), ("cloud",)):
        lean = list(_build(data_dir, str(tmp_path / "cache"), modalities=modalities, **kwargs))
        assert len(lean) == len(full)
        for a, b in zip(full, lean):
            assert sorted(b) == sorted(k for k in a
                                       if k not in dataset.MODALITIES or k in modalities)
            for key in b:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with pytest.raises(ValueError, match=r"modalities must be among .*\['depth'\]"):
        _build(data_dir, str(tmp_path / "cache"), modalities=("depth",))


def test_default_data_dirs_live_under_the_repo():
    from data_pipeline import config  # pylint: disable=import-outside-toplevel
    for data, name in (("synthetic", "synthetic_rhd"), ("rhd", "RHD_published_v2"),
                       ("stb", "STB")):
        assert config.default_data_dir(data) == os.path.join(config.REPO_ROOT, "data", name)
        assert DataConfig(data=data).resolved_data_dir == config.default_data_dir(data)


@pytest.mark.slow
@pytest.mark.parametrize("fmt,data", [("rhd", "synthetic"), ("stb", "stb")])
def test_end_to_end_through_the_readers(tmp_path, fmt, data):
    from data_pipeline import inspect as inspect_lib  # pylint: disable=import-outside-toplevel
    from data_pipeline import synthetic  # pylint: disable=import-outside-toplevel
    data_dir = str(tmp_path / fmt)
    synthetic.generate(fmt, data_dir, 10, 2, seed=2, workers=1)
    cache = str(tmp_path / "cache")
    # One of the ten validates (RHD: a seeded 5%, at least one; STB: the B6Random frame).
    config = _config(data_dir, cache, data=data)
    assert dataset.dataset_size(config, "train") == 9
    assert dataset.dataset_size(config, "val") == 1
    batch = next(iter(dataset.build_dataset(config, "train", batch_size=4)))
    assert tuple(batch["image"].shape) == (4, S, S, 3)
    assert tuple(batch["heatmaps"].shape) == (4, S // 4, S // 4, 21)
    inspected = inspect_lib.inspect_sample(config, "train", 2)
    np.testing.assert_allclose(batch["pose"][2], inspected["pose"], atol=1e-6)
    np.testing.assert_allclose(batch["image"][2], inspected["image"], atol=1e-6)
    assert float(batch["scale"][2]) == pytest.approx(float(inspected["scale"]), rel=1e-6)


@pytest.mark.slow
def test_a_corrupt_file_is_skipped_with_its_name_and_the_count(tmp_path, capsys):
    from data_pipeline import synthetic  # pylint: disable=import-outside-toplevel
    data_dir = tmp_path / "rhd"
    synthetic.generate("rhd", str(data_dir), 4, 2, seed=3, workers=1)
    corrupt = data_dir / "training" / "color" / "00001.png"
    corrupt.write_bytes(b"not a png")
    capsys.readouterr()
    ds = dataset.build_dataset(_config(str(data_dir), str(tmp_path / "cache")), "train",
                               batch_size=8)
    out = capsys.readouterr().out
    assert f"skipping sample 1: {corrupt}" in out
    assert "skipped 1 of 3 samples" in out  # sample 3 validates
    np.testing.assert_array_equal(next(iter(ds))["index"], [0, 2])


def test_a_changed_data_directory_gets_a_new_cache(fake_reader, tmp_path):
    data_dir, calls = fake_reader
    cache = str(tmp_path / "cache")
    _build(data_dir, cache)
    os.utime(data_dir, ns=(0, 10**18))  # as after regenerating the set in place
    _build(data_dir, cache)
    assert len(calls) == 2


RHD, STB = DataConfig(data="rhd"), DataConfig(data="stb")


class _STBLikeReader(list):
    """A training reader with STB's sample_ids: (sequence, frame) per position."""

    def __init__(self, frames):
        super().__init__(range(sum(frames.values())))
        self.sample_ids = tuple((seq, f) for seq, n in frames.items() for f in range(n))


@pytest.mark.parametrize("count", [2, 7, 40, 1000])
def test_validation_and_training_indices_partition_the_training_split(count):
    reader = list(range(count))
    train = splits.split_indices(RHD, "train", reader)
    val = splits.split_indices(RHD, "val", reader)
    assert len(val) == max(1, round(0.05 * count))
    assert not set(train) & set(val)
    assert sorted(set(train) | set(val)) == list(range(count))
    np.testing.assert_array_equal(val, splits.validation_indices(DataConfig(), reader))  # fixed
    np.testing.assert_array_equal(splits.split_indices(RHD, "test", reader), np.arange(count))
    wider = splits.split_indices(DataConfig(data="rhd", validation_fraction=0.25), "val", reader)
    assert len(wider) == max(1, round(0.25 * count))


def test_stb_validates_on_one_training_sequence():
    frames = {f"B{b}{kind}": 3 for b in range(2, 7) for kind in ("Counting", "Random")}
    reader = _STBLikeReader(frames)
    val = splits.split_indices(STB, "val", reader)
    train = splits.split_indices(STB, "train", reader)
    assert [reader.sample_ids[i][0] for i in val] == ["B6Random"] * 3
    assert "B6Random" not in {reader.sample_ids[i][0] for i in train}
    assert sorted(set(train) | set(val)) == list(range(30)) and not set(train) & set(val)


def test_a_training_split_too_small_to_carve_is_an_error():
    with pytest.raises(DataError, match="1 samples.*0 training"):
        splits.validation_indices(RHD, [0])
    with pytest.raises(DataError, match="B6Random.*0 validation"):
        splits.validation_indices(STB, _STBLikeReader({"B2Counting": 4}))


def test_train_and_val_caches_partition_the_training_split(fake_reader, tmp_path):
    data_dir, calls = fake_reader
    cache = str(tmp_path / "cache")
    indices = {split: np.concatenate([b["index"] for b in _build(data_dir, cache, split=split)])
               for split in ("train", "val")}
    assert set(indices["train"]).isdisjoint(indices["val"])
    # Their union is the training split, less the unusable sample 3.
    assert sorted(np.concatenate(list(indices.values()))) == [0, 1, 2, 4, 5, 6]
    # Both come from the training reader; nothing of the test split is opened or cached.
    assert calls == [("synthetic", "train")] * 2
    assert sorted(name.split("-")[1] for name in os.listdir(cache)) == ["train", "val"]


def test_the_test_split_keeps_every_sample(fake_reader, tmp_path, capsys):
    data_dir, calls = fake_reader
    config = _config(data_dir, str(tmp_path / "cache"), num_points=16)
    path, meta = cache_lib.prepare_cache(config, "test")
    assert calls == [("synthetic", "test")] and "skipping" not in capsys.readouterr().out
    assert (meta["num_examples"], meta["num_raw"], meta["num_skipped"]) == (7, 7, 0)
    batch = next(iter(dataset.dataset_from_cache(path, meta, config, batch_size=7)))
    np.testing.assert_array_equal(batch["index"], np.arange(7))
    # Sample 3 has no hand mask, so no cloud: its crop comes from the keypoints.
    np.testing.assert_array_equal(batch["has_cloud"], [1, 1, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(batch["cloud"][3], 0.0)
    assert float(tf.reduce_max(batch["heatmaps"][3])) > 0.8
