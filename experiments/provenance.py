"""Where a run came from: the code's commit, the data set's identity and the machine.

The runner (experiments/run.py) stores `run_provenance` in every run record and, with
`code_refusal`, refuses to add a run made by other code to a results directory. No TensorFlow
here.
"""
import hashlib
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional

from data_pipeline.synthetic.builder import MARKER

# The committed results tree: writing results there must not make the next run's code dirty.
RESULTS_DIR = "results"
# Paths that cannot alter a result: the results themselves, the Markdown documentation, and the
# tests, benchmarks and CI script, which no module of a run imports (tests/test_provenance.py
# checks that). Commits that differ only there hold the same code, and changes there leave a
# tree clean.
NOT_CODE_DIRS = (RESULTS_DIR, "tests", "benchmarks", ".ci")
_NOT_CODE = tuple(f":(exclude){d}" for d in NOT_CODE_DIRS) + (":(exclude,glob)**/*.md",)
# Label files whose content is hashed (the images are fingerprinted by path and size only).
_CONTENT_SUFFIXES = (".pickle", ".mat", ".json")


def _git(repo: str, *args: str) -> Optional[str]:
    """stdout of `git -C repo args`, or None when git is missing or repo is no checkout."""
    try:
        proc = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                              check=False)
    except OSError:
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(repo: str) -> Dict[str, object]:
    """The code version of a checkout.

    Returns:
      {'commit': HEAD's 40-hex hash, or None when repo is not a git checkout (or git is
      missing); 'dirty': whether tracked files differ from HEAD or untracked, unignored files
      exist outside `NOT_CODE_DIRS` and the Markdown files (None without a checkout); 'dirty_paths':
      those paths, as `git status --porcelain` lists them}.
    """
    head = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--untracked-files=all", "--", ".", *_NOT_CODE)
    if head is None or status is None:
        return {"commit": None, "dirty": None, "dirty_paths": []}
    paths = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": head.strip(), "dirty": bool(paths), "dirty_paths": paths}


def data_fingerprint(data_dir: str) -> Dict[str, object]:
    """A cheap identity of a data set directory (seconds for tens of thousands of files).

    sha1 over every file's relative path and size, in sorted order, and over the content of the
    label files (.pickle, .mat, .json): a regenerated or edited set with other labels or other
    image sizes gets another fingerprint; a same-size edit of an image does not.

    Returns:
      {'sha1': hex digest, 'files': number of files, 'bytes': their total size}.

    Raises:
      FileNotFoundError: data_dir is not a directory.
    """
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data_fingerprint: {data_dir} is not a directory")
    entries = []
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        for name in files:
            path = os.path.join(root, name)
            entries.append((os.path.relpath(path, data_dir).replace(os.sep, "/"), path))
    entries.sort()
    digest = hashlib.sha1()
    total = 0
    for rel, path in entries:
        size = os.path.getsize(path)
        total += size
        digest.update(f"{rel}\0{size}\n".encode())
        if rel.endswith(_CONTENT_SUFFIXES):
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return {"sha1": digest.hexdigest(), "files": len(entries), "bytes": total}


def generator_settings(data_dir: str) -> Optional[dict]:
    """The synthetic generator's settings (format, num_train, num_test, seed,
    generator_version) from the marker it writes into a finished set; None for other data."""
    path = os.path.join(data_dir, MARKER)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def portable(value, repo: str):
    """value (a string or JSON-able object) with repo's paths and this interpreter written
    relative to the repository, so that committed results name no machine's directories."""
    text = json.dumps(value).replace(sys.executable, "python").replace(repo + os.sep, "")
    return json.loads(text)


def code_commit(repo: str, commit: Optional[str]) -> Optional[str]:
    """The newest commit at or before `commit` that changed code (anything outside
    `NOT_CODE_DIRS` and the Markdown files): the code version that records of many commits
    share. None without a checkout or commit."""
    if not commit:
        return None
    found = _git(repo, "log", "-1", "--format=%H", commit, "--", ".", *_NOT_CODE)
    return (found.strip() or None) if found is not None else None


