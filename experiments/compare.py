r"""Compares the same rows run in two regimes, seed by seed: one results directory against another.

  python -m experiments.compare --before=results/no_schedule --after=results \
      --rows=s1,s4 --out=results/schedule

writes <out>.md (per row: test EPE mean +- std in each regime, and the paired difference
after - before with its 95% interval, experiments/claims.py) and <out>.png (the validation
curves of every seed in both). The two directories' runs of one seed share initialisation and
data order, so a difference per seed isolates the regime.
"""
import os
import sys
from typing import Dict, List, Sequence

from common import cli

cli.quiet_tensorflow(sys.argv)

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402

from evaluation.figures import plt, save_figure  # noqa: E402
from experiments import claims, report, suites  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("before", None, "Results directory of the first regime (its runs/ holds "
                    "the records).")
flags.DEFINE_string("after", None, "Results directory of the second regime.")
flags.DEFINE_list("rows", ["s1", "s4"], "Row keys to compare (experiments/suites.py).")
flags.DEFINE_string("before_label", "before", "The first regime's name in the table and plot.")
flags.DEFINE_string("after_label", "after", "The second regime's name.")
flags.DEFINE_string("out", None, "Output path without extension: <out>.md and <out>.png.")


def _by_seed(records: Dict[str, dict], row: suites.Row) -> Dict[int, dict]:
    return {r["seed"]: r for r in suites.row_records(row, records)}


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{np.mean(values):.2f} +- {np.std(values, ddof=1):.2f} ({len(values)} seeds)"


def compare(before: Dict[str, dict], after: Dict[str, dict], rows: Sequence[suites.Row],
            labels=("before", "after")) -> List[dict]:
    """Per row: both regimes' test EPE by seed and the paired difference after - before
    (claims.paired_difference with `after` as the row put lower)."""
    result = []
    for row in rows:
        old = {s: r["metrics"]["epe_mean_mm"] for s, r in _by_seed(before, row).items()}
        new = {s: r["metrics"]["epe_mean_mm"] for s, r in _by_seed(after, row).items()}
        result.append({"row": row.name, labels[0]: old, labels[1]: new,
                       "difference": claims.paired_difference(new, old)})
    return result


def markdown(compared: Sequence[dict], labels, sources) -> str:
    lines = [f"# {labels[1]} against {labels[0]}", "",
             f"Test EPE mean (mm) of the same rows and seeds in two regimes: {labels[0]} "
             f"({sources[0]}) and {labels[1]} ({sources[1]}). Difference: {labels[1]} minus "
             f"{labels[0]} per seed, its mean and 95% Student t interval over the shared seeds "
             "(negative: lower error in the second regime).", "",
             f"| row | {labels[0]} | {labels[1]} | difference (mm) | 95% CI (mm) |",
             "|---|---|---|---|---|"]
    for c in compared:
        d = c["difference"]
        mean = "-" if d is None else f"{d['mean_mm']:+.2f} ({d['n']} seeds)"
        ci = "-" if d is None or d["ci_mm"] is None else (
            f"[{d['ci_mm'][0]:+.2f}, {d['ci_mm'][1]:+.2f}]")
        lines.append(f"| {c['row']} | {_cell(list(c[labels[0]].values()))} | "
                     f"{_cell(list(c[labels[1]].values()))} | {mean} | {ci} |")
    return "\n".join(lines) + "\n"


def plot_curves(before, after, rows, labels, path: str) -> str:
    """Validation EPE against step of every seed of `rows`, one panel a row, a line style a
    regime."""
    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        for records, label, style in ((before, labels[0], ":"), (after, labels[1], "-")):
            for seed, record in sorted(_by_seed(records, row).items()):
                curve = np.array(record["validation_epe_mm"])
                if len(curve):
                    ax.plot(curve[:, 0], curve[:, 1], style, marker=".",
                            label=f"{label}, seed {seed}")
        ax.set_title(row.name)
        ax.set_xlabel("step")
        ax.set_ylabel("validation EPE (mm)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    for name in ("before", "after", "out"):
        if not getattr(FLAGS, name):
            sys.exit(f"error: --{name} is required")
    rows_by_key = suites.all_rows()
    unknown = sorted(set(FLAGS.rows) - set(rows_by_key))
    if unknown:
        sys.exit(f"error: --rows: unknown row keys {unknown} (known: {sorted(rows_by_key)})")
    loaded = []
    for name in ("before", "after"):
        records = report.load_records(getattr(FLAGS, name))
        if not records:
            sys.exit(f"error: --{name}={getattr(FLAGS, name)}: no run records in its runs/")
        loaded.append(records)
    rows = [rows_by_key[key] for key in FLAGS.rows]
    labels = (FLAGS.before_label, FLAGS.after_label)
    compared = compare(*loaded, rows, labels)
    text = markdown(compared, labels, (FLAGS.before, FLAGS.after))
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    report.write_text(FLAGS.out + ".md", text)
    plot_curves(*loaded, rows, labels, FLAGS.out + ".png")
    print(text + f"written: {FLAGS.out}.md, {FLAGS.out}.png")


if __name__ == "__main__":
    app.run(main)
