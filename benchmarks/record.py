r"""Runs a benchmark and keeps what it printed: the committed source of the figures
docs/benchmarks.md quotes.

  python benchmarks/record.py --out=results/benchmarks/emd.json -- benchmarks/emd.py
  python benchmarks/record.py --out=results/benchmarks/train_step_experiment.json -- \
      benchmarks/train_step.py --preset=experiment

The benchmark runs as a subprocess with this interpreter; its standard output is echoed and, when
it exits 0, written to --out as JSON: the command, the code (commit, dirty flag and paths, as
experiments/provenance.py gives them), the machine's core count and the printed lines. A failed
benchmark writes nothing and its exit code is returned; an existing --out is replaced only by a
complete new file.
"""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

from evaluation.files import atomic_write  # noqa: E402
from experiments import provenance  # noqa: E402

FLAGS = flags.FLAGS


def write_record(path, command, lines, **extra):
    """Writes {command, code, cpus, lines, **extra} to path as JSON (atomically), with this
    checkout's paths written relative to it (committed records name no machine's directories)."""
    record = provenance.portable({"command": command, "code": provenance.git_state(REPO),
                                  "cpus": os.cpu_count(), "lines": list(lines), **extra}, REPO)
    text = json.dumps(record, indent=1) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def main(argv):
    if len(argv) < 2:
        sys.exit("error: name the benchmark after --, e.g. record.py --out=x.json -- "
                 "benchmarks/emd.py")
    script, args = argv[1], argv[2:]
    if not os.path.isfile(os.path.join(REPO, script)):
        sys.exit(f"error: {script}: no such benchmark (a path relative to the repository)")
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line.rstrip("\n"))
    if proc.wait():
        sys.exit(f"error: {script} exited with {proc.returncode}; {FLAGS.out} not written")
    write_record(FLAGS.out, " ".join(["python", script, *args]), lines)
    print(f"record: {FLAGS.out}")


if __name__ == "__main__":
    # Defined here, not at import: benchmarks that import write_record have an --out of their own.
    flags.DEFINE_string("out", None, "JSON file for the record (e.g. "
                        "results/benchmarks/emd.json).")
    flags.mark_flag_as_required("out")
    app.run(main)
