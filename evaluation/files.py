"""Atomic file output: write under a temporary name in the target directory, then rename."""
import os
import tempfile
from typing import BinaryIO, Callable


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> str:
    """Calls write(binary file) on a temporary file next to `path`, then renames it to `path`.

    A rename within one directory is atomic, so `path` is either its previous content or the
    complete new one, never a partial write; on failure the temporary file is removed.

    Returns:
      path.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        # mkstemp creates files readable by the owner only; outputs are meant to be shared.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
