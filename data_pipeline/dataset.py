"""The tf.data pipeline: pre-processed TFRecord shards on disk and the batched dataset builder.

Splits (README "Data"): 'test' is the data set's test split, read only for evaluation. 'train'
and 'val' share the data set's training split, carved by `validation_indices`: RHD and
synthetic hold out a seeded share of the training indices (DataConfig.validation_fraction),
STB the training sequence STB_VALIDATION_SEQUENCE. Validation steers training (plateaus,
convergence, the TensorBoard curve), so the test split never does.

Layout of the cache (one directory per data set, split and pre-processing setting):

  <cache_dir>/<data>-<split>-<hash>/          cache_dir defaults to <repo>/data/cache
      shard-00000.tfrecord ...               tf.train.Example records, in sample-index order
      meta.json                              counts, skipped samples, the settings hashed,
                                             each shard's size in bytes

<hash> covers the absolute data directory and its modification time (a regenerated data set
gets a new cache), the split, the image size, the viewpoint-correction switch, the number of
cloud candidates, the validation carve-out, the labelled fraction (the 'train' split) and
CACHE_VERSION. The directory is written under a temporary name and renamed when complete, so an
interrupted run never leaves a cache that looks complete. Opening a cache checks meta.json and
each shard's size against it (`read_meta`), so a cache damaged afterwards (a truncated shard, a
corrupt meta.json) is refused when it is opened, naming the file, instead of failing with
DataLossError mid-training. It is not rebuilt in place, since other runs may be reading it: the
message says to delete the directory. Records hold a PNG crop (uint8), the float16 cloud
candidates, float32 keypoints and whether the example is labelled; decoding, the per-step cloud
sample, augmentation and heatmaps happen in the parallel map.

Weak supervision (paper Fig. 8): in the 'train' split the first round(labelled_fraction * n) of
its n samples (by index) are labelled; the rest are pre-processed without their 3D label
(preprocess.detect_hand) and scaled by the mean bone length of the labelled examples.

Skipping rule: in 'train' and 'val', a sample whose reading or pre-processing raises DataError
(corrupt file, empty hand mask, hand outside the image, too few depth points near the root) is
left out of the cache. In 'test' every sample with an image and a label is kept (SPEC 6 scores
all; the cloud may be empty), so only unreadable files or unusable labels are left out, and
evaluate.py refuses such a cache. The writer prints each message (the first ten) and the count,
and records them in meta.json. An empty result is an error. Missing data directories are
errors, never skipped.
"""
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from typing import Optional

import cv2
import numpy as np
import tensorflow as tf

from data_pipeline import augment as augment_lib
from data_pipeline import preprocess as preprocess_lib
from data_pipeline.config import (DATASETS, READER_SPLITS, SPLITS, DataConfig,
                                  default_data_dir)
from data_pipeline.sample import NUM_KEYPOINTS, DataError

# 2: validation carve-out, labelled flag per record, every test sample kept.
CACHE_VERSION = 2
# The validation carve-out of the training split (module doc); part of the cache key.
VALIDATION_SEED = 2019
STB_VALIDATION_SEQUENCE = "B6Random"
SAMPLES_PER_SHARD = 512
SHUFFLE_BUFFER = 1024  # serialized records (a 256-px PNG crop is ~0.1 MB)
SYNTHETIC_SIZE = {"num_train": 2000, "num_test": 200, "seed": 0}
# What a missing data set directory should hold (README, "Real data").
_WHERE_TO_GET = {
    "rhd": "the Rendered Hand Pose data set (Zimmermann & Brox 2017; the RHD_published_v2 "
           "directory with training/ and evaluation/)",
    "stb": "the Stereo Hand Pose Tracking Benchmark (Zhang et al. 2016; images/<sequence>/SK_*.png "
           "and labels/<sequence>_SK.mat)",
}
_MAX_REPORTED_SKIPS = 10
_MIN_POOL_SAMPLES = 64


