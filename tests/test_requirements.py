"""requirements.txt pins exactly what the project imports."""
import ast
import configparser
import importlib.metadata
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Not the project's sources: the environment, data, run outputs, the EMD op's build.
SKIPPED_DIRS = {".git", ".venv", "data", "runs", "build", "__pycache__", ".pytest_cache"}


def _normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned():
    with open(os.path.join(REPO, "requirements.txt")) as f:
        lines = [line.split("#")[0].strip() for line in f]
    return {_normalise(line.split("==")[0]) for line in lines if line}


def _imported_modules():
    """Top-level names of every module the project's .py files import."""
    names = set()
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name)) as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        names.update(alias.name.split(".")[0] for alias in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.level == 0:
                        names.add(node.module.split(".")[0])
    return names


def _required_plugins():
    """The pytest plugins that pytest.ini requires: used, though no module imports them."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "pytest.ini"))
    return {_normalise(name) for name in parser["pytest"].get("required_plugins", "").split()}


def test_every_pinned_package_is_imported():
    distributions = importlib.metadata.packages_distributions()  # module -> distributions
    imported = {_normalise(dist) for module in _imported_modules()
                for dist in distributions.get(module, [])}
    assert _required_plugins() == {"pytest-timeout", "pytest-xdist"}
    assert _pinned() - imported - _required_plugins() == set(), (
        "pinned in requirements.txt but imported nowhere")
