"""Run provenance: the checkout's commit and dirt, the data set's identity, the refusal."""
import json
import os
import re
import subprocess

import pytest

from data_pipeline.synthetic.builder import MARKER
from experiments import provenance


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A git checkout with one commit holding code and a results file."""
    root = tmp_path / "repo"
    (root / "results").mkdir(parents=True)
    (root / "code.py").write_text("x = 1\n")
    (root / "results" / "table.md").write_text("| a |\n")
    _git(root, "init", "-q")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    return root


def test_git_state_names_the_commit_and_ignores_results(repo, tmp_path):
    state = provenance.git_state(str(repo))
    assert len(state["commit"]) == 40 and state["dirty"] is False
    # Results written or committed later do not make the code dirty.
    (repo / "results" / "table.md").write_text("| b |\n")
    (repo / "results" / "runs").mkdir()
    (repo / "results" / "runs" / "r.json").write_text("{}")
    assert provenance.git_state(str(repo))["dirty"] is False
    # A changed or new file elsewhere does.
    (repo / "code.py").write_text("x = 2\n")
    (repo / "new.py").write_text("")
    state = provenance.git_state(str(repo))
    assert state["dirty"] is True and sorted(state["dirty_paths"]) == ["code.py", "new.py"]
    outside = tmp_path / "plain"
    outside.mkdir()
    assert provenance.git_state(str(outside)) == {"commit": None, "dirty": None,
                                                  "dirty_paths": []}


def test_code_refusal_of_other_commits_and_dirty_trees():
    head = {"commit": "a" * 40, "dirty": False, "dirty_paths": []}
    same = {"r1": {"provenance": {"commit": "a" * 40}}}
    assert provenance.code_refusal("res", {}, head) is None
    assert provenance.code_refusal("res", same, head) is None
    other = dict(same, r2={"provenance": {"commit": "b" * 40}}, r3={"name": "old"})
    message = provenance.code_refusal("res", other, head)
    assert message.startswith("res/runs holds finished runs made by other code")
    assert f"{'b' * 40}: r2" in message and "no commit recorded: r3" in message
    assert f"the current code is {'a' * 40}" in message and "--result_neutral" in message
    dirty = dict(head, dirty=True, dirty_paths=["model/losses.py"])
    message = provenance.code_refusal("res", {}, dirty)
    assert ("uncommitted changes outside results/, tests/, benchmarks/, .ci/ and the Markdown "
            "files (model/losses.py)") in message
    # Outside a checkout the code cannot be compared with a finished run's.
    unknown = {"commit": None, "dirty": None, "dirty_paths": []}
    assert provenance.code_refusal("res", {}, unknown) is None
    assert "unknown (not a git checkout)" in provenance.code_refusal("res", same, unknown)


def _commit(repo, message):
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    return provenance.git_state(str(repo))


def test_commits_that_change_only_results_documentation_and_tests_hold_the_same_code(repo):
    first = provenance.git_state(str(repo))
    finished = {"r1": {"provenance": {"commit": first["commit"]}}}
    # Finished runs and a README committed: another commit, the same code, still clean.
    (repo / "results" / "runs").mkdir()
    (repo / "results" / "runs" / "r1.json").write_text("{}")
    (repo / "README.md").write_text("# results so far\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "notes.md").write_text("more\n")
    for directory in ("tests", "benchmarks", ".ci"):
        (repo / directory).mkdir()
        (repo / directory / "check.py").write_text("y = 2\n")
    assert provenance.git_state(str(repo))["dirty"] is False
    docs = _commit(repo, "results and docs")
    assert docs["commit"] != first["commit"] and docs["dirty"] is False
    assert provenance.same_code(str(repo), first["commit"], docs["commit"])
    assert provenance.code_refusal("res", finished, docs, str(repo)) is None
    # Without the checkout to compare in, another commit is other code.
    assert "made by other code" in provenance.code_refusal("res", finished, docs)
    # A code change is other code; so is a commit the checkout does not know.
    (repo / "code.py").write_text("x = 3\n")
    code = _commit(repo, "code")
    assert not provenance.same_code(str(repo), first["commit"], code["commit"])
    message = provenance.code_refusal("res", finished, code, str(repo))
    assert f"{first['commit']}: r1" in message
    assert not provenance.same_code(str(repo), "f" * 40, code["commit"])
    # The code version a record names: the newest commit at or before it that changed code.
    later_docs = (repo / "README.md").write_text("# more results\n") and _commit(repo, "docs")
    assert provenance.code_commit(str(repo), docs["commit"]) == first["commit"]
    assert provenance.code_commit(str(repo), later_docs["commit"]) == code["commit"]
    assert provenance.code_commit(str(repo), None) is None
    record = provenance.run_provenance(str(repo), later_docs, None, intra_op_threads=1,
                                       repo=str(repo))
    assert (record["commit"], record["code_commit"]) == (later_docs["commit"], code["commit"])
    assert record["intra_op_threads"] == 1


def test_no_module_of_a_run_imports_the_paths_that_hold_no_code():
    """same_code may ignore tests/, benchmarks/ and .ci/ only while train.py, evaluate.py, the
    runner and the packages they use import nothing from there."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sources = ["train.py", "evaluate.py"]
    for package in ("model", "data_pipeline", "evaluation", "experiments", "common", "tf_ops"):
        for folder, _, files in os.walk(os.path.join(root, package)):
            sources += [os.path.relpath(os.path.join(folder, f), root)
                        for f in files if f.endswith(".py")]
    assert "experiments/run.py" in sources and "model/strategies.py" in sources
    packages = [d for d in provenance.NOT_CODE_DIRS
                if d.isidentifier() and d != provenance.RESULTS_DIR]  # .ci holds no package
    assert packages == ["tests", "benchmarks"]
    pattern = re.compile(r"^\s*(?:from|import)\s+(" + "|".join(packages) + r")\b", re.M)
    offenders = [s for s in sources if pattern.search(open(os.path.join(root, s)).read())]
    assert offenders == []


