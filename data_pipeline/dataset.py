"""The tf.data pipeline: the batched dataset of one split, streamed from the cache.

The cache (data_pipeline/cache.py) holds pre-processed crops and cloud candidates; here records
are decoded, a cloud is sampled, and augmentation and heatmaps are computed in the parallel map,
then examples are shuffled, batched and prefetched. The splits are data_pipeline/splits.py's.
"""
import dataclasses
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from data_pipeline import augment as augment_lib
from data_pipeline import cache as cache_lib
from data_pipeline.config import DataConfig

SHUFFLE_BUFFER = 1024  # serialized records (a 256-px PNG crop is ~0.1 MB)
# The optional entries of an example; a pipeline computes only those its consumer reads.
MODALITIES = ("cloud", "heatmaps")


def _check_modalities(modalities):
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"dataset: modalities must be among {MODALITIES}, got {unknown}")


def sample_cloud(cloud, num_points, seed):
    """Draws num_points of the (M, 3) candidates: without replacement when M >= num_points,
    else with replacement (paper, section 4); zeros when M = 0 (a test sample without depth
    points). seed: (2,) stateless seed."""
    count = tf.shape(cloud)[0]

    def without_replacement():
        # The num_points smallest of M uniform keys, ascending (ties: lower index first), as
        # argsort(keys)[:num_points] would give them, without sorting all M (~2x cheaper at
        # M = 1,024, N = 64).
        keys = tf.random.stateless_uniform([count], seed)
        return tf.gather(cloud, tf.math.top_k(-keys, k=num_points).indices)

    def with_replacement():
        picks = tf.random.stateless_uniform([num_points], seed, 0, tf.maximum(count, 1),
                                            dtype=tf.int32)
        return tf.gather(cloud, picks)

    def empty():
        return tf.zeros([num_points, 3], cloud.dtype)

    picked = tf.case([(count >= num_points, without_replacement), (count > 0, with_replacement)],
                     default=empty)
    return tf.ensure_shape(picked, [num_points, 3])


def model_inputs(features, key, *, image_size, num_points, augment, return_params=False,
                 modalities=MODALITIES):
    """Parsed record -> the model's example (float32 image in [0, 1], heatmaps, sampled cloud).

    Args:
      features: from `parse_record`.
      key: (2,) int64 stateless seed of this element (seed, element counter).
      image_size: crop side S.
      num_points: cloud size N.
      augment: apply a random augmentation (training only).
      return_params: also return the augmentation's parameters (None without augmentation).
      modalities: the optional entries to compute, among MODALITIES. The others are left out,
        not computed: the rest of the example is the same (the cloud's draw and the
        augmentation have separate seeds).

    Returns:
      dict: image (S, S, 3), pose (21, 3), scale (), visible (21,), labelled () and has_cloud ()
      float32 0/1, index () int64, and as asked cloud (N, 3) and heatmaps (S/4, S/4, 21); with
      return_params, (dict, params).
    """
    seeds = tf.random.experimental.stateless_split(key, num=2)
    image = tf.image.convert_image_dtype(features["image"], tf.float32)
    keypoints_2d, pose = features["keypoints_2d"], features["pose"]
    cloud = None
    if "cloud" in modalities:
        cloud = sample_cloud(features["cloud"], num_points, seeds[0])
    params = None
    if augment:
        params = augment_lib.sample_params(seeds[1], image_size)
        image, keypoints_2d, pose, cloud = augment_lib.augment(image, keypoints_2d, pose, cloud,
                                                               params)
    example = {
        "image": image, "pose": pose,
        "scale": features["scale"], "visible": features["visible"],
        "labelled": tf.cast(features["labelled"], tf.float32),
        "has_cloud": tf.cast(tf.shape(features["cloud"])[0] > 0, tf.float32),
        "index": features["index"],
    }
    if cloud is not None:
        example["cloud"] = cloud
    if "heatmaps" in modalities:
        example["heatmaps"] = augment_lib.heatmaps(keypoints_2d, image_size)
    return (example, params) if return_params else example


def dataset_size(config: DataConfig, split: str) -> int:
    """Number of examples build_dataset yields per epoch (the split's samples minus skipped
    ones)."""
    return cache_lib.prepare_cache(config, split)[1]["num_examples"]


def _records(path: str, meta: dict, *, shuffle: bool, seed: int, deterministic: bool,
             labelled: Optional[bool] = None) -> tf.data.Dataset:
    """The serialized records of a cache directory: in index order, or shuffled (shards, then
    a buffer of SHUFFLE_BUFFER records); only the labelled (True) or unlabelled (False) ones
    when `labelled` is given."""
    files = [os.path.join(path, shard) for shard in meta["shards"]]
    if shuffle:
        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        ds = ds.shuffle(min(SHUFFLE_BUFFER, meta["num_examples"]), seed=seed)
    else:
        ds = tf.data.TFRecordDataset(files)
    if labelled is not None:
        ds = ds.filter(lambda record: tf.equal(tf.io.parse_single_example(
            record, {"labelled": cache_lib.FEATURES["labelled"]})["labelled"] > 0, labelled))
    return ds


