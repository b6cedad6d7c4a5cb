"""Resume support: fast input checksums, per-row fingerprints and ``run.json``.

A row is skipped on a re-run when its fingerprint (ctbone version and code, analysis
parameters, per-row overrides, input checksums) is unchanged and its scan
folder holds the completeness marker written last by `write_scan_outputs`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path

from ..report.safeio import write_json

log = logging.getLogger(__name__)
RUN_FILE = "run.json"


def input_checksum(path) -> str:
    """SHA-256 of the names, sizes and modification times of the files of an input (fast: no pixel reads).

    A folder contributes every file below it (sorted); a file contributes itself and, for a MetaImage
    header (.mhd), the data files with the same stem beside it.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        base = path
    else:
        files = [path]
        if path.suffix.lower() == ".mhd":
            files += sorted(p for p in path.parent.glob(path.stem + ".*") if p != path and p.is_file())
        base = path.parent
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of ctbone's own source files (names and contents): results change with the code even where the
    version number does not (a development install, a patched copy), and a re-run must then recompute."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for f in sorted(package.rglob("*.py")):
        digest.update(f.relative_to(package).as_posix().encode() + b"\0")
        digest.update(f.read_bytes())
    return digest.hexdigest()


def row_fingerprint(*, version: str, parameters: dict, overrides: dict, checksums: dict) -> str:
    """A stable hash of everything a row's result depends on (the code too: `code_digest`)."""
    blob = json.dumps({"version": version, "code": code_digest(), "parameters": parameters, "overrides": overrides,
                       "inputs": checksums}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def load_run(outdir) -> dict:
    """The previous ``run.json`` of ``outdir`` ({} when absent or unreadable)."""
    path = Path(outdir) / RUN_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s); every scan will be recomputed", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def save_run(outdir, data: dict) -> Path:
    """Write ``run.json`` atomically."""
    return write_json(Path(outdir) / RUN_FILE, data)
