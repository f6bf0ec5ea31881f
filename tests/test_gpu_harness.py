"""The standalone GPU harness (tf_ops/gpu_harness.cc, run by tf_ops/gpu_check.sh) and the
comparison with MSN's EMD that reads its dump (benchmarks/emd_msn.py).

The harness's host side runs on any machine: the certificate it applies to every solve (a
permutation whose mean cost is within the tolerance of the lower bound that the solve's own prices
give, recomputed in double), its self-test, the shapes on the CPU kernel and the dump. Built here
for one architecture into a temporary folder, so the build that gpu_check.sh makes is left alone.
The comparison's MSN half needs a GPU and MSN's source; its bookkeeping is checked here with
scipy's exact assignment and a nearest-neighbour assignment as stand-ins.
"""
import os
import shutil
import subprocess

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from benchmarks import emd_msn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NVCC = shutil.which("nvcc")
KINDS = ("uniform", "clustered", "identical", "permuted", "duplicated")
SIZES = (1, 2, 31, 33, 256, 1000, 1024)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    if NVCC is None:
        pytest.skip("nvcc is not on the PATH: the harness cannot be built")
    build = tmp_path_factory.mktemp("harness")
    subprocess.run(["make", "--no-print-directory", "-C", os.path.join(ROOT, "tf_ops"),
                    "harness", f"BUILD={build}", "CUDA_ARCHS=75", f"NVCC={NVCC}"],
                   check=True, capture_output=True, text=True)
    return str(build / "gpu_harness")


def test_every_shape_is_certified_and_the_certificate_rejects_worse_matchings(harness):
    run = subprocess.run([harness, "--max_n=1024"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    self_test = [line for line in lines if line.startswith("certificate self-test")]
    assert len(self_test) == 1 and self_test[0].endswith("ok"), run.stdout
    assert "worse by" in self_test[0] and "rejected: yes; two persons" in self_test[0]
    shapes = [line for line in lines if line.split(" ")[0] in KINDS]
    assert len(shapes) == len(KINDS) * len(SIZES), run.stdout
    for kind in KINDS:
        for n in SIZES:
            row = [line for line in shapes if line.startswith(kind) and f"N = {n:4d}," in line]
            assert len(row) == 1 and row[0].endswith("; ok"), (kind, n, run.stdout)
            assert "CPU gap" in row[0] and "NOT CERTIFIED" not in row[0]
    # Coincident clouds have optimum 0: only the epsilon floor can accept them.
    assert all("epsilon floor" in line for line in shapes
               if line.split(" ")[0] in ("identical", "permuted") and "N =    1," not in line)
    assert lines[-1] == "gpu_harness: all checks passed"


def test_unknown_flags_are_refused_by_name(harness):
    run = subprocess.run([harness, "--max-n=3"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "unknown argument '--max-n=3'" in run.stderr


@pytest.fixture(scope="module")
def dump(harness, tmp_path_factory):
    directory = tmp_path_factory.mktemp("dump")
    run = subprocess.run([harness, "--max_n=256", f"--dump={directory}"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return str(directory)


def _exact(xyz1, xyz2):
    """scipy's optimal assignment in the shape of MSN's output, 1 ms."""
    squared, assignment = [], []
    for p, q in zip(xyz1.astype(np.float64), xyz2.astype(np.float64)):
        cost = cdist(p, q)
        rows, cols = linear_sum_assignment(cost)
        squared.append(cost[rows, cols] ** 2)
        assignment.append(cols)
    return np.array(squared), np.array(assignment), 1.0


def _nearest(xyz1, xyz2):
    """Each point to its nearest neighbour: below the optimum, and no bijection."""
    squared, assignment = [], []
    for p, q in zip(xyz1, xyz2):
        cost = cdist(p, q)
        cols = cost.argmin(axis=1)
        squared.append(cost[np.arange(len(p)), cols] ** 2)
        assignment.append(cols)
    return np.array(squared), np.array(assignment), 2.0


def test_the_dump_holds_the_timed_clouds_with_distances_within_the_tolerance_of_the_optimum(dump):
    (problem,) = emd_msn.load_problems(dump)
    assert problem["n"] == 256 and problem["batch"] == 32
    assert problem["xyz1"].shape == problem["xyz2"].shape == (32, 256, 3)
    assert problem["cuda_median_ms"] is None  # no GPU here
    optimum = _exact(problem["xyz1"], problem["xyz2"])[0]
    optimum = np.sqrt(optimum).mean(axis=1)
    relative = (problem["distance"] - optimum) / optimum
    assert np.all(relative >= -1e-6) and np.all(relative <= 1e-4 + 1e-6), relative


def test_compare_reports_an_exact_solver_as_exact_and_a_nearest_neighbour_one_as_off(dump):
    (problem,) = emd_msn.load_problems(dump)
    exact = emd_msn.compare(problem, _exact, runs=1)
    assert abs(exact["error_mean"]) <= 1e-4 and exact["error_max_abs"] <= 1e-4
    assert exact["bijective"] == 1.0 and exact["off"] == 0.0 and exact["ms"] == 1.0
    nearest = emd_msn.compare(problem, _nearest, runs=3)
    assert nearest["error_mean"] < -0.05 and nearest["ms"] == 2.0
    assert nearest["bijective"] == 0.0 and 0.1 < nearest["off"] < 0.9


def test_off_bijection_counts_unassigned_and_shared_objects():
    assignment = np.array([[0, 1, 2, 3], [1, 1, 1, 0], [-1, 0, 1, 2]])
    np.testing.assert_allclose(emd_msn.off_bijection(assignment), [0.0, 0.5, 0.25])


def test_a_truncated_cloud_file_is_named(dump, tmp_path):
    for name in os.listdir(dump):
        shutil.copy(os.path.join(dump, name), tmp_path)
    (cloud,) = [n for n in os.listdir(tmp_path) if n.endswith(".f32")]
    with open(tmp_path / cloud, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ValueError, match=cloud):
        emd_msn.load_problems(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="gpu_harness --dump"):
        emd_msn.load_problems(str(tmp_path / "nothing"))
