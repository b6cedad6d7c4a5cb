"""Find candidate scan files under a path and say why others are skipped."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# files scanner software leaves beside an export; skipped without opening them
_NOT_IMAGES = {".log", ".txt", ".csv", ".xml", ".json", ".ini", ".pdf", ".html", ".htm", ".zip", ".md", ".doc",
               ".docx", ".xls", ".xlsx", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".crv", ".raw", ".mhd"}
# files without the DICM marker are opened (forced) only when their name suggests DICOM
_MAYBE_DICOM = {".dcm", ".dicom", ".ima", ".img", ""}


def has_dicom_marker(path: Path) -> bool:
    """True when the file has the DICOM Part 10 preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def list_files(path: Path) -> list[Path]:
    """Every regular file under ``path`` (recursively), in a stable order; hidden files excluded."""
    if path.is_file():
        return [path]
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / name for name in sorted(files) if not name.startswith("."))
    return found


def dicom_candidates(path: Path) -> tuple[list[tuple[Path, bool]], list[tuple[str, str]]]:
    """Split the files under ``path`` into DICOM candidates and skipped files.

    Returns
    -------
    candidates : list of (Path, has_marker)
    skipped : list of (file, reason)
    """
    candidates, skipped = [], []
    for file in list_files(path):
        suffix = file.suffix.lower()
        if file.name.upper() == "DICOMDIR":
            skipped.append((str(file), "DICOMDIR index, not an image"))
        elif has_dicom_marker(file):
            candidates.append((file, True))
        elif suffix in _NOT_IMAGES:
            skipped.append((str(file), f"not DICOM ({suffix} file)"))
        elif suffix in _MAYBE_DICOM or suffix[1:].isdigit():
            candidates.append((file, False))
        else:
            skipped.append((str(file), "not DICOM (no DICM marker)"))
    return candidates, skipped