def _check_choice(function, name, value, choices):
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
    _check_choice("open_reader", "data", data, DATASETS)
    _check_choice("open_reader", "split", split, READER_SPLITS)
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
    _check_choice("split_indices", "split", split, SPLITS)
    everything = np.arange(len(reader), dtype=np.int64)
    if split == "test":
        return everything
    val = validation_indices(config, reader)
    return val if split == "val" else np.setdiff1d(everything, val)


def cache_path(config: DataConfig, split: str,
               max_points: int = preprocess_lib.MAX_CLOUD_POINTS) -> str:
    """The cache directory of one data set split and pre-processing setting (module doc).

    The labelled fraction matters only for 'train' (the other splits are fully labelled).
    """
    data_dir = config.resolved_data_dir
    modified = os.stat(data_dir).st_mtime_ns if os.path.isdir(data_dir) else None
    settings = {"data_dir": data_dir, "modified": modified, "split": split,
                "image_size": config.image_size,
                "view_correction": bool(config.view_correction), "max_points": int(max_points),
                "validation": [config.validation_fraction, VALIDATION_SEED,
                               STB_VALIDATION_SEQUENCE],
                "labelled_fraction": float(config.labelled_fraction) if split == "train" else None,
                "version": CACHE_VERSION}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return os.path.join(config.resolved_cache_dir, f"{config.data}-{split}-{digest}")


# ----------------------------------------------------------------------------------------------
# Records.

def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(values).tolist()))


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.ravel(values).tolist()))


def serialize(example: preprocess_lib.Example, index: int) -> bytes:
    """One pre-processed example as a serialized tf.train.Example (PNG image, float16 cloud)."""
    ok, png = cv2.imencode(".png", example.image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise DataError(f"{example.source}: could not encode the crop")
    return tf.train.Example(features=tf.train.Features(feature={
        "image": _bytes(png.tobytes()),
        "keypoints_2d": _floats(example.keypoints_2d),
        "pose": _floats(example.pose),
        "cloud": _bytes(example.cloud.astype(np.float16).tobytes()),
        "scale": _floats([example.scale]),
        "visible": _floats(example.visible.astype(np.float32)),
        "pose_cam": _floats(example.pose_cam),
        "root": _floats(example.root),
        "R_view": _floats(example.R_view),
        "K_crop": _floats(example.K_crop),
        "hand": _ints([0 if example.hand == "left" else 1]),
        "labelled": _ints([int(example.labelled)]),
        "index": _ints([index]),
    })).SerializeToString()


_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "keypoints_2d": tf.io.FixedLenFeature([NUM_KEYPOINTS, 2], tf.float32),
    "pose": tf.io.FixedLenFeature([NUM_KEYPOINTS, 3], tf.float32),
    "cloud": tf.io.FixedLenFeature([], tf.string),
    "scale": tf.io.FixedLenFeature([], tf.float32),
    "visible": tf.io.FixedLenFeature([NUM_KEYPOINTS], tf.float32),
    "pose_cam": tf.io.FixedLenFeature([NUM_KEYPOINTS, 3], tf.float32),
    "root": tf.io.FixedLenFeature([3], tf.float32),
    "R_view": tf.io.FixedLenFeature([3, 3], tf.float32),
    "K_crop": tf.io.FixedLenFeature([3, 3], tf.float32),
    "hand": tf.io.FixedLenFeature([], tf.int64),
    "labelled": tf.io.FixedLenFeature([], tf.int64),
    "index": tf.io.FixedLenFeature([], tf.int64),
}


def parse_record(record, image_size):
    """Serialized record -> dict of tensors: image (S, S, 3) uint8, cloud (M, 3) float32, and the
    stored keypoints and camera (see `serialize`)."""
    features = tf.io.parse_single_example(record, _FEATURES)
    image = tf.io.decode_png(features["image"], channels=3)
    features["image"] = tf.ensure_shape(image, [image_size, image_size, 3])
    cloud = tf.io.decode_raw(features["cloud"], tf.float16)
    features["cloud"] = tf.cast(tf.reshape(cloud, [-1, 3]), tf.float32)
    return features


