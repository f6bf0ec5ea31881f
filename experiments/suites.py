"""The paper's experiments as lists of runs (SPEC 2 and 7); no TensorFlow here.

A run is one `train.py` invocation followed by `evaluate.py` on the test split. Its name is
derived from everything that distinguishes it, so a run shared by two suites (S4 with view
correction and 100% labels is a row of Table 1, the "with" arm of the viewpoint ablation and the
100% point of the weak-supervision curve) is trained once.
"""
import dataclasses
from typing import Dict, List, Optional, Tuple

SUITES = ("table1", "view", "weak")
WEAK_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of a results table: a configuration, trained with several seeds.

    Attributes:
      name: label in tables and plots.
      key: short identifier used in run names.
      strategy: train.py --strategy.
      decoders: train.py --decoders (for 'extended' only).
      view_correction: train.py --view_correction.
      labelled_fraction: train.py --labelled_fraction.
      labelled_only: train.py --labelled_only (the baseline trained on the labelled part alone).
      paper_epe_mm: the paper's RHD mean EPE for this row (Table 1), None where it gives none.
    """

    name: str
    key: str
    strategy: str
    decoders: Tuple[str, ...] = ()
    view_correction: bool = True
    labelled_fraction: float = 1.0
    labelled_only: bool = False
    paper_epe_mm: Optional[float] = None

    def run_name(self, seed: int) -> str:
        return f"{self.key}_seed{seed}"


@dataclasses.dataclass(frozen=True)
class Run:
    row: Row
    seed: int

    @property
    def name(self) -> str:
        return self.row.run_name(self.seed)

    def train_flags(self) -> List[str]:
        """train.py flags of this run, besides data, preset and model_dir."""
        flags = [f"--strategy={self.row.strategy}", f"--seed={self.seed}",
                 f"--labelled_fraction={self.row.labelled_fraction}",
                 "--view_correction" if self.row.view_correction else "--noview_correction"]
        if self.row.labelled_only:
            flags.append("--labelled_only")
        if self.row.strategy == "extended":
            flags.append(f"--decoders={','.join(self.row.decoders)}")
        return flags


def percent(fraction: float) -> int:
    return int(round(100 * fraction))


S1 = Row("S1 cvae", "s1", "cvae", paper_epe_mm=16.61)
S4 = Row("S4 poe", "s4", "poe", paper_epe_mm=13.14)
TABLE1 = (
    S1,
    Row("S2 R->H+P", "s2_hp", "extended", ("heatmap",), paper_epe_mm=16.10),
    Row("S2 R->C+P", "s2_cp", "extended", ("cloud",), paper_epe_mm=15.91),
    Row("S2 R->C+H+P", "s2_chp", "extended", ("heatmap", "cloud"), paper_epe_mm=15.49),
    Row("S3 kl", "s3", "kl", paper_epe_mm=14.93),
    S4,
)
VIEW = (S4, dataclasses.replace(S4, name="S4 poe, no view correction", key="s4_noview",
                                view_correction=False, paper_epe_mm=None))


def weak_rows() -> Tuple[Tuple[Row, Row], ...]:
    """(S4, S1 baseline) per labelled fraction; the baseline trains on the labelled part alone
    (--labelled_only), S4 on every sample, the pose loss masked where the label is hidden."""
    rows = []
    for fraction in WEAK_FRACTIONS:
        if fraction == 1.0:
            rows.append((S4, S1))
            continue
        suffix = f"_m{percent(fraction)}"
        rows.append(tuple(
            dataclasses.replace(r, name=f"{r.name} {percent(fraction)}% labelled",
                                key=r.key + suffix, labelled_fraction=fraction,
                                labelled_only=r is S1, paper_epe_mm=None)
            for r in (S4, S1)))
    return tuple(rows)


def suite_rows(suite: str) -> Tuple[Row, ...]:
    if suite == "table1":
        return TABLE1
    if suite == "view":
        return VIEW
    if suite == "weak":
        return tuple(r for pair in weak_rows() for r in pair)
    raise ValueError(f"suite_rows: suite must be one of {SUITES}, got {suite!r}")


def seeds_for(row: Row, seeds: int) -> Tuple[int, ...]:
    """S1 and S4 (and S4's ablation arm) carry the comparisons that need seed noise, so they get
    `seeds` seeds; every other row one."""
    multi = row.key in (S1.key, S4.key, "s4_noview")
    return tuple(range(seeds if multi else 1))


def suite_runs(suites, seeds: int) -> List[Run]:
    """Every run of `suites`, each once: suite by suite, seed 0 of every row first, so that an
    interrupted suite has a complete table before it has its seed spread."""
    runs: Dict[str, Run] = {}
    for suite in suites:
        for seed in range(seeds):
            for row in suite_rows(suite):
                if seed in seeds_for(row, seeds):
                    run = Run(row, seed)
                    runs.setdefault(run.name, run)
    return list(runs.values())