def _finish(ds: tf.data.Dataset, deterministic: bool) -> tf.data.Dataset:
    """The pipeline's options and prefetching, applied last."""
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def dataset_from_cache(path: str, meta: dict, config: DataConfig, *, batch_size: int = 32,
                       augment: bool = False, shuffle: bool = False, repeat: bool = False,
                       seed: int = 0, deterministic: bool = False,
                       drop_remainder: bool = False, skip: int = 0,
                       modalities=MODALITIES) -> tf.data.Dataset:
    """The batched dataset over one cache directory of `config` (arguments as in
    `build_dataset`)."""
    _check_modalities(modalities)
    if batch_size < 1:
        raise ValueError(f"dataset_from_cache: batch_size must be positive, got {batch_size}")
    if skip < 0:
        raise ValueError(f"dataset_from_cache: skip must be >= 0, got {skip}")
    image_size = meta["image_size"]
    ds = _records(path, meta, shuffle=shuffle, seed=seed, deterministic=deterministic,
                  labelled=True if config.labelled_only else None)
    if repeat:
        ds = ds.repeat()
    ds = ds.enumerate()  # element counter: the stateless key, so epochs differ but reproducibly
    if skip:  # records only, before decoding: cheap
        ds = ds.skip(skip)

    def to_example(counter, record):
        key = tf.stack([tf.constant(seed, tf.int64), counter])
        features = cache_lib.parse_record(record, image_size)
        return model_inputs(features, key, image_size=image_size,
                            num_points=config.num_points, augment=augment,
                            modalities=modalities)

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return _finish(ds, deterministic)


def _has_unlabelled_records(path: str, meta: dict) -> bool:
    """Whether a cache holds an unlabelled record. The writer puts labelled records first
    (cache.write_shards), so the last shard has one if any shard has."""
    last = tf.data.TFRecordDataset(os.path.join(path, meta["shards"][-1])).map(
        lambda record: tf.io.parse_single_example(
            record, {"labelled": cache_lib.FEATURES["labelled"]})["labelled"])
    return any(int(flag) == 0 for flag in last.as_numpy_iterator())


def paired_order(labelled: int, unlabelled: int) -> np.ndarray:
    """The order of a paired batch's examples: (labelled + unlabelled,) positions into the
    labelled batch followed by the unlabelled one, interleaved evenly (l0, u0, l1, u1, ... for
    equal sizes), so that the contiguous per-replica slices of a distributed batch each get
    their share of both."""
    slots = np.concatenate([(np.arange(labelled) + 0.5) / labelled,
                            (np.arange(unlabelled) + 0.5) / unlabelled])
    return np.argsort(slots, kind="stable")