def sample_cloud(cloud, num_points, seed):
    """Draws num_points of the (M, 3) candidates: without replacement when M >= num_points,
    else with replacement (paper, section 4); zeros when M = 0 (a test sample without depth
    points). seed: (2,) stateless seed."""
    count = tf.shape(cloud)[0]

    def without_replacement():
        order = tf.argsort(tf.random.stateless_uniform([count], seed))
        return tf.gather(cloud, order[:num_points])

    def with_replacement():
        picks = tf.random.stateless_uniform([num_points], seed, 0, tf.maximum(count, 1),
                                            dtype=tf.int32)
        return tf.gather(cloud, picks)

    def empty():
        return tf.zeros([num_points, 3], cloud.dtype)

    picked = tf.case([(count >= num_points, without_replacement), (count > 0, with_replacement)],
                     default=empty)
    return tf.ensure_shape(picked, [num_points, 3])


def model_inputs(features, key, *, image_size, num_points, augment, return_params=False):
    """Parsed record -> the model's example (float32 image in [0, 1], heatmaps, sampled cloud).

    Args:
      features: from `parse_record`.
      key: (2,) int64 stateless seed of this element (seed, element counter).
      image_size: crop side S.
      num_points: cloud size N.
      augment: apply a random augmentation (training only).
      return_params: also return the augmentation's parameters (None without augmentation).

    Returns:
      dict: image (S, S, 3), pose (21, 3), cloud (N, 3), heatmaps (S/4, S/4, 21), scale (),
      visible (21,), labelled () and has_cloud () float32 0/1, index () int64; with
      return_params, (dict, params).
    """
    seeds = tf.random.experimental.stateless_split(key, num=2)
    image = tf.image.convert_image_dtype(features["image"], tf.float32)
    keypoints_2d, pose = features["keypoints_2d"], features["pose"]
    cloud = sample_cloud(features["cloud"], num_points, seeds[0])
    params = None
    if augment:
        params = augment_lib.sample_params(seeds[1], image_size)
        image, keypoints_2d, pose, cloud = augment_lib.augment(image, keypoints_2d, pose, cloud,
                                                               params)
    example = {
        "image": image, "pose": pose, "cloud": cloud,
        "heatmaps": augment_lib.heatmaps(keypoints_2d, image_size),
        "scale": features["scale"], "visible": features["visible"],
        "labelled": tf.cast(features["labelled"], tf.float32),
        "has_cloud": tf.cast(tf.shape(features["cloud"])[0] > 0, tf.float32),
        "index": features["index"],
    }
    return (example, params) if return_params else example


# ----------------------------------------------------------------------------------------------
# Writing the cache.

