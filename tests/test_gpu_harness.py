"""The standalone GPU harness (tf_ops/gpu_harness.cc, run by tf_ops/gpu_check.sh).

Its host side runs on any machine: the certificate it applies to every solve (a permutation whose
mean cost is within the tolerance of the lower bound that the solve's own prices give, recomputed
in double), its self-test, and the shapes on the CPU kernel. Built here for one architecture into
a temporary folder, so the build that gpu_check.sh makes is left alone.
"""
import os
import shutil
import subprocess

import pytest

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
