"""The pre-processed data cache: TFRecord shards of one data set split on disk, and meta.json.

Layout (one directory per data set, split and pre-processing setting):

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
message says to delete the directory. Records hold the raw crop (uint8), the float16 cloud
candidates, float32 keypoints and whether the example is labelled (`serialize`).

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
from typing import Optional

import numpy as np
import tensorflow as tf

from common.progress import Progress
from data_pipeline import preprocess as preprocess_lib
from data_pipeline import splits
from data_pipeline.config import SPLITS, DataConfig
from data_pipeline.sample import NUM_KEYPOINTS, DataError

# 2: validation carve-out, labelled flag per record, every test sample kept. 3: raw crops.
CACHE_VERSION = 3
SAMPLES_PER_SHARD = 512
_MAX_REPORTED_SKIPS = 10
_MIN_POOL_SAMPLES = 64


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
                "validation": [config.validation_fraction, splits.VALIDATION_SEED,
                               splits.STB_VALIDATION_SEQUENCE],
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
    """One pre-processed example as a serialized tf.train.Example (raw uint8 RGB crop, float16
    cloud). The crop is stored raw, not as PNG: decoding a PNG per example per step was about a
    quarter of the training pipeline's CPU time, which on a few cores the step pays for."""
    return tf.train.Example(features=tf.train.Features(feature={
        "image": _bytes(np.ascontiguousarray(example.image, np.uint8).tobytes()),
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


FEATURES = {
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
    features = tf.io.parse_single_example(record, FEATURES)
    image = tf.io.decode_raw(features["image"], tf.uint8)
    features["image"] = tf.reshape(image, [image_size, image_size, 3])
    cloud = tf.io.decode_raw(features["cloud"], tf.float16)
    features["cloud"] = tf.cast(tf.reshape(cloud, [-1, 3]), tf.float32)
    return features


# ----------------------------------------------------------------------------------------------
# Writing and opening the cache.

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
    progress = Progress(num_raw, "sample", "pre-processing")

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
                        progress.message(f"  skipping sample {index}: {error}")
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
                progress.update(done)
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

    'train' and 'val' read the data set's training split, 'test' its test split
    (data_pipeline/splits.py); the labelled fraction applies to 'train' only.

    Raises:
      DataError: the data is missing or malformed, no sample is usable, or the cache directory
        exists but is damaged (`read_meta`).
    """
    splits.check_choice("prepare_cache", "split", split, SPLITS)
    reader_split = "test" if split == "test" else "train"
    data_dir = config.resolved_data_dir
    reader = None
    if not os.path.isdir(data_dir) or not os.listdir(data_dir):  # generates synthetic, or raises
        reader = splits.open_reader(config.data, reader_split, data_dir)
    path = cache_path(config, split)
    # A complete cache appears by a rename (write_shards), so an existing directory is checked
    # by read_meta, never written over.
    if not os.path.exists(path):
        if reader is None:
            reader = splits.open_reader(config.data, reader_split, data_dir)
        indices = splits.split_indices(config, split, reader)
        num_labelled = (int(round(config.labelled_fraction * len(indices))) if split == "train"
                        else len(indices))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_shards(reader, path, image_size=config.image_size,
                     view_correction=config.view_correction, indices=indices,
                     num_labelled=num_labelled, keep_incomplete=split == "test",
                     name=f"{config.data} {split}")
    return path, read_meta(path)
