"""The paper's claims decided by statistics over paired seeds: results/claims.md and the 'claims'
of summary.json.

Two runs of the same seed share their initialisation and data order, so each claim is judged on
the per-seed differences of test EPE, `lower - higher` for the row the paper puts lower first: the
mean over seeds, its 95% confidence interval (Student t with seeds - 1 degrees of freedom) and a
verdict. 'shown': the interval lies below zero (the paper's direction); 'inverted': above zero;
'not decided': it holds zero, or there is one seed. For an undecided claim, the seeds that would
decide it are the fewest n whose interval half-width at the measured spread falls below the
measured mean difference.
"""
import dataclasses
import math
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import stats

from experiments import suites

CONFIDENCE = 0.95
# Past this many seeds a claim is reported as needing more than it ("> MAX_SEEDS").
MAX_SEEDS = 100


@dataclasses.dataclass(frozen=True)
class Claim:
    """One comparison the paper makes: `lower` has the lower EPE than `higher`.

    Attributes:
      text: the claim in words, as claims.md prints it.
      lower: the row the paper puts lower in EPE.
      higher: the row it is compared with.
    """

    text: str
    lower: suites.Row
    higher: suites.Row


def half_width(sd: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student t interval of a mean of n values with standard deviation sd."""
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n))


def seeds_to_decide(mean: float, sd: float, max_seeds: int = MAX_SEEDS) -> Optional[int]:
    """The fewest seeds n >= 2 whose interval, at this mean and spread, excludes zero; None past
    max_seeds (a mean difference of zero is never decided)."""
    for n in range(2, max_seeds + 1):
        if half_width(sd, n) < abs(mean):
            return n
    return None


def paired_difference(lower: Dict[int, float], higher: Dict[int, float]) -> Optional[dict]:
    """Statistics of lower[seed] - higher[seed] over the seeds both have.

    Args:
      lower, higher: seed -> test EPE (mm) of the two rows.

    Returns:
      None when no seed is shared, else {'seeds', 'n', 'mean_mm', 'sd_mm' (None for one seed),
      'ci_mm' ([low, high], None for one seed), 'verdict', 'seeds_to_decide' (for an undecided
      claim with two seeds or more: an int, or None past MAX_SEEDS)}.
    """
    seeds = sorted(set(lower) & set(higher))
    if not seeds:
        return None
    diffs = np.array([lower[s] - higher[s] for s in seeds], dtype=np.float64)
    result = {"seeds": seeds, "n": len(seeds), "mean_mm": float(diffs.mean()), "sd_mm": None,
              "ci_mm": None, "verdict": "not decided", "seeds_to_decide": None}
    if len(seeds) < 2:
        return result
    sd = float(diffs.std(ddof=1))
    half = half_width(sd, len(seeds))
    low, high = result["mean_mm"] - half, result["mean_mm"] + half
    result.update(sd_mm=sd, ci_mm=[low, high])
    if high < 0:
        result["verdict"] = "shown"
    elif low > 0:
        result["verdict"] = "inverted"
    else:
        result["seeds_to_decide"] = seeds_to_decide(result["mean_mm"], sd)
    return result


def _epe_by_seed(row: suites.Row, records: Dict[str, dict]) -> Dict[int, float]:
    return {r["seed"]: r["metrics"]["epe_mean_mm"] for r in suites.row_records(row, records)}


def paper_claims(records: Dict[str, dict]) -> List[Claim]:
    """The paper's comparisons (Table 1, the viewpoint ablation, Fig. 8), in claims.md's order.

    'The best S2 row' is the S2 row of lowest mean test EPE among the finished ones (chosen on the
    same seeds it is then compared on, which favours S2 a little, against the paper's claim).
    """
    s1, s3, s4 = suites.S1, suites.S3, suites.S4
    s2_rows = [row for row in suites.TABLE1 if row.strategy == "extended"]
    claims = [Claim("S4 (PoE) below S1 (cross-modal VAE)", s4, s1)]
    claims += [Claim(f"{row.name} below S1", row, s1) for row in s2_rows]
    finished = [row for row in s2_rows if _epe_by_seed(row, records)]
    if finished:
        best = min(finished, key=lambda row: np.mean(list(_epe_by_seed(row, records).values())))
        claims.append(Claim(f"S3 (KL) below the best S2 row ({best.name})", s3, best))
    claims.append(Claim("S4 below S3", s4, s3))
    claims.append(Claim("viewpoint correction lowers S4's EPE", s4, suites.VIEW[1]))
    for fraction, (weak, labelled_only, _) in zip(suites.WEAK_FRACTIONS, suites.weak_rows()):
        p = suites.percent(fraction)
        claims.append(Claim(f"{p}% labelled: weak S4 below S4 on the labelled part alone", weak,
                            labelled_only))
        claims.append(Claim(f"{p}% labelled: S4 with every label below weak S4 (the gap the "
                            "unlabelled samples leave)", s4, weak))
    return claims


def decide(records: Dict[str, dict]) -> List[dict]:
    """Every claim of `paper_claims` with its statistics (None fields where a row has no
    finished seed in common with the other)."""
    decided = []
    for claim in paper_claims(records):
        result = paired_difference(_epe_by_seed(claim.lower, records),
                                   _epe_by_seed(claim.higher, records))
        decided.append({"claim": claim.text, "lower": claim.lower.name,
                        "higher": claim.higher.name, **(result or {
                            "seeds": [], "n": 0, "mean_mm": None, "sd_mm": None, "ci_mm": None,
                            "verdict": "no shared seed", "seeds_to_decide": None})})
    return decided


def _to_decide(c: dict) -> str:
    if c["verdict"] != "not decided":
        return "-"
    if c["n"] < 2:
        return "a second seed first (no spread yet)"
    return str(c["seeds_to_decide"]) if c["seeds_to_decide"] else f"> {MAX_SEEDS}"


def claims_markdown(decided: Sequence[dict], setting: str) -> str:
    """results/claims.md: one line a claim."""
    lines = ["# The paper's claims, decided over paired seeds", "",
             f"{setting}. Each claim compares two rows run with the same seeds (same "
             "initialisation and data order). Difference: test EPE of the row the paper puts "
             "lower minus the other's, per seed; its mean over the shared seeds and "
             f"{int(100 * CONFIDENCE)}% confidence interval (Student t, seeds - 1 degrees of "
             "freedom). Verdict: shown (the interval lies below zero, the paper's direction), "
             "inverted (above zero) or not decided (it holds zero, or one seed); for an "
             "undecided claim, the seeds whose interval would exclude zero at the measured mean "
             "and spread (experiments/claims.py).", "",
             "| claim | seeds | difference (mm) | 95% CI (mm) | verdict | seeds to decide |",
             "|---|---|---|---|---|---|"]
    for c in decided:
        mean = "-" if c["mean_mm"] is None else f"{c['mean_mm']:+.2f}"
        ci = "-" if c["ci_mm"] is None else f"[{c['ci_mm'][0]:+.2f}, {c['ci_mm'][1]:+.2f}]"
        lines.append(f"| {c['claim']} | {c['n']} | {mean} | {ci} | {c['verdict']} | "
                     f"{_to_decide(c)} |")
    return "\n".join(lines) + "\n"
