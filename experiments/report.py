"""Tables and figures of the finished runs: results/claims.md, table1.md, view.md, weak.md, stb.md,
occlusion.md, summary.json, runs.json, pck_strategies.png, weak.png, fig3.png, fig4.png.

Everything here is rebuilt from the per-run records (runs/<name>.json) after each finished run,
so partial results are complete files at any moment.
"""
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from evaluation import figures, protocol
from evaluation.figures import plt  # pyplot with the file-only backend figures chose
from evaluation.files import atomic_write
from evaluation.report import write_metrics
from experiments import claims, suites


# Bins of results/occlusion.md: keypoints of a test sample hidden by the depth test (the
# synthetic set's visibility), inclusive ranges; about a quarter, a half and a quarter of the
# synthetic test split.
OCCLUSION_BINS = ((0, 5), (6, 9), (10, 21))


_VALIDATION_LINE = re.compile(r"^\s*step (\d+): validation EPE ([0-9.]+) mm", re.MULTILINE)


def validation_curve(log_text):
    """[[step, validation EPE in mm], ...] by step from train.py's output (a run's log.txt,
    appended over resumed attempts: the last line of a step counts)."""
    curve = {int(step): float(epe) for step, epe in _VALIDATION_LINE.findall(log_text)}
    return [[step, curve[step]] for step in sorted(curve)]


def load_records(out_dir: str) -> Dict[str, dict]:
    """run name -> record, for every finished run in out_dir/runs."""
    records = {}
    runs_dir = os.path.join(out_dir, "runs")
    if not os.path.isdir(runs_dir):
        return records
    for name in sorted(os.listdir(runs_dir)):
        if name.endswith(".json"):
            with open(os.path.join(runs_dir, name), encoding="utf-8") as f:
                record = json.load(f)
            records[record["name"]] = record
    return records


def _row_stats(row: suites.Row, records: Dict[str, dict]) -> Optional[dict]:
    """Statistics of a row over every finished seed of it."""
    done = suites.row_records(row, records)
    if not done:
        return None
    epe = np.array([r["metrics"]["epe_mean_mm"] for r in done])

    def mean(key):
        return float(np.mean([r["metrics"][key] for r in done]))

    return {"name": row.name, "strategy": row.strategy, "decoders": list(row.decoders),
            "view_correction": row.view_correction, "labelled_fraction": row.labelled_fraction,
            "seeds": [r["seed"] for r in done], "steps": int(min(r["steps"] for r in done)),
            "epe_mean_mm": float(epe.mean()),
            "epe_std_mm": float(epe.std(ddof=1)) if len(epe) > 1 else 0.0,
            # The mean of the seeds' medians, not the median of the pooled per-sample errors.
            "epe_median_seed_mean_mm": mean("epe_median_mm"), "auc_0_50": mean("auc_0_50"),
            "auc_20_50": mean("auc_20_50"),
            "train_minutes": float(np.mean([r["train_seconds"] for r in done]) / 60.0),
            "pck_thresholds_mm": done[0]["metrics"]["pck_thresholds_mm"],
            "pck": np.mean([r["metrics"]["pck"] for r in done], axis=0).tolist(),
            "paper_epe_mm": row.paper_epe_mm}


def _epe_cell(stats: dict) -> str:
    if len(stats["seeds"]) > 1:
        return f"{stats['epe_mean_mm']:.2f} +- {stats['epe_std_mm']:.2f}"
    return f"{stats['epe_mean_mm']:.2f}"


# Said in every table's caption: how a multi-seed row's cells are made.
SEED_CAPTION = ("EPE mean is the mean over seeds +- their standard deviation; EPE median, AUC and "
                "train minutes are means over seeds (a row's median is the mean of its seeds' "
                "medians, not the median of the pooled errors).")


def _table(rows: Sequence[dict], mean_pose: Optional[dict], title: str, caption: str,
           paper: str = "RHD") -> str:
    lines = [f"# {title}", "", caption + " " + SEED_CAPTION, "",
             "| row | seeds | steps | EPE mean (mm) | EPE median (mm, mean over seeds) | "
             f"AUC 0-50 | AUC 20-50 | train min / run | paper EPE ({paper}, mm) |",
             "|---|---|---|---|---|---|---|---|---|"]
    if mean_pose is not None:
        lines.append(f"| training mean pose | - | - | {mean_pose['epe_mean_mm']:.2f} | "
                     f"{mean_pose['epe_median_mm']:.2f} | {mean_pose['auc_0_50']:.3f} | "
                     f"{mean_pose['auc_20_50']:.3f} | - | - |")
    for s in rows:
        paper = "-" if s["paper_epe_mm"] is None else f"{s['paper_epe_mm']:.2f}"
        lines.append(f"| {s['name']} | {len(s['seeds'])} | {s['steps']} | {_epe_cell(s)} | "
                     f"{s['epe_median_seed_mean_mm']:.2f} | {s['auc_0_50']:.3f} | {s['auc_20_50']:.3f} | "
                     f"{s['train_minutes']:.1f} | {paper} |")
    return "\n".join(lines) + "\n"