def write_shards(samples, out_dir: str, *, image_size: int, view_correction: bool,
                 indices=None, num_labelled: Optional[int] = None, keep_incomplete: bool = False,
                 max_points: int = preprocess_lib.MAX_CLOUD_POINTS, workers: Optional[int] = None,
                 samples_per_shard: int = SAMPLES_PER_SHARD, name: str = "") -> dict:
    """Pre-processes samples into TFRecord shards in out_dir, atomically.

    Args:
      samples: a sequence of RawSample (a reader).
      out_dir: the cache directory to create (must not exist yet).
      image_size, view_correction, max_points: pre-processing settings.
      indices: the positions in `samples` to pre-process, increasing; default all.
      num_labelled: the first num_labelled of `indices` are labelled, the rest unlabelled,
        scaled by the mean bone length of the labelled examples written (module doc); default
        all labelled.
      keep_incomplete: a test split: keep every sample with an image and a label
        (preprocess.preprocess).
      workers: spawned processes for pre-processing (the samples are pickled to each); 1 runs
        in-process; default min(2, CPUs), or 1 below _MIN_POOL_SAMPLES samples.
      samples_per_shard: records per shard file.
      name: what to call the data in progress messages.

    Returns:
      The meta dict written to meta.json.

    Raises:
      DataError: no sample could be pre-processed, or unlabelled samples but no labelled
        example to take the mean bone length from.
    """
    indices = [int(i) for i in (range(len(samples)) if indices is None else indices)]
    num_raw = len(indices)
    num_labelled = num_raw if num_labelled is None else int(num_labelled)
    if workers is None:  # a pool costs more than it saves on a few samples
        workers = 1 if num_raw < _MIN_POOL_SAMPLES else min(2, os.cpu_count() or 1)
    tmp = f"{out_dir.rstrip(os.sep)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    label = name or out_dir
    print(f"pre-processing {label}: {num_raw} samples -> {out_dir}", flush=True)
    settings = (samples, image_size, view_correction, max_points, keep_incomplete)
    shards, skipped, scales, written, writer, pool = [], [], [], 0, None, None
    unlabelled_scale = None
    # One bar with rate and ETA; without a terminal (a log file) it prints a line every 10 s.
    progress = tf.keras.utils.Progbar(num_raw, unit_name="sample",
                                      interval=0.5 if sys.stdout.isatty() else 10.0,
                                      stateful_metrics=["samples/s"])
    start = time.monotonic()

    def run(tasks):
        if pool is not None:
            return pool.imap(preprocess_lib.preprocess_index, tasks, chunksize=4)
        return (preprocess_lib.try_preprocess(samples, i, *settings[1:], unlabelled_scale=u)
                for i, u in tasks)

    try:
        if workers > 1:
            # Spawned, not forked: this process already runs TensorFlow (see preprocess.py).
            pool = multiprocessing.get_context("spawn").Pool(
                workers, initializer=preprocess_lib.init_worker, initargs=settings)
        done = 0
        # Labelled samples first: their mean bone length scales the unlabelled ones. Both
        # phases keep index order, since labelled indices come first.
        for phase in ("labelled", "unlabelled"):
            if phase == "labelled":
                tasks = [(i, None) for i in indices[:num_labelled]]
            else:
                tasks = [(i, unlabelled_scale) for i in indices[num_labelled:]]
                if tasks and not scales:
                    raise DataError(f"{label}: no labelled sample could be pre-processed, so the "
                                    f"{len(tasks)} unlabelled ones have no mean bone length to "
                                    f"be scaled by; raise the labelled fraction")
            for index, example, error in run(tasks):
                done += 1
                if error is not None:
                    skipped.append([index, error])
                    if len(skipped) <= _MAX_REPORTED_SKIPS:
                        print(f"\n  skipping sample {index}: {error}", flush=True)
                else:
                    if example.labelled:
                        scales.append(example.scale)
                    if written % samples_per_shard == 0:
                        if writer is not None:
                            writer.close()
                        shards.append(f"shard-{len(shards):05d}.tfrecord")
                        writer = tf.io.TFRecordWriter(os.path.join(tmp, shards[-1]))
                    writer.write(serialize(example, index))
                    written += 1
                progress.update(done, [("samples/s", done / (time.monotonic() - start))])
            if phase == "labelled" and scales:
                unlabelled_scale = float(np.mean(scales))
    except BaseException:
        if writer is not None:
            writer.close()
            writer = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.terminate()
        if writer is not None:
            writer.close()
    if skipped:
        print(f"  {label}: skipped {len(skipped)} of {num_raw} samples (DataError)", flush=True)
    if written == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{label}: none of the {num_raw} samples could be pre-processed"
                        + (f"; first error: {skipped[0][1]}" if skipped else ""))
    meta = {"num_examples": written, "num_raw": num_raw, "num_skipped": len(skipped),
            "skipped": skipped, "shards": shards,
            "shard_bytes": [os.path.getsize(os.path.join(tmp, shard)) for shard in shards],
            "image_size": image_size,
            "view_correction": view_correction, "max_points": max_points,
            "keep_incomplete": keep_incomplete, "num_labelled": num_labelled,
            "unlabelled_scale": unlabelled_scale if num_labelled < num_raw else None,
            "version": CACHE_VERSION}
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    try:
        os.rename(tmp, out_dir)
    except OSError:  # completed meanwhile by another process: keep that one
        if not os.path.isdir(out_dir):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


