"""The diagnostic benchmarks run as documented (tiny presets; their figures are not checked)."""
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(data_dir, cache_dir) of 12 training samples, shared by the benchmarks' runs (the first
    writes the smoke preset's cache, the others read it)."""
    from data_pipeline import synthetic

    root = tmp_path_factory.mktemp("benchmarks")
    synthetic.generate("rhd", str(root / "data"), num_train=12, num_test=2, seed=5, workers=1)
    return str(root / "data"), str(root / "cache")


@pytest.mark.slow
def test_pose_head_trains_every_row_from_the_same_start(data, tmp_path):
    data_dir, cache_dir = data

    def run(*flags):
        return subprocess.run(
            [sys.executable, os.path.join(REPO, "benchmarks", "pose_head.py"), "--preset=smoke",
             f"--data_dir={data_dir}", f"--cache_dir={cache_dir}", "--steps=2",
             "--eval_every=1", "--seed=1", *flags],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

    done = run("--samples=8")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "fitting 8 fixed training samples" in done.stdout
    # Every row's encoder starts from the same variables (a seed other than the preset's 0, which
    # the S1 row's Trainer would otherwise take).
    starts = re.findall(r"^(\w+) +step +0: .*encoder start ([0-9a-f]{12})$", done.stdout, re.M)
    assert [row for row, _ in starts] == ["s1", "mean", "mean_paper", "mean_linear"], done.stdout
    assert len({start for _, start in starts}) == 1, starts
    table = done.stdout.split("by step:\n")[1].splitlines()
    assert table[0].split() == ["row", "1", "2"]
    assert [line.split()[0] for line in table[1:]] == ["s1", "mean", "mean_paper",
                                                       "mean_linear"]
    for line in table[1:]:
        assert all(float(v) > 0 for v in line.split()[1:])

    too_few = run("--samples=2")  # fewer than the smoke preset's batch of 4
    assert too_few.returncode != 0 and "--samples=2" in too_few.stderr


@pytest.mark.slow
def test_loop_times_the_pure_step_update_and_fit_and_records_the_commit(data, tmp_path):
    from experiments import provenance

    data_dir, cache_dir = data
    out = tmp_path / "loop.json"
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "loop.py"), "--preset=smoke",
         "--rows=s1", f"--data_dir={data_dir}", f"--cache_dir={cache_dir}",
         "--steps=1", "--rounds=1", "--warmup_steps=1", "--fit_steps=2", "--repeats=2",
         f"--out={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["code"]["commit"] == provenance.git_state(REPO)["commit"]
    repeats = record["seconds_per_step"]["s1"]
    assert len(repeats) == 2
    for times in repeats:
        assert sorted(times) == ["fit", "pure", "teardown", "update"]
        assert all(times[k] > 0 for k in ("fit", "pure", "update")) and times["teardown"] >= 0
    rates = sorted(t["pure"] / t["fit"] for t in repeats)
    row = record["lines"][2].split()
    assert row[0] == "s1" and float(row[-3]) == pytest.approx(sum(rates) / 2, abs=0.006)
    assert float(row[-1]) == pytest.approx(max(t["teardown"] for t in repeats), abs=0.06)
    low, high = map(float, row[-2].split("-"))
    assert (low, high) == (pytest.approx(rates[0], abs=0.006), pytest.approx(rates[1], abs=0.006))
    # Per repeat two fits, to the warm-up step and then 2 steps on: the second one's last
    # progress line.
    assert done.stdout.count("train: step 3/3") == 2


def test_record_keeps_what_a_benchmark_printed_with_its_commit(tmp_path):
    from experiments import provenance

    out = tmp_path / "emd.json"

    def record(*args):
        return subprocess.run(
            [sys.executable, os.path.join(REPO, "benchmarks", "record.py"), f"--out={out}", "--",
             "benchmarks/emd.py", *args], cwd=tmp_path, capture_output=True, text=True,
            timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

    done = record("--batch=2", "--sizes=8", "--repeats=1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    saved = json.loads(out.read_text())
    assert saved["command"] == "python benchmarks/emd.py --batch=2 --sizes=8 --repeats=1"
    assert saved["code"]["commit"] == provenance.git_state(REPO)["commit"]
    assert saved["cpus"] == os.cpu_count()
    printed = [line for line in done.stdout.splitlines() if not line.startswith("record: ")]
    assert saved["lines"] == printed and saved["lines"][-1].startswith("N = 8: op ")
    # A failing benchmark leaves the previous record as it was.
    before = out.read_text()
    failed = record("--sizes=eight")
    assert failed.returncode != 0 and f"{out} not written" in failed.stderr
    assert out.read_text() == before


def test_a_record_names_no_directory_of_this_machine(tmp_path):
    from benchmarks import record

    path = record.write_record(str(tmp_path / "r.json"), "python benchmarks/x.py",
                               [f"pre-processing -> {REPO}/data/cache/train-1", "done"],
                               extra={"dir": os.path.join(REPO, "runs", "a")})
    saved = json.loads(open(path, encoding="utf-8").read())
    assert saved["lines"] == ["pre-processing -> data/cache/train-1", "done"]
    assert saved["extra"] == {"dir": "runs/a"}
