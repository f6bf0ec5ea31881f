"""The on-disk cache and the tf.data builder, on tiny hand-made samples (no reader needed)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import dataset
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

    monkeypatch.setattr(dataset, "open_reader", open_reader)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "README.txt").write_text("a non-empty data directory")
    return str(data_dir), calls


def _build(data_dir, cache_dir, split="train", **kwargs):
    args = dict(data_dir=data_dir, image_size=S, batch_size=3, cache_dir=cache_dir)
    args.update(kwargs)
    return dataset.build_dataset("synthetic", split, **args)


def test_batches_have_the_contract_shapes_and_dtypes(fake_reader, tmp_path, capsys):
    data_dir, _ = fake_reader
    ds = _build(data_dir, str(tmp_path / "cache"), num_points=50, augment=True)
    out = capsys.readouterr().out
    assert "skipping sample 3: color/00003.png: the hand mask is empty" in out
    assert "skipped 1 of 7 samples" in out
    batches = list(ds)
    assert [int(b["image"].shape[0]) for b in batches] == [3, 3]
    b = batches[0]
    expected = {"image": ((3, S, S, 3), tf.float32), "pose": ((3, 21, 3), tf.float32),
                "cloud": ((3, 50, 3), tf.float32), "heatmaps": ((3, S // 4, S // 4, 21), tf.float32),
                "scale": ((3,), tf.float32), "visible": ((3, 21), tf.float32),
                "labelled": ((3,), tf.float32), "index": ((3,), tf.int64)}
    for key, (shape, dtype) in expected.items():
        assert tuple(b[key].shape) == shape, key
        assert b[key].dtype == dtype, key
    assert set(b) == set(expected)
    assert 0.0 <= float(tf.reduce_min(b["image"])) and float(tf.reduce_max(b["image"])) <= 1.0
    np.testing.assert_array_equal(np.concatenate([x["index"] for x in batches]), [0, 1, 2, 4, 5, 6])
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


def test_labelled_fraction_marks_the_first_samples_by_index(fake_reader, tmp_path):
    data_dir, _ = fake_reader
    ds = _build(data_dir, str(tmp_path / "cache"), labelled_fraction=0.5, batch_size=10)
    b = next(iter(ds))
    np.testing.assert_array_equal(b["labelled"], (b["index"].numpy() < 4).astype(np.float32))


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
    assert sorted(indices[:6]) == [0, 1, 2, 4, 5, 6]


def test_cache_is_reused_and_keyed_by_settings(fake_reader, tmp_path):
    data_dir, calls = fake_reader
    cache = str(tmp_path / "cache")
    _build(data_dir, cache)
    assert len(calls) == 1
    _build(data_dir, cache, augment=True, batch_size=2)  # same pre-processing: no re-read
    assert len(calls) == 1
    assert dataset.dataset_size("synthetic", "train", data_dir, image_size=S,
                                cache_dir=cache) == 6
    _build(data_dir, cache, view_correction=False)  # another setting: another cache
    assert len(calls) == 2
    assert sorted(p for p in os.listdir(cache)) == sorted(
        os.path.basename(dataset.cache_path("synthetic", "train", data_dir, image_size=S,
                                            view_correction=v, cache_dir=cache))
        for v in (True, False))


def test_an_interrupted_write_leaves_no_complete_looking_cache(tmp_path, monkeypatch):
    samples = _samples(4, bad=())
    out = str(tmp_path / "cache" / "x")
    os.makedirs(os.path.dirname(out))

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset.preprocess_lib, "preprocess", explode)
    with pytest.raises(KeyboardInterrupt):
        dataset.write_shards(samples, out, image_size=S, view_correction=True, workers=1)
    assert not os.path.exists(out)


def test_parallel_writer_matches_the_serial_one(tmp_path):
    samples = _samples(5)
    serial = dataset.write_shards(samples, str(tmp_path / "a"), image_size=S,
                                  view_correction=True, workers=1, samples_per_shard=2)
    parallel = dataset.write_shards(samples, str(tmp_path / "b"), image_size=S,
                                    view_correction=True, workers=2, samples_per_shard=2)
    assert serial == parallel and serial["num_examples"] == 4 and len(serial["shards"]) == 2
    for shard in serial["shards"]:
        a = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "a" / shard))]
        b = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "b" / shard))]
        assert a == b


def test_all_samples_bad_is_an_error(tmp_path):
    with pytest.raises(DataError, match="none of the 2 samples.*color/00000.png"):
        dataset.write_shards(_samples(2, bad=(0, 1)), str(tmp_path / "c"), image_size=S,
                             view_correction=True, workers=1)


def test_missing_real_data_names_the_path_and_flag(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"{missing}.*RHD_published_v2.*--data_dir"):
        dataset.build_dataset("rhd", "train", data_dir=missing, cache_dir=str(tmp_path))
    with pytest.raises(DataError, match=f"{missing}.*Stereo Hand Pose.*--data_dir"):
        dataset.build_dataset("stb", "test", data_dir=missing, cache_dir=str(tmp_path))


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="--data"):
        dataset.build_dataset("mnist", "train")
    with pytest.raises(ValueError, match="--split"):
        dataset.build_dataset("rhd", "val")
    with pytest.raises(ValueError, match="--image_size"):
        dataset.build_dataset("rhd", "train", image_size=30, data_dir=str(tmp_path))


def test_sample_cloud_with_and_without_replacement():
    cloud = tf.reshape(tf.range(30, dtype=tf.float32), [10, 3])
    seed = tf.constant([1, 2], tf.int64)
    few = dataset.sample_cloud(cloud, 6, seed).numpy()
    assert len({tuple(p) for p in few}) == 6  # no repeats when enough candidates
    many = dataset.sample_cloud(cloud, 25, seed).numpy()
    assert many.shape == (25, 3)
    assert {tuple(p) for p in many} <= {tuple(p) for p in cloud.numpy()}


def test_default_data_dirs_live_under_the_repo():
    for data, name in (("synthetic", "synthetic_rhd"), ("rhd", "RHD_published_v2"),
                       ("stb", "STB")):
        assert dataset.default_data_dir(data) == os.path.join(dataset.REPO_ROOT, "data", name)


@pytest.mark.slow
@pytest.mark.parametrize("fmt,data", [("rhd", "synthetic"), ("stb", "stb")])
def test_end_to_end_through_the_readers(tmp_path, fmt, data):
    from data_pipeline import inspect as inspect_lib  # pylint: disable=import-outside-toplevel
    from data_pipeline import synthetic  # pylint: disable=import-outside-toplevel
    data_dir = str(tmp_path / fmt)
    synthetic.generate(fmt, data_dir, 10, 2, seed=2, workers=1)
    cache = str(tmp_path / "cache")
    assert dataset.dataset_size(data, "train", data_dir, image_size=S, cache_dir=cache) == 10
    batch = next(iter(dataset.build_dataset(data, "train", data_dir=data_dir, image_size=S,
                                            batch_size=4, cache_dir=cache)))
    assert tuple(batch["image"].shape) == (4, S, S, 3)
    assert tuple(batch["heatmaps"].shape) == (4, S // 4, S // 4, 21)
    inspected = inspect_lib.inspect_sample(data, "train", 2, data_dir=data_dir, image_size=S)
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
    ds = dataset.build_dataset("synthetic", "train", data_dir=str(data_dir), image_size=S,
                               batch_size=8, cache_dir=str(tmp_path / "cache"))
    out = capsys.readouterr().out
    assert f"skipping sample 1: {corrupt}" in out
    assert "skipped 1 of 4 samples" in out
    np.testing.assert_array_equal(next(iter(ds))["index"], [0, 2, 3])


def test_a_changed_data_directory_gets_a_new_cache(fake_reader, tmp_path):
    data_dir, calls = fake_reader
    cache = str(tmp_path / "cache")
    _build(data_dir, cache)
    os.utime(data_dir, ns=(0, 10**18))  # as after regenerating the set in place
    _build(data_dir, cache)
    assert len(calls) == 2
