"""Files written under a temporary name and renamed into place, so that a killed run never leaves a
half-written file under the final name.

Low in the data flow (it imports only ctbone.errors) so that every stage that writes — the renderer's pictures and
meshes, the report's tables and masks — uses the same steps; `ctbone.report.safeio` re-exports them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

# mkstemp creates 0600 files; outputs are meant to be shared like any other file
FILE_MODE = 0o644


def replace_into(tmp, path) -> Path:
    """Give a finished temporary file the normal permissions and rename it to ``path`` (atomic)."""
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)
    return Path(path)


@contextmanager
def written_into(path, *, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary file beside ``path`` (ending in ``suffix``: writers that choose the format by the name need
    it) for the block to write; renamed to ``path`` when the block ends, deleted when it raises.

    >>> with written_into(out / "mask.nii.gz", suffix=".nii.gz") as tmp:   # doctest: +SKIP
    ...     sitk.WriteImage(image, tmp, True)
    """
    path = Path(path)
    if path.is_dir():  # os.replace would refuse it after the work, with an IsADirectoryError
        raise OutputError(f"{path}: is a folder; a file name is needed here. Potential fix: add the file's name")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        replace_into(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_into(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return path