def cpu_model() -> Optional[str]:
    """The CPU's model name (Linux /proc/cpuinfo), None where it cannot be read: floating-point
    kernels, and so the last digits of a result, can differ between CPU models."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def run_provenance(data_dir: str, code: Dict[str, object], result_neutral: Optional[str],
                   intra_op_threads: Optional[int] = None,
                   repo: Optional[str] = None) -> Dict[str, object]:
    """The provenance part of a run record.

    Args:
      data_dir: the data set's directory.
      code: `git_state` of the checkout whose code trains the run, taken before it starts.
      result_neutral: the declaration that let a run of other code (or a dirty tree) into the
        results directory (`code_refusal`), else None.
      intra_op_threads: TensorFlow's threads per operation when set (None: its default).
      repo: the checkout, for `code_commit` (None: not recorded).
    """
    return {"commit": code["commit"],
            "code_commit": code_commit(repo, code["commit"]) if repo else None,
            "dirty": code["dirty"], "dirty_paths": list(code["dirty_paths"]),
            "result_neutral": result_neutral, "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(), "intra_op_threads": intra_op_threads,
            "data": {"generator": generator_settings(data_dir),
                     "fingerprint": data_fingerprint(data_dir)}}


def recorded_commits(records: Dict[str, dict]) -> Dict[Optional[str], List[str]]:
    """commit -> names of the finished runs made with it (None: no commit recorded)."""
    commits: Dict[Optional[str], List[str]] = {}
    for name in sorted(records):
        commit = records[name].get("provenance", {}).get("commit")
        commits.setdefault(commit, []).append(name)
    return commits


def same_code(repo: str, commit: str, other: str) -> bool:
    """Whether two commits of repo hold the same code: their trees differ at most in
    `NOT_CODE_DIRS` and Markdown files (committing finished runs, documentation or tests changes
    no code). False when either commit is unknown to repo."""
    changed = _git(repo, "diff", "--name-only", commit, other, "--", ".", *_NOT_CODE)
    return changed is not None and not changed.strip()


def code_refusal(out_dir: str, records: Dict[str, dict], code: Dict[str, object],
                 repo: Optional[str] = None) -> Optional[str]:
    """Why a new run may not join out_dir's finished runs without a declaration, or None.

    Refused: a checkout with uncommitted changes outside `NOT_CODE_DIRS` and the Markdown files
    (its code has no commit to name), and finished runs in out_dir made by other code than HEAD's:
    at a commit whose code differs (`same_code` in repo; without repo, any other commit), or
    with none recorded (runs of older runners, or made outside a git checkout).
    """
    current = code["commit"]
    if code["dirty"]:
        shown = ", ".join(code["dirty_paths"][:5]) + (", ..." if len(code["dirty_paths"]) > 5
                                                      else "")
        return (f"the checkout has uncommitted changes outside "
                f"{', '.join(d + '/' for d in NOT_CODE_DIRS)} and the Markdown files ({shown}), so "
                f"the runs would have no commit that holds their code; commit them, or pass "
                f"--result_neutral=REASON if the change cannot alter results")
    others = {c: names for c, names in recorded_commits(records).items()
              if c is None or (c != current and not (
                  repo and current and same_code(repo, c, current)))}
    if not others:
        return None
    listed = "; ".join(f"{c or 'no commit recorded'}: {', '.join(names[:3])}"
                       + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                       for c, names in sorted(others.items(), key=lambda kv: kv[0] or ""))
    now = current or "unknown (not a git checkout)"
    return (f"{out_dir}/runs holds finished runs made by other code ({listed}); the current "
            f"code is {now}. Use another --out, or pass --result_neutral=REASON if the change "
            f"between them cannot alter results")
