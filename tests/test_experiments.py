"""The experiment runner's bookkeeping: which runs a suite has, and the tables built from them."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from evaluation import protocol
from experiments import report, suites


def test_suites_share_runs_and_seed_the_compared_rows():
    runs = suites.suite_runs(suites.SUITES, seeds=3)
    names = [r.name for r in runs]
    assert len(names) == len(set(names))
    # S4 with view correction and all labels is in all three suites but trained once per seed.
    assert names.count("s4_seed0") == 1
    # Every Table 1 row and both viewpoint arms get every seed: their claims are paired.
    for key in ("s1", "s2_hp", "s2_cp", "s2_chp", "s3", "s4", "s4_noview"):
        assert {n for n in names if n.startswith(key + "_seed")} == {
            f"{key}_seed{i}" for i in range(3)}, key
    # Both S4 arms of the weak curves get the seeds at the two scarcest fractions, one
    # seed elsewhere; S1 on the labelled part alone one seed.
    for key in ("s4_weak_m1", "s4_lab_m1", "s4_weak_m2", "s4_lab_m2"):
        assert {n for n in names if n.startswith(key + "_")} == {
            f"{key}_seed{i}" for i in range(3)}
    assert {"s4_weak_m5_seed0", "s4_lab_m10_seed0", "s1_lab_m1_seed0"} <= set(names)
    assert not {"s1_lab_m1_seed1", "s4_weak_m5_seed1", "s4_lab_m10_seed1"} & set(names)
    # 6 Table 1 rows x 3 seeds, S4 without view x 3, 4 fractions x 3 arms (both S4 arms x 3
    # seeds at 1% and 2%), and S1, S3, S4 on STB.
    assert len(runs) == 6 * 3 + 3 + (4 * 3 + 2 * 2 * 2) + 3
    # Seed 0 of every row of every suite comes before any other seed.
    seeds = [r.seed for r in runs]
    assert seeds == sorted(seeds) and seeds.count(0) == 6 + 1 + 4 * 3 + 3
    # The weak suite holds its 100% level: Table 1's S4 and S1, every seed.
    weak = [r.name for r in suites.suite_runs(["weak"], seeds=3)]
    assert {"s4_seed2", "s1_seed2"} <= set(weak) and len(weak) == 20 + 6


def test_train_flags_of_a_run():
    weak_s4, lab_s4, lab_s1 = suites.weak_rows()[-1]
    run = suites.Run(weak_s4, 0)
    assert run.name == "s4_weak_m10_seed0"
    assert run.train_flags() == ["--strategy=poe", "--seed=0", "--labelled_fraction=0.1",
                                 "--view_correction", "--unlabelled_batch_size=32"]
    assert suites.Run(lab_s4, 0).train_flags() == [
        "--strategy=poe", "--seed=0", "--labelled_fraction=0.1", "--view_correction",
        "--labelled_only"]
    assert suites.Run(lab_s1, 0).train_flags() == [
        "--strategy=cvae", "--seed=0", "--labelled_fraction=0.1", "--view_correction",
        "--labelled_only"]
    assert suites.Run(suites.weak_rows()[0][0], 1).name == "s4_weak_m1_seed1"
    assert [r.stb for r in suites.suite_rows("stb")] == [True] * 3
    assert [r.strategy for r in suites.suite_rows("stb")] == ["cvae", "kl", "poe"]
    s2 = suites.Run(suites.TABLE1[3], 0)
    assert s2.train_flags()[-1] == "--decoders=heatmap,cloud"
    assert "--noview_correction" in suites.Run(suites.VIEW[1], 1).train_flags()
    with pytest.raises(ValueError, match="suite must be one of"):
        suites.suite_rows("table2")


def _record(run, epe, tmp_path):
    thresholds = np.linspace(0, 50, 20).tolist()
    return {"name": run.name, "row": run.row.name, "row_key": run.row.key, "seed": run.seed,
            "strategy": run.row.strategy, "steps": 100, "train_seconds": 60.0,
            "eval_seconds": 5.0, "eval_dir": str(tmp_path / run.name),
            "metrics": {"epe_mean_mm": epe, "epe_median_mm": epe - 1, "auc_0_50": 0.5,
                        "auc_20_50": 0.8, "num_samples": 10, "pck_thresholds_mm": thresholds,
                        "pck": np.clip(np.array(thresholds) / epe / 2, 0, 1).tolist()}}


def test_validation_curve_from_a_log_appended_over_a_resumed_run():
    log = ("starting: strategy=poe\n"
           "train: step 1/6, 2.00 steps/s, ETA 0:03, loss 3.1\n"
           "step 2: validation EPE 55.20 mm (best 55.20, improved, lr 1.0e-03)\n"
           "step 4: validation EPE 54.91 mm (best 54.91, improved, lr 1.0e-03)\n"
           "resuming from runs/x/ckpt-2: strategy=poe\n"
           "step 4: validation EPE 54.90 mm (best 54.90, improved, lr 1.0e-03)\n"
           "step 6: validation EPE 60.00 mm (best 54.90, patience 1/3, lr 1.0e-03)\n")
    assert report.validation_curve(log) == [[2, 55.2], [4, 54.9], [6, 60.0]]
    assert report.validation_curve("no validation here\n") == []


def test_runner_log_keeps_the_lines_of_a_killed_attempt(tmp_path):
    """The runner writes a run's log line by line, so the validation lines of an attempt whose
    runner is killed stay for the record of the resumed attempt (validation_curve)."""
    log = tmp_path / "log.txt"
    train = ("import time; print('step 500: validation EPE 50.00 mm', flush=True); "
             "time.sleep(120)")
    runner = ("import sys; from experiments import run; run.FLAGS(['run']); "
              f"run._call([sys.executable, '-c', {train!r}], sys.argv[1])")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", runner, str(log)], cwd=repo,
                            stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (log.exists() and "EPE" in log.read_text()):
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its child, as a kill -9 would
        proc.wait()
    assert report.validation_curve(log.read_text()) == [[500, 50.0]]


def test_tables_are_built_from_the_finished_runs(tmp_path):
    out = str(tmp_path / "results")
    epe = {"s1_seed0": 30.0, "s1_seed1": 32.0, "s1_seed2": 34.0, "s4_seed0": 25.0,
           "s3_seed0": 27.0}
    for run in suites.suite_runs(["table1"], seeds=3):
        if run.name in epe:
            report.write_metrics(_record(run, epe[run.name], tmp_path),
                                 os.path.join(out, "runs", run.name + ".json"))
    mean_pose = _record(suites.Run(suites.S1, 0), 50.0, tmp_path)["metrics"]
    written = report.write_all(out, mean_pose=mean_pose, setting="test setting")
    names = {os.path.basename(p) for p in written}
    assert {"runs.json", "summary.json", "table1.md", "pck_strategies.png", "view.md"} <= names
    assert "weak.md" not in names  # the 100% level alone is no curve
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["mean_pose_epe_mm"] == 50.0
    rows = {r["name"]: r for r in summary["rows"]}
    assert set(rows) == {"S1 cvae", "S3 kl", "S4 poe"}   # rows without a finished run are left out
    assert rows["S1 cvae"]["epe_mean_mm"] == pytest.approx(32.0)
    assert rows["S1 cvae"]["epe_std_mm"] == pytest.approx(2.0)  # sample std of 30, 32, 34
    assert rows["S1 cvae"]["seeds"] == [0, 1, 2] and rows["S4 poe"]["seeds"] == [0]
    table = open(os.path.join(out, "table1.md"), encoding="utf-8").read()
    assert "| S1 cvae | 3 | 100 | 32.00 +- 2.00 | 31.00 |" in table
    # A multi-seed row's median is the mean of its seeds' medians, and the table says so.
    assert "EPE median (mm, mean over seeds)" in table
    assert "mean of its seeds' medians, not the median of the pooled errors" in table
    assert "| training mean pose | - | - | 50.00 |" in table
    assert "16.61" in table and "13.14" in table
    with open(os.path.join(out, "runs.json"), encoding="utf-8") as f:
        assert len(json.load(f)) == len(epe)
    # Every finished seed counts, whatever --seeds the call that rebuilds the tables asked for.
    report.write_metrics(_record(suites.Run(suites.S1, 3), 36.0, tmp_path),
                         os.path.join(out, "runs", "s1_seed3.json"))
    report.write_all(out, mean_pose=mean_pose, setting="test setting")
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        s1 = {r["name"]: r for r in json.load(f)["rows"]}["S1 cvae"]
    assert s1["seeds"] == [0, 1, 2, 3] and s1["epe_mean_mm"] == pytest.approx(33.0)


def _write(out, run, epe, tmp_path, **fields):
    report.write_metrics(dict(_record(run, epe, tmp_path), **fields),
                         os.path.join(out, "runs", run.name + ".json"))


def test_weak_table_and_figure_show_three_arms_and_the_100_percent_level(tmp_path):
    out = str(tmp_path / "results")
    s4_weak, s4_lab, s1_lab = suites.weak_rows()[0]
    for seed, epe in enumerate((50.0, 52.0, 54.0)):
        _write(out, suites.Run(s4_weak, seed), epe, tmp_path)
        _write(out, suites.Run(s4_lab, seed), epe - 4, tmp_path)
    _write(out, suites.Run(s1_lab, 0), 47.0, tmp_path)
    _write(out, suites.Run(suites.weak_rows()[2][0], 0), 44.0, tmp_path)  # S4 weak at 5%
    _write(out, suites.Run(suites.S4, 0), 40.0, tmp_path)
    written = report.write_all(out, mean_pose=None, setting="test setting")
    assert os.path.join(out, "weak.png") in written
    lines = open(os.path.join(out, "weak.md"), encoding="utf-8").read().splitlines()
    assert lines[4].startswith("| labelled | S4 poe weak (32 labelled + 32 unlabelled per "
                               "batch) | S4 poe on the labelled part alone | S1 cvae on the "
                               "labelled part alone |")
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    # 95% Student t interval of three seeds 2 mm apart: mean +- 4.303 * 2 / sqrt(3) = 4.97.
    assert rows["| 1%"] == ("| 1% | 52.00 +- 2.00, 95% CI [47.03, 56.97] (3 seeds) | "
                            "48.00 +- 2.00, 95% CI [43.03, 52.97] (3 seeds) | 47.00 (1 seed) |")
    assert rows["| 2%"] == rows["| 10%"].replace("10%", "2%") == "| 2% | - | - | - |"
    assert rows["| 5%"] == "| 5% | 44.00 (1 seed) | - | - |"
    # 100%: Table 1's S4 for both S4 arms, S1 not finished.
    assert rows["| 100%"] == "| 100% | 40.00 (1 seed) | 40.00 (1 seed) | - |"
    assert "the paper states none" in lines[2]


def test_stb_table_sits_beside_the_papers_stb_column(tmp_path):
    out = str(tmp_path / "results")
    for row, epe in zip(suites.STB, (30.0, 28.0, 26.0)):
        _write(out, suites.Run(row, 0), epe, tmp_path)
    mean_pose = _record(suites.Run(suites.S1, 0), 45.0, tmp_path)["metrics"]
    written = report.write_all(out, mean_pose=None, setting="rhd setting",
                               stb_mean_pose=mean_pose, stb_setting="stb setting")
    assert os.path.join(out, "stb.md") in written and os.path.join(out, "table1.md") not in written
    text = open(os.path.join(out, "stb.md"), encoding="utf-8").read()
    assert "stb setting." in text and "paper EPE (STB, mm)" in text
    assert "| training mean pose | - | - | 45.00 |" in text
    assert "| S4 poe, STB | 1 | 100 | 26.00 | 25.00 |" in text and text.count("| 7.05 |") == 2
    assert "| S1 cvae, STB | 1 | 100 | 30.00 | 29.00 |" in text
    for name, epe in (("Spurr et al.", "8.56"), ("Yang et al. (dVAE)", "8.66"),
                      ("Zimmermann & Brox", "8.68")):
        assert f"| {name} | {epe} |" in text
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        assert [r["name"] for r in json.load(f)["rows"]] == [r.name for r in suites.STB]


def _runner(*args):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=repo,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def test_runner_rows_flag_keeps_the_chosen_rows_and_names_unknown_ones(tmp_path):
    args = ["--suite=table1", "--seeds=3", f"--out={tmp_path / 'results'}", "--dry_run",
            f"--model_root={tmp_path / 'runs'}"]
    listed = _runner(*args, "--rows=s1,s4")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "6 runs in table1: 0 finished" in listed.stdout
    names = [line.split(":")[0].strip() for line in listed.stdout.splitlines()
             if line.startswith("  s")]
    assert names == [f"s{k}_seed{seed}" for seed in range(3) for k in (1, 4)]
    wrong = _runner(*args, "--rows=s1,s4_noview")
    assert wrong.returncode != 0
    assert "--rows=s1,s4_noview: ['s4_noview'] not among the rows of table1" in wrong.stderr


def test_runner_lists_the_stb_suite_and_refuses_runs_of_other_code(tmp_path):
    out = tmp_path / "results"
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--suite=stb", f"--out={out}", f"--model_root={tmp_path / 'runs'}",
            f"--stb_dir={empty}"]
    listed = _runner(*args, "--dry_run")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "3 runs in stb: 0 finished" in listed.stdout
    for name, strategy in (("s1_stb", "cvae"), ("s3_stb", "kl"), ("s4_stb", "poe")):
        assert (f"  {name}_seed0: train.py --strategy={strategy} --seed=0 "
                f"--labelled_fraction=1.0 --view_correction --data=stb --data_dir={empty}"
                in listed.stdout)
    # A finished run made at another commit: listed with a note, refused for real.
    other = dict(_record(suites.Run(suites.STB[0], 0), 30.0, tmp_path), preset="experiment",
                 data="stb", config={"train": {"max_steps": 3000}},
                 provenance={"commit": "0" * 40})
    report.write_metrics(other, str(out / "runs" / "s1_stb_seed0.json"))
    listed = _runner(*args, "--dry_run")
    assert listed.returncode == 0 and "2 to go" in listed.stdout
    assert "note: a run would be refused now:" in listed.stdout
    refused = _runner(*args)
    assert refused.returncode != 0 and "--result_neutral=REASON" in refused.stderr
    assert not os.listdir(empty) and not (tmp_path / "runs").exists()  # nothing generated


@pytest.mark.slow
def test_runner_trains_evaluates_resumes_rescores_and_refuses_another_budget(small_rhd,
                                                                              tmp_path):
    """experiments.run as a user runs it: two runs of the view suite at the smoke preset."""
    import subprocess
    import sys

    from data_pipeline.synthetic.builder import GENERATOR_VERSION
    from experiments import provenance

    data_dir = small_rhd
    out = tmp_path / "results"
    args = [sys.executable, "-m", "experiments.run", "--suite=view", "--preset=smoke",
            "--seeds=1", f"--data_dir={data_dir}", f"--cache_dir={tmp_path / 'cache'}",
            f"--out={out}", f"--model_root={tmp_path / 'runs'}"]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = provenance.git_state(repo)
    # A checkout with uncommitted changes (or none at all) needs the declaration to add runs.
    declare = ([] if code["commit"] and not code["dirty"]
               else ["--result_neutral=a test of the runner"])

    def run(*extra):
        return subprocess.run(args + list(extra), cwd=repo, capture_output=True, text=True,
                              timeout=900, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

    # Both runs at once, one thread per operation each.
    first = run(*declare, "--jobs=2", "--intra_op_threads=1")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 runs in view: 0 finished" in first.stdout
    assert "[s4_seed0] $ " in first.stdout and "[s4_noview_seed0] $ " in first.stdout
    assert sorted(os.listdir(out / "runs")) == ["s4_noview_seed0.json", "s4_seed0.json"]
    record = json.loads((out / "runs" / "s4_noview_seed0.json").read_text())
    assert record["steps"] == 4 and record["config"]["data"]["view_correction"] is False
    assert record["metrics"]["num_samples"] == 4
    assert [step for step, _ in record["validation_epe_mm"]] == [2, 4]  # smoke: every 2 steps
    origin = record["provenance"]
    assert (origin["commit"], origin["dirty"]) == (code["commit"], code["dirty"])
    assert origin["result_neutral"] in ((None,) if not declare else
                                        (None, "a test of the runner"))
    assert origin["cpu_count"] == os.cpu_count() and origin["intra_op_threads"] == 1
    assert origin["code_commit"] == provenance.code_commit(repo, code["commit"])
    # The reference row names the code and data that made it too.
    mean_pose = json.loads((out / "mean_pose.json").read_text())
    assert mean_pose["provenance"]["data"]["fingerprint"] == origin["data"]["fingerprint"]
    assert mean_pose["command"].startswith("python -m evaluation.mean_pose")
    assert "viewpoint correction lowers S4's EPE | 1 |" in (out / "claims.md").read_text()
    assert origin["data"]["generator"] == {"format": "rhd", "num_train": 8, "num_test": 4,
                                           "seed": 3, "generator_version": GENERATOR_VERSION}
    assert origin["data"]["fingerprint"] == provenance.data_fingerprint(data_dir)
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary["rows"]] == ["S4 poe", "S4 poe, no view correction"]
    for name in ("view.md", "table1.md", "fig3.png", "fig4.png", "pck_strategies.png"):
        assert (out / name).is_file(), name

    again = run()
    assert again.returncode == 0 and "2 finished" in again.stdout and "0 to go" in again.stdout
    assert "$ " not in again.stdout  # nothing trained or evaluated again

    # Every model the runner trained is accepted by today's evaluate.py, with the same score.
    rescored = run("--rescore")
    assert rescored.returncode == 0, rescored.stdout[-3000:] + rescored.stderr[-3000:]
    for name in ("s4_seed0", "s4_noview_seed0"):
        now = json.loads((tmp_path / "runs" / name / "eval_rescore" / "metrics.json")
                         .read_text())["epe_mean_mm"]
        recorded = json.loads((out / "runs" / f"{name}.json").read_text())
        assert now == pytest.approx(recorded["metrics"]["epe_mean_mm"], abs=1e-4)
        assert f"  {name}: EPE mean" in rescored.stdout

    other = run("--max_steps=6")
    assert other.returncode != 0 and "another data set, preset or step budget" in other.stderr


def _poses_with_errors(errors_mm, visible):
    """(gt, pred, visible) whose keypoint j of sample i is off by errors_mm[i] along x."""
    gt = np.random.default_rng(0).normal(size=(len(errors_mm), 21, 3)) * 30.0
    pred = gt.copy()
    pred[..., 0] += np.asarray(errors_mm, float)[:, None]
    return pred, gt, np.asarray(visible, np.float32)


def test_epe_by_occlusion_groups_samples_by_hidden_keypoints():
    visible = np.ones((4, 21))
    visible[1, :7] = 0    # 7 hidden
    visible[2, :12] = 0   # 12 hidden
    visible[3, :] = 0     # all hidden: counted in its bin, no error to average
    pred, gt, vis = _poses_with_errors([1.0, 2.0, 3.0, 50.0], visible)
    errors = protocol.keypoint_errors(pred, gt)
    assert report.epe_by_occlusion(errors, vis) == [
        (1, pytest.approx(1.0)), (1, pytest.approx(2.0)), (2, pytest.approx(3.0))]
    assert report.epe_by_occlusion(errors, vis, bins=((1, 6), (21, 21))) == [(0, None),
                                                                            (1, None)]
    # Hidden keypoints: joint j is hidden in samples 1-3 for j < 7 (errors 2, 3, 50 mm), in
    # samples 2-3 for 7 <= j < 12 (3, 50), in sample 3 alone after (50).
    expected = (7 * np.mean([2.0, 3.0, 50.0]) + 5 * np.mean([3.0, 50.0]) + 9 * 50.0) / 21
    assert report.hidden_keypoint_epe(errors, vis) == pytest.approx(expected)
    assert report.hidden_keypoint_epe(errors, np.ones((4, 21))) is None


def test_occlusion_table_averages_the_seeds_with_predictions(tmp_path):
    out = str(tmp_path / "results")
    visible = np.ones((2, 21))
    visible[1, :10] = 0
    for seed, errors in ((0, [2.0, 4.0]), (1, [4.0, 8.0])):
        run = suites.Run(suites.S1, seed)
        report.write_metrics(_record(run, 30.0, tmp_path),
                             os.path.join(out, "runs", run.name + ".json"))
        pred, gt, vis = _poses_with_errors(errors, visible)
        os.makedirs(tmp_path / run.name)
        np.savez(tmp_path / run.name / "predictions.npz", pred=pred, gt=gt, visible=vis)
    # A finished run whose models are elsewhere (no predictions.npz) is left out of the table.
    report.write_metrics(_record(suites.Run(suites.S4, 0), 25.0, tmp_path),
                         os.path.join(out, "runs", "s4_seed0.json"))
    written = report.write_all(out, mean_pose=None, setting="test setting")
    path = os.path.join(out, "occlusion.md")
    assert path in written
    with open(path) as f:
        text = f.read()
    assert ("0-5 hidden (1 samples) | 6-9 hidden (0 samples) | 10-21 hidden (1 samples) | "
            "hidden keypoints |") in text
    # Hidden keypoints: the first 10 of sample 1, off by 4 and 8 mm in the two seeds.
    assert "| S1 cvae | 2 | 3.00 | - | 6.00 | 6.00 |" in text
    assert "S4 poe" not in text


def test_demo_record_sets_the_model_beside_the_mean_pose_with_provenance(tmp_path):
    import subprocess
    import sys

    from data_pipeline.synthetic.builder import MARKER

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model, data = tmp_path / "demo", tmp_path / "data"
    for sub in ("eval_test", "mean_pose"):
        (model / sub).mkdir(parents=True)
    data.mkdir()
    (data / MARKER).write_text(json.dumps({"format": "rhd", "seed": 0}))
    metrics = {"epe_mean_mm": 45.0, "epe_median_mm": 44.0, "auc_0_50": 0.25, "auc_20_50": 0.38,
               "num_samples": 200, "pck": [0.1]}
    (model / "eval_test" / "metrics.json").write_text(
        json.dumps(dict(metrics, checkpoint=str(model / "ckpt-1500"))))
    (model / "mean_pose" / "metrics.json").write_text(json.dumps(dict(metrics, epe_mean_mm=60.0)))
    (model / "config.json").write_text(json.dumps({"train": {"max_steps": 1500}}))
    out = tmp_path / "results" / "demo.json"

    def demo(*args):
        return subprocess.run([sys.executable, "-m", "experiments.demo", f"--model={model}",
                               f"--data_dir={data}", *args], cwd=repo, capture_output=True,
                              text=True, timeout=120)

    done = demo(f"--out={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test EPE: model 45.00 mm, training mean pose 60.00 mm, ratio 0.75" in done.stdout
    record = json.loads(out.read_text())
    assert record["ratio"] == pytest.approx(0.75) and record["model"]["num_samples"] == 200
    assert record["mean_pose"]["epe_mean_mm"] == 60.0 and "pck" not in record["model"]
    assert record["config"] == {"train": {"max_steps": 1500}}
    assert record["provenance"]["data"]["generator"] == {"format": "rhd", "seed": 0}
    assert record["checkpoint"].endswith("ckpt-1500")
    (model / "mean_pose" / "metrics.json").unlink()
    missing = demo(f"--out={out}")
    assert missing.returncode != 0 and "mean_pose/metrics.json: not readable" in missing.stderr
    assert json.loads(out.read_text()) == record  # the last record is kept
