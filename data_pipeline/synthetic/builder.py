"""Generation of a whole synthetic data set in the RHD or STB format, in parallel, atomically.

Every sample has its own random generator seeded by (seed, format, split, index), so the output
is the same whatever the number of workers. Files are written under `<out_dir>.partial` and the
directory is renamed to `out_dir` only when complete, with a `synthetic.json` that records the
parameters: an interrupted run never leaves something that looks complete, and a repeated call
with the same parameters finds the finished set and does nothing.
"""
import json
import logging
import multiprocessing
import os
import shutil
import time

import cv2
import numpy as np

from common.progress import Progress
from data_pipeline.synthetic import rhd_writer
from data_pipeline.synthetic import stb_writer

FORMATS = ("rhd", "stb")
SPLITS = ("train", "test")
MARKER = "synthetic.json"
# Written first into the .partial directory, so that only our own leftovers get removed.
_IN_PROGRESS = "GENERATION_IN_PROGRESS"
# Bumped whenever the generator's output changes, so an old set is not taken for a new one.
GENERATOR_VERSION = 1
_CHUNK_SIZE = 8

_log = logging.getLogger(__name__)


def sample_rng(seed, fmt, split, index):
    """The random generator of one sample, independent of every other sample's."""
    return np.random.default_rng([seed, FORMATS.index(fmt), SPLITS.index(split), index])


def _render_task(task):
    """Renders and writes one sample (in a worker). Returns (split, index, annotation)."""
    fmt, root, seed, split, index, location = task
    rng = sample_rng(seed, fmt, split, index)
    if fmt == "rhd":
        return split, index, rhd_writer.write_sample(root, split, index, rng)
    sequence, frame = location
    return split, index, stb_writer.write_sample(root, sequence, frame, rng)


def _init_worker():
    cv2.setNumThreads(1)  # the workers already use every core


def _tasks(fmt, root, seed, counts):
    """One task per sample; STB samples carry their (sequence, frame)."""
    tasks = []
    for split in SPLITS:
        layout = stb_writer.frame_layout(split, counts[split])[0] if fmt == "stb" else None
        for index in range(counts[split]):
            location = layout[index] if layout else None
            tasks.append((fmt, root, seed, split, index, location))
    return tasks


def _available_cpus():
    """CPUs this process may run on (the affinity mask, which containers restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_arguments(fmt, num_train, num_test, seed, workers):
    if fmt not in FORMATS:
        raise ValueError(f"generate: fmt must be one of {FORMATS}, got {fmt!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"generate: seed must be a non-negative integer, got {seed!r}")
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"generate: {name} must be a positive integer, got {value!r}")
    if fmt == "stb":
        for split, value in (("train", num_train), ("test", num_test)):
            needed = len(stb_writer.SEQUENCES[split])
            if value < needed:
                raise ValueError(f"generate: num_{split} must be at least {needed} for STB (one "
                                 f"frame per {split} sequence), got {value}")
    if workers is not None and workers < 1:
        raise ValueError(f"generate: workers must be at least 1, got {workers}")


def _existing_parameters(out_dir):
    try:
        with open(os.path.join(out_dir, MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _destination_is_done(out_dir, params):
    """True when out_dir already holds this very set; raises when it holds anything else."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not a directory")
    if not os.path.isdir(out_dir) or not os.listdir(out_dir):
        return False
    existing = _existing_parameters(out_dir)
    if existing == params:
        return True
    what = (f"a synthetic set generated with {existing}" if existing
            else "files that are not a complete synthetic set")
    raise FileExistsError(f"{out_dir} is not empty: it holds {what}; asked for {params}. "
                          f"Remove it or choose another --out.")


def _fresh_partial(out_dir):
    """Creates an empty `<out_dir>.partial`, removing what an interrupted run left there."""
    partial = out_dir + ".partial"
    if os.path.exists(partial):
        if not os.path.exists(os.path.join(partial, _IN_PROGRESS)):
            raise FileExistsError(f"{partial} exists and was not left by this generator; "
                                  f"remove it")
        shutil.rmtree(partial)
    os.makedirs(partial)
    open(os.path.join(partial, _IN_PROGRESS), "w").close()
    return partial


def _render_all(tasks, counts, workers):
    """Runs the tasks (in `workers` processes), logging progress.

    Returns:
      {split: [label of each sample index]}.
    """
    results = {split: [None] * counts[split] for split in SPLITS}
    progress = Progress(len(tasks), "sample", "rendering")

    def collect(done, outcome):
        split, index, label = outcome
        results[split][index] = label
        progress.update(done)

    if workers == 1:
        for done, task in enumerate(tasks, 1):
            collect(done, _render_task(task))
    else:
        # 'spawn': the caller may hold threads (TensorFlow) that a fork would copy half-way.
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker) as pool:
            for done, outcome in enumerate(
                    pool.imap_unordered(_render_task, tasks, chunksize=_CHUNK_SIZE), 1):
                collect(done, outcome)
    return results


def _write_labels(fmt, root, counts, results):
    """The annotation files: RHD's pickles, or STB's .mat per sequence."""
    for split in SPLITS:
        if fmt == "rhd":
            rhd_writer.write_annotations(root, split, results[split])
            continue
        _, frames = stb_writer.frame_layout(split, counts[split])
        first = 0  # samples are numbered sequence by sequence
        for sequence, n in frames.items():
            stb_writer.write_labels(root, sequence, results[split][first:first + n])
            first += n


def generate(fmt, out_dir, num_train, num_test, seed, workers=None):
    """Generates a synthetic data set in the RHD or STB format (SPEC 5).

    Args:
      fmt: 'rhd' or 'stb'.
      out_dir: the data set root to create; it must not exist, be empty, or hold a complete set
        generated with the same parameters (then nothing is done).
      num_train, num_test: numbers of training and test samples (STB: at least one per
        sequence, i.e. 10 and 2).
      seed: the data set's seed, a non-negative integer.
      workers: processes to use; None: one per available CPU.

    Raises:
      ValueError: bad arguments.
      FileExistsError: out_dir holds something else.
    """
    _check_arguments(fmt, num_train, num_test, seed, workers)
    params = {"format": fmt, "num_train": int(num_train), "num_test": int(num_test),
              "seed": int(seed), "generator_version": GENERATOR_VERSION}
    out_dir = os.path.abspath(out_dir)
    if _destination_is_done(out_dir, params):
        _log.info("%s already holds the synthetic %s set with these parameters", out_dir, fmt)
        return
    partial = _fresh_partial(out_dir)
    counts = {"train": int(num_train), "test": int(num_test)}
    workers = workers or _available_cpus()
    start = time.time()
    _log.info("generating %d + %d synthetic %s samples into %s with %d worker(s)",
              num_train, num_test, fmt, out_dir, workers)
    (rhd_writer if fmt == "rhd" else stb_writer).make_dirs(partial)
    results = _render_all(_tasks(fmt, partial, int(seed), counts), counts, workers)
    _write_labels(fmt, partial, counts, results)
    with open(os.path.join(partial, MARKER), "w") as f:
        json.dump(params, f, indent=1, sort_keys=True)
    os.remove(os.path.join(partial, _IN_PROGRESS))
    if os.path.isdir(out_dir):
        os.rmdir(out_dir)  # empty, checked above
    os.rename(partial, out_dir)
    _log.info("wrote %s in %.1f s", out_dir, time.time() - start)