def paired_dataset_from_cache(path: str, meta: dict, config: DataConfig, *,
                              batch_size: int = 32, augment: bool = False,
                              shuffle: bool = False, repeat: bool = False, seed: int = 0,
                              deterministic: bool = False, drop_remainder: bool = False,
                              skip: int = 0, modalities=MODALITIES) -> tf.data.Dataset:
    """Weak supervision in paired batches (config.unlabelled_batch_size = U > 0): each batch is
    a batch of B = batch_size labelled examples plus U unlabelled ones, interleaved
    (`paired_order`).

    The labelled stream is exactly the labelled-only baseline's (dataset_from_cache with
    labelled_only, same seed): at every step the weak run sees the labelled examples its
    baseline sees. The unlabelled stream is shuffled, repeated and augmented alike, with element
    keys of its own. Arguments as in `build_dataset`; repeat and drop_remainder are required,
    since the two streams have different lengths and the batch's layout is fixed. skip counts
    labelled examples (k * B after k steps) and must be a multiple of B; the unlabelled stream
    then skips k * U, so a resumed run reads what an uninterrupted one reads.

    Returns:
      batches as `build_dataset`'s, of B + U examples; 'labelled' is 1 for B of them.
    """
    unlabelled = config.unlabelled_batch_size
    if unlabelled < 1:
        raise ValueError("paired_dataset_from_cache: config.unlabelled_batch_size must be "
                         f"positive, got {unlabelled}")
    if not (repeat and drop_remainder):
        raise ValueError("paired_dataset_from_cache: needs repeat=True and drop_remainder=True "
                         f"(a training stream), got repeat={repeat}, "
                         f"drop_remainder={drop_remainder}")
    if batch_size < 1 or skip < 0 or skip % batch_size:
        raise ValueError(f"paired_dataset_from_cache: skip must be a non-negative multiple of "
                         f"batch_size={batch_size} (whole steps), got {skip}")
    if not _has_unlabelled_records(path, meta):
        raise ValueError(f"paired_dataset_from_cache: {path} holds no unlabelled example, so "
                         "unlabelled_batch_size must be 0 (lower the labelled fraction, or "
                         "check the skipped samples in its meta.json)")
    labelled_ds = dataset_from_cache(
        path, meta, dataclasses.replace(config, labelled_only=True, unlabelled_batch_size=0),
        batch_size=batch_size, augment=augment, shuffle=shuffle, repeat=True, seed=seed,
        deterministic=deterministic, drop_remainder=True, skip=skip, modalities=modalities)

    ds = _records(path, meta, shuffle=shuffle, seed=seed, deterministic=deterministic,
                  labelled=False)
    ds = ds.repeat().enumerate()
    if skip:
        ds = ds.skip(skip // batch_size * unlabelled)
    image_size = meta["image_size"]

    def to_example(counter, record):
        # Keys apart from the labelled stream's (seed, counter).
        key = tf.random.experimental.stateless_fold_in(
            tf.stack([tf.constant(seed, tf.int64), counter]), 1)
        return model_inputs(cache_lib.parse_record(record, image_size), key,
                            image_size=image_size, num_points=config.num_points,
                            augment=augment, modalities=modalities)

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    unlabelled_ds = ds.batch(unlabelled, drop_remainder=True)
    order = tf.constant(paired_order(batch_size, unlabelled))

    def pair(lab, unl):
        return {k: tf.gather(tf.concat([lab[k], unl[k]], axis=0), order) for k in lab}

    return _finish(tf.data.Dataset.zip((labelled_ds, unlabelled_ds)).map(pair), deterministic)


def build_dataset(config: DataConfig, split: str, *, batch_size: int = 32,
                  augment: bool = False, shuffle: bool = False, repeat: bool = False,
                  seed: int = 0, deterministic: bool = False,
                  drop_remainder: bool = False, skip: int = 0,
                  modalities=MODALITIES) -> tf.data.Dataset:
    """The batched, prefetched dataset of one data set split (the pipeline's entry point).

    Pre-processes the split into the on-disk cache on first use (module doc), then streams it.

    Args:
      config: the data set, its directory and pre-processing (DataConfig); its labelled
        fraction, labelled_only and unlabelled_batch_size apply to 'train' (with
        unlabelled_batch_size U > 0, batches hold B + U examples: paired_dataset_from_cache).
      split: 'train', 'val' (both from the training split) or 'test' (module doc).
      batch_size: B.
      augment: random scale, translation, rotation and hue (training only, SPEC 5).
      shuffle, repeat: shuffle records (seeded) / repeat forever.
      seed: seed of shuffles, cloud sampling and augmentation (stateless, keyed by element).
      deterministic: fixed element order despite parallel reading and mapping.
      drop_remainder: drop a last partial batch.
      skip: examples of the (shuffled, repeated) stream to leave out first, with their element
        keys: with deterministic=True, a run resumed at step k with skip = k * batch_size reads
        the batches an uninterrupted run would have read (paired batches: k * batch_size too,
        see paired_dataset_from_cache).
      modalities: the optional entries computed, among MODALITIES ('cloud', 'heatmaps'); a
        consumer that reads neither saves their cost (model.strategies.batch_modalities).

    Returns:
      tf.data.Dataset of dicts: image (B, S, S, 3) float32 in [0, 1]; pose (B, 21, 3) and
      cloud (B, N, 3, if asked) float32, R_view (X - root) / scale after augmentation (an unlabelled
      example's pose is zeros; a test example without depth points has a zero cloud);
      heatmaps (B, S/4, S/4, 21, if asked) float32, 1 at the keypoint; scale (B,) float32 metres;
      visible (B, 21) float32 0/1; labelled (B,) float32 0/1 (always 1 outside 'train');
      has_cloud (B,) float32 0/1 (0 only in 'test'); index (B,) int64, the sample's position in
      the data set's split ('train' and 'val' share the training split's positions).

    Raises:
      DataError: the data is missing or malformed, or no sample is usable.
      ValueError: an argument is out of range.
    """
    path, meta = cache_lib.prepare_cache(config, split)
    make = (paired_dataset_from_cache if split == "train" and config.unlabelled_batch_size
            else dataset_from_cache)
    return make(path, meta, config, batch_size=batch_size, augment=augment, shuffle=shuffle,
                repeat=repeat, seed=seed, deterministic=deterministic,
                drop_remainder=drop_remainder, skip=skip, modalities=modalities)