# What the readers of a cache take from meta.json (shard_bytes is absent from caches written
# before it was recorded; their shards are checked for existence and a non-zero size only).
_META_KEYS = ("num_examples", "num_raw", "num_skipped", "skipped", "shards", "image_size")


def read_meta(path: str) -> dict:
    """The meta.json of a cache directory, checked against the shards on disk.

    Cheap (no record is read): meta.json must parse and hold _META_KEYS, and every shard it lists
    must exist with the size in bytes recorded when it was written, so a truncated shard is found
    here rather than as a DataLossError mid-training.

    Raises:
      DataError: naming the missing, unreadable or truncated file and saying to delete `path`.
    """
    meta_path = os.path.join(path, "meta.json")
    remedy = f"delete {path} to pre-process the split again"
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except FileNotFoundError as e:
        raise DataError(f"{meta_path}: missing, so the cache is incomplete; {remedy}") from e
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise DataError(f"{meta_path}: not readable ({e}); {remedy}") from e
    missing = [key for key in _META_KEYS if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise DataError(f"{meta_path}: not a cache description (no {', '.join(missing)}); "
                        f"{remedy}")
    shards = meta["shards"]
    sizes = meta.get("shard_bytes", [None] * len(shards))
    if not shards or len(sizes) != len(shards):
        raise DataError(f"{meta_path}: lists {len(shards)} shards and {len(sizes)} shard sizes; "
                        f"{remedy}")
    for shard, written in zip(shards, sizes):
        shard_path = os.path.join(path, shard)
        if not os.path.isfile(shard_path):
            raise DataError(f"{shard_path}: missing; {remedy}")
        size = os.path.getsize(shard_path)
        if size == 0 or written not in (None, size):
            expected = "" if written is None else f", but {written} were written"
            raise DataError(f"{shard_path}: {size} bytes{expected} (truncated or changed since "
                            f"the cache was written); {remedy}")
    return meta


def prepare_cache(config: DataConfig, split: str) -> tuple:
    """Returns (cache directory, meta), pre-processing the split first if it is not cached.

    'train' and 'val' read the data set's training split, 'test' its test split (module doc);
    the labelled fraction applies to 'train' only.

    Raises:
      DataError: the data is missing or malformed, no sample is usable, or the cache directory
        exists but is damaged (`read_meta`).
    """
    _check_choice("prepare_cache", "split", split, SPLITS)
    reader_split = "test" if split == "test" else "train"
    data_dir = config.resolved_data_dir
    reader = None
    if not os.path.isdir(data_dir) or not os.listdir(data_dir):  # generates synthetic, or raises
        reader = open_reader(config.data, reader_split, data_dir)
    path = cache_path(config, split)
    # A complete cache appears by a rename (write_shards), so an existing directory is checked
    # by read_meta, never written over.
    if not os.path.exists(path):
        if reader is None:
            reader = open_reader(config.data, reader_split, data_dir)
        indices = split_indices(config, split, reader)
        num_labelled = (int(round(config.labelled_fraction * len(indices))) if split == "train"
                        else len(indices))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_shards(reader, path, image_size=config.image_size,
                     view_correction=config.view_correction, indices=indices,
                     num_labelled=num_labelled, keep_incomplete=split == "test",
                     name=f"{config.data} {split}")
    return path, read_meta(path)


def dataset_size(config: DataConfig, split: str) -> int:
    """Number of examples build_dataset yields per epoch (the split's samples minus skipped
    ones)."""
    return prepare_cache(config, split)[1]["num_examples"]


def dataset_from_cache(path: str, meta: dict, config: DataConfig, *, batch_size: int = 32,
                       augment: bool = False, shuffle: bool = False, repeat: bool = False,
                       seed: int = 0, deterministic: bool = False,
                       drop_remainder: bool = False, skip: int = 0) -> tf.data.Dataset:
    """The batched dataset over one cache directory of `config` (arguments as in
    `build_dataset`)."""
    if batch_size < 1:
        raise ValueError(f"dataset_from_cache: batch_size must be positive, got {batch_size}")
    if skip < 0:
        raise ValueError(f"dataset_from_cache: skip must be >= 0, got {skip}")
    image_size = meta["image_size"]
    files = [os.path.join(path, shard) for shard in meta["shards"]]

    if shuffle:
        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        ds = ds.shuffle(min(SHUFFLE_BUFFER, meta["num_examples"]), seed=seed)
    else:
        ds = tf.data.TFRecordDataset(files)
    if config.labelled_only:
        ds = ds.filter(lambda record: tf.io.parse_single_example(
            record, {"labelled": _FEATURES["labelled"]})["labelled"] > 0)
    if repeat:
        ds = ds.repeat()
    ds = ds.enumerate()  # element counter: the stateless key, so epochs differ but reproducibly
    if skip:  # records only, before decoding: cheap
        ds = ds.skip(skip)

    def to_example(counter, record):
        key = tf.stack([tf.constant(seed, tf.int64), counter])
        return model_inputs(parse_record(record, image_size), key, image_size=image_size,
                            num_points=config.num_points, augment=augment)

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def build_dataset(config: DataConfig, split: str, *, batch_size: int = 32,
                  augment: bool = False, shuffle: bool = False, repeat: bool = False,
                  seed: int = 0, deterministic: bool = False,
                  drop_remainder: bool = False, skip: int = 0) -> tf.data.Dataset:
    """The batched, prefetched dataset of one data set split (the pipeline's entry point).

    Pre-processes the split into the on-disk cache on first use (module doc), then streams it.

    Args:
      config: the data set, its directory and pre-processing (DataConfig); its labelled
        fraction and labelled_only apply to 'train'.
      split: 'train', 'val' (both from the training split) or 'test' (module doc).
      batch_size: B.
      augment: random scale, translation, rotation and hue (training only, SPEC 5).
      shuffle, repeat: shuffle records (seeded) / repeat forever.
      seed: seed of shuffles, cloud sampling and augmentation (stateless, keyed by element).
      deterministic: fixed element order despite parallel reading and mapping.
      drop_remainder: drop a last partial batch.
      skip: examples of the (shuffled, repeated) stream to leave out first, with their element
        keys: with deterministic=True, a run resumed at step k with skip = k * batch_size reads
        the batches an uninterrupted run would have read.

    Returns:
      tf.data.Dataset of dicts: image (B, S, S, 3) float32 in [0, 1]; pose (B, 21, 3) and
      cloud (B, N, 3) float32, R_view (X - root) / scale after augmentation (an unlabelled
      example's pose is zeros; a test example without depth points has a zero cloud);
      heatmaps (B, S/4, S/4, 21) float32, 1 at the keypoint; scale (B,) float32 metres;
      visible (B, 21) float32 0/1; labelled (B,) float32 0/1 (always 1 outside 'train');
      has_cloud (B,) float32 0/1 (0 only in 'test'); index (B,) int64, the sample's position in
      the data set's split ('train' and 'val' share the training split's positions).

    Raises:
      DataError: the data is missing or malformed, or no sample is usable.
      ValueError: an argument is out of range.
    """
    path, meta = prepare_cache(config, split)
    return dataset_from_cache(path, meta, config, batch_size=batch_size, augment=augment,
                              shuffle=shuffle, repeat=repeat, seed=seed,
                              deterministic=deterministic, drop_remainder=drop_remainder,
                              skip=skip)