def test_record_provenance_of_a_synthetic_set(tmp_path):
    data = tmp_path / "data"
    (data / "training" / "color").mkdir(parents=True)
    (data / "training" / "color" / "00000.png").write_bytes(b"\x00" * 10)
    (data / "training" / "anno_training.pickle").write_bytes(b"labels")
    settings = {"format": "rhd", "num_train": 1, "num_test": 1, "seed": 0,
                "generator_version": 1}
    (data / MARKER).write_text(json.dumps(settings))
    code = {"commit": "c" * 40, "dirty": True, "dirty_paths": ["a.py"]}
    record = provenance.run_provenance(str(data), code, "comments only")
    assert record["commit"] == "c" * 40 and record["dirty"] is True
    assert record["result_neutral"] == "comments only"
    assert record["cpu_count"] == os.cpu_count()
    assert record["cpu_model"] == provenance.cpu_model() and record["code_commit"] is None
    assert record["intra_op_threads"] is None
    assert record["data"]["generator"] == settings
    first = record["data"]["fingerprint"]
    assert (first["files"], first["bytes"]) == (3, 10 + 6 + len(json.dumps(settings)))
    # Other labels of the same size, or an image of another size: another fingerprint.
    (data / "training" / "anno_training.pickle").write_bytes(b"LABELS")
    second = provenance.data_fingerprint(str(data))
    assert second["sha1"] != first["sha1"]
    (data / "training" / "color" / "00000.png").write_bytes(b"\x00" * 11)
    assert provenance.data_fingerprint(str(data))["sha1"] != second["sha1"]
    # Real data sets carry no generator settings.
    os.remove(data / MARKER)
    assert provenance.generator_settings(str(data)) is None
    with pytest.raises(FileNotFoundError, match="not a directory"):
        provenance.data_fingerprint(str(tmp_path / "missing"))
