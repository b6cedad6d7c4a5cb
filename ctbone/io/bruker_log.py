"""Bruker SkyScan logs: what a ``*_rec.log`` (NRecon's reconstruction log) says of the slices beside it.

A reconstruction log repeats the acquisition's [System] and [Acquisition] sections, then its own
[Reconstruction] section: the slices' pixel size, size and the attenuation range mapped to their gray values.
An acquisition log alone (no [Reconstruction]) sits beside the scanner's projections, not beside slices.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ScanReadError


def read_rec_log(folder: Path) -> dict | None:
    """What a Bruker log in ``folder`` (a ``*_rec.log`` first) says of the slices: ``file``, ``pixel_size_mm`` and,
    None where not given, ``width`` and ``height`` (pixels) and ``attenuation_range`` (the CS to image
    conversion's [min, max]); None without a log giving a pixel size.

    A reconstruction log holds two pixel sizes: the projections' ``Image Pixel Size (um)`` under [Acquisition]
    and the slices' ``Pixel Size (um)`` under [Reconstruction], which differs when NRecon resized the
    reconstruction; the slices' is taken, the projections' only from a log without a [Reconstruction] section."""
    for log_file in sorted(folder.glob("*_rec.log")) + sorted(folder.glob("*.log")):
        try:
            text = log_file.read_text(errors="replace")
        except OSError:
            continue
        section = re.search(r"^\s*\[Reconstruction\](.*?)(?=^\s*\[|\Z)", text, re.MULTILINE | re.DOTALL)
        reconstruction = section.group(1) if section else ""
        size = _log_number(reconstruction, r"Pixel Size \(um\)")
        if size is None:
            size = _log_number(text, r"(?:Image )?Pixel Size \(um\)")
        if size is None:
            continue
        width = _log_number(reconstruction, r"Result Image Width \(pixels\)")
        height = _log_number(reconstruction, r"Result Image Height \(pixels\)")
        cs_low = _log_number(reconstruction, r"Minimum for CS to Image Conversion")
        cs_high = _log_number(reconstruction, r"Maximum for CS to Image Conversion")
        return {"file": log_file, "pixel_size_mm": size / 1000.0,
                "width": int(width) if width else None, "height": int(height) if height else None,
                "attenuation_range": [cs_low, cs_high] if cs_low is not None and cs_high is not None else None}
    return None


def check_not_projections(path: Path, page_shape) -> None:
    """Refuse a folder of Bruker *projections* (the scanner's raw X-ray images), mistaken for reconstructed slices.

    An acquisition folder holds one TIFF per projection beside a log whose [Acquisition] section gives their
    size (Number Of Rows x Number Of Columns) and no [Reconstruction] section; NRecon's slices sit in its own
    output folder (often ``<name>_Rec``) with a ``*_rec.log``."""
    folder = path if path.is_dir() else path.parent
    for log_file in sorted(folder.glob("*.log")):
        try:
            text = log_file.read_text(errors="replace")
        except OSError:
            continue
        if re.search(r"^\s*\[Reconstruction\]", text, re.MULTILINE):
            return  # a reconstruction's log: these are slices
        rows = _log_number(text, r"Number Of Rows", ignore_case=True)
        cols = _log_number(text, r"Number Of Columns", ignore_case=True)
        if rows is not None and cols is not None and tuple(page_shape) == (int(rows), int(cols)):
            recs = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*_rec.log")))
            where = f" ({', '.join(recs)} holds one)" if recs else ""
            raise ScanReadError(f"{path}: holds Bruker projections (the {int(rows)} x {int(cols)} X-ray images of "
                                f"{log_file.name}), not reconstructed slices. Potential fix: point to NRecon's output "
                                f"folder, the one with a *_rec.log{where}, or reconstruct the scan first")


def rec_log_meta(found: dict | None) -> dict:
    """What an image stack's meta records from its Bruker log (`read_rec_log`'s answer): the attenuation range
    NRecon mapped to the gray values ("Minimum/Maximum for CS to Image Conversion"), when given; scans
    reconstructed with different ranges have gray values that one threshold cannot compare."""
    if found is None or found["attenuation_range"] is None:
        return {}
    return {"attenuation_range": found["attenuation_range"], "rec_log": found["file"].name}


def _log_number(text: str, key: str, *, ignore_case: bool = False) -> float | None:
    flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
    match = re.search(rf"^\s*{key}\s*=\s*([0-9.eE+-]+)", text, flags)
    try:
        return float(match.group(1)) if match else None
    except ValueError:
        return None
