"""The outputs of an evaluation: metrics.json, predictions.npz, pck.png and the paper's figures.

Used by evaluate.py; takes plain arguments (no flags) so that it can be called from anywhere.
Every file is written under a temporary name in its directory and renamed, so a failed run never
leaves a half-written file in place of a good one.
"""
import dataclasses
import json
import os

import numpy as np

from evaluation import figures, protocol
from evaluation.files import atomic_write

METRICS_FILE = "metrics.json"
PCK_FILE = "pck.png"
PREDICTIONS_FILE = "predictions.npz"
FIG3_FILE = "fig3_samples.png"
FIG4_FILE = "fig4_interpolation.png"


def write_metrics(metrics: dict, path: str) -> str:
    """Writes `metrics` as indented JSON to `path`, atomically."""
    text = json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_predictions(predictions: dict, path: str) -> str:
    """Writes the arrays of `predictions` as an .npz at `path`, atomically."""
    return atomic_write(path, lambda f: np.savez(f, **predictions))


def _some(indices, count: int = 5) -> str:
    """'3, 7, 9, ...': the first `count` of a sorted index array, for messages."""
    shown = ", ".join(str(int(i)) for i in indices[:count])
    return shown + (", ..." if len(indices) > count else "")


def load_predictions(path: str):
    """Reads and checks a predictions .npz.

    Returns:
      (pred (M, 21, 3), gt (M, 21, 3), visible (M, 21) or None, index (M,) or None).

    Raises:
      FileNotFoundError: no such file.
      ValueError: not an .npz, a key missing, a shape wrong (the message names the key), an
        'index' holding a sample more than once (the message names the indices), or a
        pose not finite (the message names the sample: its row and, when the file has an
        'index' key as evaluate.py writes, its index in the data set's split).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable .npz ({e})") from e
    for key in ("pred", "gt"):
        if key not in arrays:
            raise ValueError(f"{path} has no key '{key}' (keys: "
                             f"{sorted(arrays)}); expected pred and gt (M, 21, 3) in mm")
    pred, gt = arrays["pred"], arrays["gt"]
    shape = (protocol.NUM_KEYPOINTS, 3)
    for key, value in (("pred", pred), ("gt", gt)):
        if value.ndim != 3 or value.shape[1:] != shape:
            raise ValueError(f"{path}: key '{key}' has shape {value.shape}, "
                             f"expected (M, {shape[0]}, 3)")
    if pred.shape != gt.shape:
        raise ValueError(f"{path}: key 'pred' has shape {pred.shape} but key "
                         f"'gt' has {gt.shape}")
    visible = arrays.get("visible")
    if visible is not None and visible.shape != pred.shape[:2]:
        raise ValueError(f"{path}: key 'visible' has shape {visible.shape}, "
                         f"expected {pred.shape[:2]}")
    index = arrays.get("index")
    if index is not None and index.shape != pred.shape[:1]:
        raise ValueError(f"{path}: key 'index' has shape {index.shape}, "
                         f"expected {pred.shape[:1]}")
    if index is not None:
        values, counts = np.unique(index, return_counts=True)
        duplicated = values[counts > 1]
        if len(duplicated):
            raise ValueError(f"{path}: key 'index' holds {len(duplicated)} samples more than "
                             f"once (indices {_some(duplicated)}); each sample must be scored "
                             f"once")
    for key, value in (("pred", pred), ("gt", gt)):
        bad = ~np.all(np.isfinite(value), axis=-1)  # (M, 21)
        if bad.any():
            row, keypoint = (int(i) for i in np.argwhere(bad)[0])
            name = f"sample {row}" + ("" if index is None else f" (index {int(index[row])})")
            raise ValueError(
                f"{path}: key '{key}' of {name} is not finite at keypoint "
                f"{keypoint} ({value[row, keypoint].tolist()}); {int(bad.any(axis=1).sum())} "
                f"of {value.shape[0]} samples have non-finite values")
    return pred, gt, visible, index


def write_metrics_and_curve(metrics: dict, out_dir: str, label: str) -> dict:
    """Writes metrics.json and pck.png into out_dir; returns {name: path}."""
    paths = {"metrics": write_metrics(metrics, os.path.join(out_dir, METRICS_FILE))}
    paths["pck"] = figures.plot_pck(
        {label: (metrics["pck_thresholds_mm"], metrics["pck"])}, os.path.join(out_dir, PCK_FILE))
    return paths


def score_predictions(path: str, out_dir: str):
    """Mode 1: scores a predictions .npz; writes metrics.json and pck.png into out_dir.

    Returns:
      (metrics dict, {name: written path}).
    """
    pred, gt, visible, index = load_predictions(path)
    try:
        metrics = protocol.evaluate_pose(pred, gt, visible)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    # Without an 'index' key every row is taken as a distinct sample, which nothing can check.
    metrics.update(predictions=os.path.abspath(path), num_samples=int(pred.shape[0]),
                   indices_checked=index is not None)
    label = os.path.splitext(os.path.basename(path))[0]
    return metrics, write_metrics_and_curve(metrics, out_dir, label)


def _first_samples(dataset, count: int) -> dict:
    """The first `count` samples of a batched dataset that have a depth cloud (has_cloud, where
    the batches say), as numpy; fewer if the dataset is shorter, the first ones regardless when
    none has a cloud (a test sample may lack one)."""
    with_cloud, first, have, first_have = [], [], 0, 0
    for batch in dataset:
        batch = {k: v.numpy() for k, v in batch.items()}
        if first_have < count:
            first.append(batch)
            first_have += batch["image"].shape[0]
        keep = batch["has_cloud"] > 0 if "has_cloud" in batch else slice(None)
        with_cloud.append({k: v[keep] for k, v in batch.items()})
        have += with_cloud[-1]["image"].shape[0]
        if have >= count:
            break
    parts = with_cloud if have else first
    return {k: np.concatenate([p[k] for p in parts])[:count] for k in parts[0]}


def model_figures(model, dataset, out_dir: str, num_samples: int, steps: int) -> dict:
    """Writes the paper's Fig. 3 and Fig. 4 for `model` on the first samples of `dataset`.

    Fig. 3 is drawn in mm (everything times the ground-truth scale), Fig. 4 in normalised units
    (an interpolated code has no ground truth scale). Fig. 4 interpolates between the first
    sample and the one among the first few whose ground-truth pose differs most from it.

    Returns:
      {name: written path}; fig4 is left out when the dataset has a single sample.
    """
    from evaluation import inference  # pylint: disable=import-outside-toplevel

    samples = _first_samples(dataset, max(num_samples, 8))
    decoded = inference.decode_from_rgb(model, samples["image"])
    k = min(num_samples, samples["image"].shape[0])
    mm = samples["scale"][:k, None, None] * inference.MM_PER_METRE
    paths = {"fig3": figures.plot_samples(
        samples["image"][:k], samples["pose"][:k] * mm, decoded["pose"][:k] * mm,
        samples["cloud"][:k] * mm, decoded["cloud"][:k] * mm if "cloud" in decoded else None,
        os.path.join(out_dir, FIG3_FILE))}
    if samples["image"].shape[0] >= 2:
        distance = np.linalg.norm(samples["pose"] - samples["pose"][:1], axis=-1).mean(axis=-1)
        other = int(np.argmax(distance))
        z = inference.interpolate_latents(decoded["z"][0], decoded["z"][other], steps)
        path_decoded = inference.decode_latents(model, z)
        paths["fig4"] = figures.plot_interpolation(path_decoded["pose"], path_decoded.get("cloud"),
                                                   os.path.join(out_dir, FIG4_FILE))
    return paths


def evaluation_settings(run, ckpt: str, *, data=None, data_dir=None, split: str = "test",
                        out_dir=None, cache_dir=None):
    """Which data a restored run is evaluated on, and where the outputs go.

    Args:
      run: the run's RunConfig (model/run_config.py); its data section gives the data set, its
        directory and the pre-processing.
      ckpt: the model_dir or checkpoint prefix given to evaluate.py.
      data: data set to evaluate on; None keeps the run's.
      data_dir: its directory; None keeps the run's when the data set is the run's, else the
        data set's default place (data_pipeline.config.default_data_dir).
      split: 'train', 'val' or 'test'.
      out_dir: output directory; None means <model_dir>/eval_<split>.
      cache_dir: root of the pre-processed cache; None keeps the run's.

    Returns:
      (DataConfig, output directory). Pre-processing (image size, viewpoint correction, cloud
      points) always follows the run, since the model was trained on it; every sample is
      labelled, as evaluation needs, so a weak run's unlabelled batch goes too.
    """
    settings = run.data
    if data is not None and data != settings.data:
        settings = dataclasses.replace(settings, data=data, data_dir=None)
    if out_dir is None:
        model_dir = ckpt if os.path.isdir(ckpt) else (os.path.dirname(ckpt) or ".")
        out_dir = os.path.join(model_dir, f"eval_{split}")
    return dataclasses.replace(
        settings, data_dir=data_dir or settings.data_dir, cache_dir=cache_dir or settings.cache_dir,
        labelled_fraction=1.0, labelled_only=False, unlabelled_batch_size=0), out_dir


def require_every_test_sample(meta: dict, split: str, cache: str) -> None:
    """SPEC 6 scores every test sample: refuses a test-split cache that left any out.

    Args:
      meta: the cache's meta.json (data_pipeline.cache.write_shards): num_raw samples in the
        split, num_examples kept, skipped [[index, message], ...].
      split: the evaluated split; other splits may skip unusable samples.
      cache: the cache directory, for the message.

    Raises:
      ValueError: naming the count and the first samples left out, with their reasons.
    """
    if split != "test" or meta["num_examples"] >= meta["num_raw"]:
        return
    first = "; ".join(f"sample {index}: {message}" for index, message in meta["skipped"][:3])
    raise ValueError(
        f"the test split has {meta['num_raw']} samples but only {meta['num_examples']} could be "
        f"pre-processed ({os.path.join(cache, 'meta.json')}); every test sample must be scored, "
        f"so fix or restore the files of the {meta['num_skipped']} left out (first: {first})")


def check_scored_indices(index, split_size: int, *, data: str, split: str,
                         partial: bool = False) -> bool:
    """Checks which samples were scored by their indices, not by their count.

    A test split's indices are 0 .. split_size - 1 (data_pipeline.dataset.split_indices), and
    SPEC 6 scores each of them exactly once; counting alone would pass a split scored with one
    sample twice and another not at all.

    Args:
      index: (M,) int sample indices of the scored rows, in the data set's split numbering.
      split_size: the number of samples in the split.
      data, split: named in the message.
      partial: only part of the split was meant to be scored (--max_batches), so missing
        samples are allowed.

    Returns:
      complete: every sample of the split was scored, each once.

    Raises:
      ValueError: an index scored more than once (any split); in a test split, an index outside
        0 .. split_size - 1, or (unless partial) one not scored. The message gives the counts
        and the first few indices of each kind.
    """
    index = np.asarray(index, np.int64)
    values, counts = np.unique(index, return_counts=True)
    duplicated = values[counts > 1]
    problems = []
    if len(duplicated):
        problems.append(f"{len(duplicated)} scored more than once (indices {_some(duplicated)})")
    if split == "test":
        outside = values[(values < 0) | (values >= split_size)]
        missing = np.setdiff1d(np.arange(split_size), values)
        if len(outside):
            problems.append(f"{len(outside)} outside 0..{split_size - 1} "
                            f"(indices {_some(outside)})")
        if len(missing) and not partial:
            problems.append(f"{len(missing)} not scored (indices {_some(missing)})")
    if problems:
        raise ValueError(f"scored {len(index)} of the {split_size} samples of the {data} {split} "
                         f"split, but {'; '.join(problems)}; every sample must be scored once")
    return len(values) == len(index) == split_size


def evaluate_restored(model, strategy: str, checkpoint: str, dataset, *, data: str,
                      split: str, out_dir: str, split_size: int, max_batches=None,
                      num_figure_samples: int = 4, interpolation_steps: int = 8):
    """Mode 2 once the model and the dataset exist: predictions, metrics and every figure.

    Args:
      model: restored model (predict_pose, encode_rgb, decode; see evaluation.inference).
      strategy: the run's strategy (recorded).
      checkpoint: the restored checkpoint path (recorded).
      dataset: batched evaluation dataset (data_pipeline.dataset.build_dataset).
      data, split: recorded in metrics.json.
      out_dir: output directory.
      split_size: the number of samples in the split (recorded beside the number scored).
      max_batches: stop after this many batches (None: all).

    Returns:
      (metrics dict, {name: written path}); metrics has num_samples (scored), split_size and
      complete (whether every sample of the split was scored).

    Raises:
      ValueError: a sample was scored twice, or (without max_batches) a test split's scored
        indices are not each of its indices once (`check_scored_indices`).
    """
    from evaluation import inference  # pylint: disable=import-outside-toplevel

    predictions = inference.predict_dataset(model, dataset, max_batches=max_batches)
    num_samples = int(predictions["pred_mm"].shape[0])
    complete = check_scored_indices(predictions["index"], split_size, data=data, split=split,
                                    partial=max_batches is not None)
    metrics = protocol.evaluate_pose(predictions["pred_mm"], predictions["gt_mm"],
                                     predictions["visible"])
    metrics.update(strategy=strategy, data=data, split=split, checkpoint=checkpoint,
                   num_samples=num_samples, split_size=int(split_size), complete=complete)
    paths = {"predictions": write_predictions(
        {"pred": predictions["pred_mm"], "gt": predictions["gt_mm"],
         "visible": predictions["visible"], "index": predictions["index"]},
        os.path.join(out_dir, PREDICTIONS_FILE))}
    paths.update(write_metrics_and_curve(metrics, out_dir, f"{strategy} ({data} {split})"))
    paths.update(model_figures(model, dataset, out_dir, num_figure_samples, interpolation_steps))
    return metrics, paths


