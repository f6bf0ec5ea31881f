"""The paper's claims decided over paired seeds (experiments/claims.py), on hand-made records
whose intervals are known in closed form."""
import json
import math
import os

import pytest
from scipy import stats

from experiments import claims, report, suites


def test_interval_of_three_paired_differences_by_hand():
    # Differences -3, -4, -5: mean -4, sd 1, half-width t(0.975, 2) / sqrt(3) = 4.3027 / 1.7321.
    result = claims.paired_difference({0: 40.0, 1: 41.0, 2: 42.0}, {0: 43.0, 1: 45.0, 2: 47.0})
    half = 4.302652729911275 / math.sqrt(3)
    assert result["seeds"] == [0, 1, 2] and result["n"] == 3
    assert result["mean_mm"] == pytest.approx(-4.0) and result["sd_mm"] == pytest.approx(1.0)
    assert result["ci_mm"] == pytest.approx([-4.0 - half, -4.0 + half])
    assert result["verdict"] == "shown" and result["seeds_to_decide"] is None


def test_verdicts_inverted_undecided_and_one_seed():
    inverted = claims.paired_difference({0: 45.0, 1: 47.0, 2: 49.0}, {0: 40.0, 1: 41.0, 2: 42.0})
    assert inverted["verdict"] == "inverted" and inverted["ci_mm"][0] > 0
    # Differences +1, -1, -3: mean -1, sd 2, interval [-5.97, +3.97] holds zero.
    undecided = claims.paired_difference({0: 41.0, 1: 40.0, 2: 39.0}, {0: 40.0, 1: 41.0, 2: 42.0})
    assert undecided["verdict"] == "not decided"
    assert undecided["ci_mm"] == pytest.approx([-1 - 2 * 4.302652729911275 / math.sqrt(3),
                                                -1 + 2 * 4.302652729911275 / math.sqrt(3)])
    # The fewest n with t(0.975, n - 1) * 2 / sqrt(n) < 1: checked against scipy directly.
    needed = undecided["seeds_to_decide"]
    assert stats.t.ppf(0.975, needed - 1) * 2 / math.sqrt(needed) < 1.0
    assert stats.t.ppf(0.975, needed - 2) * 2 / math.sqrt(needed - 1) >= 1.0
    assert needed == 18
    one = claims.paired_difference({0: 40.0, 5: 30.0}, {0: 42.0, 1: 50.0})
    assert (one["seeds"], one["mean_mm"], one["ci_mm"], one["verdict"]) == (
        [0], -2.0, None, "not decided")
    assert claims.paired_difference({0: 40.0}, {1: 42.0}) is None
    assert claims.seeds_to_decide(0.0, 1.0) is None  # no difference is never decided


def _record(row, seed, epe):
    return {"name": row.run_name(seed), "row": row.name, "row_key": row.key, "seed": seed,
            "metrics": {"epe_mean_mm": epe}}


def test_claims_of_the_paper_from_records():
    records = {}
    for row, epes in ((suites.S1, (46, 47, 48)), (suites.S4, (41, 42, 43)),
                      (suites.TABLE1[1], (45, 45, 45)), (suites.TABLE1[2], (44, 44, 44)),
                      (suites.S3, (43.5, 44.5, 45.5))):
        for seed, epe in enumerate(epes):
            records[row.run_name(seed)] = _record(row, seed, float(epe))
    decided = {c["claim"]: c for c in claims.decide(records)}
    s4_s1 = decided["S4 (PoE) below S1 (cross-modal VAE)"]
    assert (s4_s1["mean_mm"], s4_s1["sd_mm"], s4_s1["verdict"]) == (-5.0, 0.0, "shown")
    # The best S2 row is R->C+P (44 mm); S3 is paired with it seed by seed: +/-0.5, +0.5, +1.5.
    s3 = decided["S3 (KL) below the best S2 row (S2 R->C+P)"]
    assert s3["higher"] == "S2 R->C+P" and s3["mean_mm"] == pytest.approx(0.5)
    assert s3["verdict"] == "not decided"
    # A row with no finished run: no shared seed, no verdict.
    chp = decided["S2 R->C+H+P below S1"]
    assert (chp["n"], chp["verdict"]) == (0, "no shared seed")
    weak = [c for c in decided if c.startswith("1% labelled")]
    assert len(weak) == 2 and all(decided[c]["n"] == 0 for c in weak)


def test_claims_markdown_is_written_with_the_tables(tmp_path):
    out = str(tmp_path / "results")
    for seed, (s1, s4) in enumerate(((46.0, 41.0), (47.0, 42.5), (48.0, 42.0))):
        for row, epe in ((suites.S1, s1), (suites.S4, s4)):
            record = dict(_record(row, seed, epe), strategy=row.strategy, steps=100,
                          train_seconds=1.0, eval_seconds=1.0, eval_dir=str(tmp_path / "e"))
            record["metrics"].update(epe_median_mm=epe, auc_0_50=0.5, auc_20_50=0.8, pck=[0, 1],
                                     pck_thresholds_mm=[0, 50])
            report.write_metrics(record, os.path.join(out, "runs", row.run_name(seed) + ".json"))
    report.write_all(out, mean_pose=None, setting="test setting")
    text = open(os.path.join(out, "claims.md"), encoding="utf-8").read()
    # Differences -5, -4.5, -6: mean -5.17, sd 0.764, half-width 1.90.
    assert ("| S4 (PoE) below S1 (cross-modal VAE) | 3 | -5.17 | [-7.06, -3.27] | shown | - |"
            in text)
    assert "| S4 below S3 | 0 | - | - | no shared seed | - |" in text
    # The same numbers reach summary.json.
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        first = json.load(f)["claims"][0]
    assert first["verdict"] == "shown" and first["ci_mm"][1] == pytest.approx(-3.27, abs=0.01)


def test_compare_two_regimes_seed_by_seed(tmp_path):
    from experiments import compare

    def records(epes, curve_end):
        return {suites.S1.run_name(seed): dict(_record(suites.S1, seed, epe),
                                               validation_epe_mm=[[500, 55.0], [1000, curve_end]])
                for seed, epe in enumerate(epes)}

    before, after = records((46.0, 47.0, 48.0), 50.0), records((44.0, 44.0, 44.0), 45.0)
    compared = compare.compare(before, after, [suites.S1, suites.S4], ("old", "new"))
    d = compared[0]["difference"]  # -2, -3, -4: mean -3, sd 1
    assert d["mean_mm"] == pytest.approx(-3.0) and d["verdict"] == "shown"
    assert compared[1]["difference"] is None  # S4 in neither
    text = compare.markdown(compared, ("old", "new"), ("a", "b"))
    half = 4.302652729911275 / math.sqrt(3)
    assert (f"| S1 cvae | 47.00 +- 1.00 (3 seeds) | 44.00 +- 0.00 (3 seeds) | -3.00 (3 seeds) | "
            f"[{-3 - half:+.2f}, {-3 + half:+.2f}] |") in text
    assert "| S4 poe | - | - | - | - |" in text
    path = compare.plot_curves(before, after, [suites.S1], ("old", "new"),
                               str(tmp_path / "curves.png"))
    assert os.path.getsize(path) > 0