def write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _copy(src: str, dst: str) -> None:
    with open(src, "rb") as f:
        data = f.read()
    atomic_write(dst, lambda out: out.write(data))


def write_all(out_dir: str, mean_pose: Optional[dict], setting: str,
              stb_mean_pose: Optional[dict] = None, stb_setting: Optional[str] = None
              ) -> List[str]:
    """Rebuilds every aggregate file from the finished runs; returns the paths written.

    Args:
      out_dir: the results directory (its runs/ holds the records).
      mean_pose: metrics of the training mean pose on the main data set's test split, or None.
      setting: the main data set and preset, for the captions.
      stb_mean_pose, stb_setting: the same for the stb suite's STB-format set (default: the
        main ones' setting, no mean pose).
    """
    records = load_records(out_dir)
    written = []
    path = os.path.join(out_dir, "runs.json")
    write_metrics([records[k] for k in sorted(records)], path)
    written.append(path)

    table1 = [s for s in (_row_stats(r, records) for r in suites.TABLE1) if s]
    view = [s for s in (_row_stats(r, records) for r in suites.VIEW) if s]
    stb = [s for s in (_row_stats(r, records) for r in suites.STB) if s]
    summary_rows = (table1 + [s for s in view if s["name"] not in {t["name"] for t in table1}]
                    + stb)
    decided = claims.decide(records)
    figure_run = _figure_run(records)
    summary = {"mean_pose_epe_mm": mean_pose["epe_mean_mm"] if mean_pose else None,
               "setting": setting, "claims": decided,
               "figures_run": figure_run["name"] if figure_run else None,
               "rows": [{k: s[k] for k in ("name", "strategy", "decoders", "view_correction",
                                           "seeds", "steps", "epe_mean_mm", "epe_std_mm",
                                           "auc_0_50")} for s in summary_rows]}
    path = os.path.join(out_dir, "summary.json")
    write_metrics(summary, path)
    written.append(path)
    path = os.path.join(out_dir, "claims.md")
    write_text(path, claims.claims_markdown(decided, setting))
    written.append(path)

    if table1:
        path = os.path.join(out_dir, "table1.md")
        figures_note = ("" if figure_run is None else
                        f" fig3.png and fig4.png (Fig. 3 and 4 in kind) are evaluate.py's "
                        f"figures of {figure_run['name']}, the S4 run of lowest test EPE.")
        write_text(path, _table(table1, mean_pose, "Table 1 in kind",
                                f"{setting}. The paper's column is RHD, not comparable in "
                                "value, only in order." + figures_note))
        written.append(path)
        curves = {s["name"]: (s["pck_thresholds_mm"], s["pck"]) for s in table1}
        if mean_pose is not None:
            curves["training mean pose"] = (mean_pose["pck_thresholds_mm"], mean_pose["pck"])
        written.append(figures.plot_pck(curves, os.path.join(out_dir, "pck_strategies.png"),
                                        title="3D PCK, Table 1 rows (test split)"))
    if view:
        path = os.path.join(out_dir, "view.md")
        write_text(path, _table(view, mean_pose, "Viewpoint correction (Fig. 5 in kind)",
                                f"{setting}. S4 trained and evaluated with and without "
                                "viewpoint correction."))
        written.append(path)
    written += _write_weak(out_dir, records, setting)
    if stb:
        path = os.path.join(out_dir, "stb.md")
        write_text(path, _stb_text(stb, stb_mean_pose, stb_setting or setting))
        written.append(path)
    written += _write_occlusion(out_dir, records, setting)
    written += _copy_figures(out_dir, figure_run)
    return written


def _stb_text(stb: Sequence[dict], mean_pose: Optional[dict], setting: str) -> str:
    """results/stb.md: the stb suite's rows, and the paper's Table 2 STB column beside them."""
    table = _table(stb, mean_pose, "Table 2's STB column in kind",
                   f"{setting}. S1, S3 and S4 trained and tested on the STB-format set (the STB "
                   "reader, keypoint-box crops, B1Counting and B1Random as the test split) at "
                   "equal steps. The paper's column is real STB at full scale: compare the "
                   "order, not the values.", paper="STB")
    paper = ["", "The paper's Table 2, STB column (mean EPE, mm):", "",
             "| method | EPE mean (mm) |", "|---|---|"]
    paper += [f"| {name} | {epe:.2f} |" for name, epe in suites.PAPER_STB_EPE_MM]
    return table + "\n".join(paper) + "\n"


