"""MSN's auction EMD beside ours on the same clouds: its time and its error against the optimum.

MSN (Liu et al., "Morphing and Sampling Network for Dense Point Cloud Completion", AAAI 2020;
github Colin97/MSN-Point-Cloud-Completion, emd/) is the fast public GPU EMD. It runs a fixed
number of auction iterations and does not guarantee a bijection. Its source is not part of this
repository: pass the path of its emd/ folder. The clouds, the reference distances and our CUDA
kernel's times come from our harness, in the same run on the same GPU:

  tf_ops/build/gpu_harness --dump=DIR
  python benchmarks/emd_msn.py --problems=DIR --msn_dir=PATH/TO/MSN/emd

(tf_ops/gpu_check.sh does both when MSN_DIR is set.) The script builds MSN's PyTorch extension
in a temporary folder from a copy of its source, with torch's own build tools and nvcc. It times
MSN with CUDA events under its two published settings (eps 0.005 with 50 iterations for
training, 0.002 with 10,000 for testing). For each N it prints our CUDA median, MSN's median, the
relative error of MSN's distance (the mean of sqrt(dist), as MSN's users compute it) against our
certified distance, which is within 1e-4 of the optimum, and how far MSN's assignment is from a
bijection. MSN takes only multiples of 1024 points. The GPU machine has PyTorch but neither
TensorFlow nor absl, so this script needs only numpy and torch, with argparse for its flags.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

# MSN's published settings: (name, eps, iterations).
SETTINGS = (("train", 0.005, 50), ("test", 0.002, 10000))


def load_problems(directory):
    """The harness's dump: a list of {'n', 'batch', 'xyz1', 'xyz2' (batch, n, 3) float32,
    'distance' (batch,) certified, 'cuda_median_ms' (None without a GPU)}.

    Raises:
      FileNotFoundError: no problems.json in directory.
      ValueError: a cloud file whose size does not match its entry (names the file).
    """
    index = os.path.join(directory, "problems.json")
    if not os.path.isfile(index):
        raise FileNotFoundError(f"{index} is missing: run tf_ops/build/gpu_harness "
                                f"--dump={directory} first")
    with open(index, encoding="utf-8") as f:
        entries = json.load(f)["problems"]
    problems = []
    for entry in entries:
        path = os.path.join(directory, entry["file"])
        values = np.fromfile(path, dtype=np.float32)
        shape = (entry["batch"], entry["n"], 3)
        if values.size != 2 * np.prod(shape):
            raise ValueError(f"{path}: {values.size} floats, expected two clouds of shape {shape}")
        xyz1, xyz2 = values.reshape((2,) + shape)
        problems.append({"n": entry["n"], "batch": entry["batch"], "xyz1": xyz1, "xyz2": xyz2,
                         "distance": np.asarray(entry["distance"], np.float64),
                         "cuda_median_ms": entry["cuda_median_ms"]})
    return problems


def off_bijection(assignment):
    """Per cloud, the fraction of persons not in a one-to-one pair: unassigned (index < 0) or
    sharing their object with an earlier person. assignment: (B, N) int. Returns (B,)."""
    batch, n = assignment.shape
    off = np.zeros(batch)
    for b, row in enumerate(assignment):
        valid = row[(row >= 0) & (row < n)]
        extra = np.bincount(valid, minlength=n) - 1
        off[b] = (n - valid.size + extra[extra > 0].sum()) / n
    return off


def compare(problem, solve, runs):
    """One solver on one dumped problem.

    Args:
      problem: an entry of `load_problems`.
      solve: (xyz1, xyz2) -> (squared distances (B, N), assignment (B, N) int, milliseconds).
      runs: timed solves after one warm-up.

    Returns:
      {'ms': median time, 'error_mean', 'error_max_abs': the relative error of the solver's
      mean distance against the certified one (signed mean over clouds, largest magnitude),
      'bijective': fraction of clouds whose assignment is a bijection, 'off': mean fraction of
      persons off a bijection}.
    """
    solve(problem["xyz1"], problem["xyz2"])
    times = []
    for _ in range(runs):
        squared, assignment, ms = solve(problem["xyz1"], problem["xyz2"])
        times.append(ms)
    distance = np.sqrt(np.maximum(np.asarray(squared, np.float64), 0.0)).mean(axis=1)
    error = (distance - problem["distance"]) / problem["distance"]
    off = off_bijection(np.asarray(assignment))
    return {"ms": float(np.median(times)), "error_mean": float(error.mean()),
            "error_max_abs": float(np.abs(error).max()), "bijective": float((off == 0).mean()),
            "off": float(off.mean())}


def build_msn(msn_dir, build_dir):
    """Builds MSN's extension from a copy of msn_dir in build_dir; returns its emdModule class.

    The copy reads tensors with data_ptr<T>(), which replaced Tensor::data<T>() in PyTorch 2.
    """
    for name in ("emd.cpp", "emd_cuda.cu", "emd_module.py", "setup.py"):
        source = os.path.join(msn_dir, name)
        if not os.path.isfile(source):
            sys.exit(f"error: --msn_dir={msn_dir} has no {name}; pass MSN's emd/ folder")
        shutil.copy(source, build_dir)
    for name in ("emd.cpp", "emd_cuda.cu"):
        path = os.path.join(build_dir, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(".data<", ".data_ptr<"))
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=build_dir,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit("error: building MSN's extension failed:\n" + (proc.stdout + proc.stderr)[-3000:])
    sys.path.insert(0, build_dir)
    from emd_module import emdModule  # pylint: disable=import-outside-toplevel
    return emdModule


def msn_solver(module_class, eps, iterations):
    """A `compare` solver that runs MSN's module on the GPU, timed by CUDA events."""
    import torch  # pylint: disable=import-outside-toplevel
    module = module_class()

    def solve(xyz1, xyz2):
        a = torch.from_numpy(xyz1).cuda()
        b = torch.from_numpy(xyz2).cuda()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        squared, assignment = module(a, b, eps, iterations)
        end.record()
        torch.cuda.synchronize()
        return squared.cpu().numpy(), assignment.cpu().numpy(), start.elapsed_time(end)

    return solve


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", required=True, help="The harness's --dump folder.")
    parser.add_argument("--msn_dir", required=True, help="MSN's emd/ folder (not in this repo).")
    parser.add_argument("--runs", type=int, default=5, help="Timed solves after a warm-up.")
    args = parser.parse_args()
    problems = [p for p in load_problems(args.problems) if p["n"] % 1024 == 0]
    if not problems:
        sys.exit(f"error: {args.problems} holds no problem with N a multiple of 1024, the only "
                 "sizes MSN takes (run the harness with --max_n of at least 1024)")
    with tempfile.TemporaryDirectory() as build_dir:
        module_class = build_msn(os.path.abspath(args.msn_dir), build_dir)
        print("| N | ours, CUDA median (ms) | MSN setting | MSN median (ms) | MSN error, mean "
              "(relative) | largest | clouds bijective | persons off a bijection |")
        print("|---|---|---|---|---|---|---|---|")
        for problem in problems:
            ours = problem["cuda_median_ms"]
            for name, eps, iterations in SETTINGS:
                row = compare(problem, msn_solver(module_class, eps, iterations), args.runs)
                print(f"| {problem['n']} | {'-' if ours is None else f'{ours:.3f}'} | {name} "
                      f"(eps {eps}, {iterations} iterations) | {row['ms']:.3f} | "
                      f"{row['error_mean']:+.2e} | {row['error_max_abs']:.2e} | "
                      f"{row['bijective']:.0%} | {row['off']:.2%} |", flush=True)
    print(f"B = {problems[0]['batch']} uniform clouds in the unit cube; errors against our "
          "certified distances, which are within 1e-4 of the optimum.")


if __name__ == "__main__":
    main()