# The weak-supervision arms: (index in a weak_rows() triple, label, the Table 1 row at 100%).
_WEAK_ARMS = ((0, f"S4 poe weak ({suites.UNLABELLED_BATCH_SIZE} labelled + "
                  f"{suites.UNLABELLED_BATCH_SIZE} unlabelled per batch)", suites.S4),
              (1, "S4 poe on the labelled part alone", suites.S4),
              (2, "S1 cvae on the labelled part alone", suites.S1))


def _mean_half_width(stats: dict) -> float:
    """Half-width of the 95% Student t interval of a row's mean EPE over its seeds (0 for one
    seed)."""
    n = len(stats["seeds"])
    return claims.half_width(stats["epe_std_mm"], n) if n > 1 else 0.0


def _weak_cell(stats: Optional[dict]) -> str:
    if stats is None:
        return "-"
    seeds = len(stats["seeds"])
    if seeds == 1:
        return f"{_epe_cell(stats)} (1 seed)"
    half = _mean_half_width(stats)
    return (f"{_epe_cell(stats)}, 95% CI [{stats['epe_mean_mm'] - half:.2f}, "
            f"{stats['epe_mean_mm'] + half:.2f}] ({seeds} seeds)")


def _write_weak(out_dir, records, setting) -> List[str]:
    """results/weak.md and weak.png: per labelled fraction m, the weak S4 arm and the two
    labelled-only baselines, and the 100% level (Table 1's S4 and S1)."""
    curves = [[(fraction, _row_stats(arms[index], records))
               for fraction, arms in zip(suites.WEAK_FRACTIONS, suites.weak_rows())]
              for index, _, _ in _WEAK_ARMS]
    full = {row.key: _row_stats(row, records) for row in (suites.S4, suites.S1)}
    if not any(s for curve in curves for _, s in curve):
        return []
    lines = ["# Weak supervision (Fig. 8 in kind)", "",
             f"{setting}. At every step the weak S4 arm sees a batch of the labelled first m% "
             f"of the training samples plus {suites.UNLABELLED_BATCH_SIZE} unlabelled samples "
             "of the rest (pose and heatmap losses masked), as many labelled samples as the "
             "baselines, which train on the labelled m% alone (train.py --labelled_only): S4, "
             "the paper's model fully supervised on less data, and S1. This batch design is "
             "ours; the paper states none. The 100% row is Table 1's S4 and S1 (every arm is "
             "then the fully supervised model). Test EPE mean (mm), mean over seeds +- their "
             "standard deviation, and the 95% Student t interval of the mean; the paired "
             "differences between the arms are in claims.md.", "",
             "| labelled | " + " | ".join(label for _, label, _ in _WEAK_ARMS) + " |",
             "|---|---|---|---|"]
    for point, fraction in enumerate(suites.WEAK_FRACTIONS):
        cells = [curve[point][1] for curve in curves]
        lines.append(f"| {suites.percent(fraction)}% | "
                     + " | ".join(_weak_cell(c) for c in cells) + " |")
    lines.append("| 100% | " + " | ".join(_weak_cell(full[row.key]) for _, _, row in _WEAK_ARMS)
                 + " |")
    path = os.path.join(out_dir, "weak.md")
    write_text(path, "\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for curve, (_, label, _) in zip(curves, _WEAK_ARMS):
        points = [(100 * fraction, s) for fraction, s in curve if s]
        if points:
            ax.errorbar([x for x, _ in points], [s["epe_mean_mm"] for _, s in points],
                        yerr=[_mean_half_width(s) for _, s in points], marker="o", capsize=3,
                        label=label)
    for row, style in ((suites.S4, "--"), (suites.S1, ":")):
        if full[row.key]:
            ax.axhline(full[row.key]["epe_mean_mm"], color="gray", linestyle=style,
                       label=f"{row.name}, 100% labelled (Table 1)")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training samples m (%, log scale)")
    ax.set_ylabel("mean EPE (mm), test split; bars: 95% CI over seeds")
    ax.set_xticks([100 * f for f in suites.WEAK_FRACTIONS])
    ax.set_xticklabels([f"{suites.percent(f)}" for f in suites.WEAK_FRACTIONS])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Weak supervision")
    return [path, figures.save_figure(fig, os.path.join(out_dir, "weak.png"))]


def epe_by_occlusion(errors_mm, visible, bins=OCCLUSION_BINS
                     ) -> List[Tuple[int, Optional[float]]]:
    """Mean EPE (SPEC 6) over the samples of each bin of hidden-keypoint counts.

    Args:
      errors_mm: (M, 21) keypoint errors in mm (protocol.keypoint_errors).
      visible: (M, 21) 0/1; a sample's hidden count is 21 minus its visible keypoints.
      bins: inclusive (low, high) ranges of hidden counts.

    Returns:
      per bin, (number of samples, mean EPE in mm over their visible keypoints, None when the
      bin has no visible keypoint).
    """
    visible = np.asarray(visible) > 0
    hidden = visible.shape[1] - visible.sum(axis=1)
    result = []
    for low, high in bins:
        chosen = (hidden >= low) & (hidden <= high)
        epe = (protocol.metrics_from_errors(errors_mm[chosen], visible[chosen])["epe_mean_mm"]
               if visible[chosen].any() else None)
        result.append((int(chosen.sum()), epe))
    return result


def hidden_keypoint_epe(errors_mm, visible) -> Optional[float]:
    """Mean error (mm) over the keypoints the depth test hides, the complement of SPEC 6's
    visible ones (their ground truth is known in RHD-format sets); per-keypoint means averaged
    as in SPEC 6. None when nothing is hidden.

    Args:
      errors_mm: (M, 21) keypoint errors in mm (protocol.keypoint_errors).
      visible: (M, 21) 0/1.
    """
    hidden = ~(np.asarray(visible) > 0)
    if not hidden.any():
        return None
    return protocol.metrics_from_errors(errors_mm, hidden)["epe_mean_mm"]


def _write_occlusion(out_dir, records, setting) -> List[str]:
    """results/occlusion.md: each Table 1 row's test EPE by how many keypoints the sample hides,
    and its error on the hidden keypoints themselves (mean over the seeds whose predictions.npz
    is at hand; the models are not committed)."""
    lines, counts = [], None
    for row in suites.TABLE1:
        per_seed = []  # per seed: the EPE of each bin, then the hidden keypoints' error
        for record in suites.row_records(row, records):
            path = os.path.join(record["eval_dir"], "predictions.npz")
            if not os.path.isfile(path):
                continue
            with np.load(path) as p:
                errors, visible = protocol.keypoint_errors(p["pred"], p["gt"]), p["visible"]
            bins = epe_by_occlusion(errors, visible)
            hidden = hidden_keypoint_epe(errors, visible)
            counts = [n for n, _ in bins]
            per_seed.append([epe for _, epe in bins] + [hidden])
        if not per_seed:
            continue
        cells = []
        for column in zip(*per_seed):
            values = [v for v in column if v is not None]
            cells.append(f"{np.mean(values):.2f}" if values else "-")
        lines.append(f"| {row.name} | {len(per_seed)} | " + " | ".join(cells) + " |")
    if not lines:
        return []
    header = " | ".join(f"{low}-{high} hidden ({n} samples)"
                        for (low, high), n in zip(OCCLUSION_BINS, counts))
    text = "\n".join(
        ["# Test EPE by occlusion", "",
         f"{setting}. Mean EPE (mm, visible keypoints, SPEC 6) of the test samples grouped by "
         "how many of their 21 keypoints the depth test hides, and the mean error on the hidden "
         "keypoints of every test sample (outside SPEC 6), mean over seeds.", "",
         f"| row | seeds | {header} | hidden keypoints |",
         "|---|---|" + "---|" * (len(OCCLUSION_BINS) + 1)] + lines)
    path = os.path.join(out_dir, "occlusion.md")
    write_text(path, text + "\n")
    return [path]


def _figure_run(records) -> Optional[dict]:
    """The record of the run whose figures are fig3.png and fig4.png: the S4 run of lowest test
    EPE, None before the first."""
    s4 = [r for r in records.values() if r["row_key"] == suites.S4.key]
    return min(s4, key=lambda r: r["metrics"]["epe_mean_mm"]) if s4 else None


def _copy_figures(out_dir, best: Optional[dict]) -> List[str]:
    """Fig. 3 and 4 of `best` (`_figure_run`) as evaluate.py drew them."""
    if best is None:
        return []
    written = []
    for source, target in (("fig3_samples.png", "fig3.png"), ("fig4_interpolation.png",
                                                                "fig4.png")):
        src = os.path.join(best["eval_dir"], source)
        if os.path.isfile(src):
            dst = os.path.join(out_dir, target)
            _copy(src, dst)
            written.append(dst)
    return written

