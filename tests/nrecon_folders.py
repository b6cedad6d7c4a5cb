"""Folders as Bruker's NRecon writes them, for the image-stack tests (module level: importable by any test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def gray_pages(hu: np.ndarray) -> np.ndarray:
    """8-bit gray slices of an HU volume, -1000..3000 HU mapped linearly onto 0..255 (NRecon maps an attenuation
    range onto the gray values likewise)."""
    return np.clip(np.rint((hu + 1000.0) * 255.0 / 4000.0), 0, 255).astype(np.uint8)


def write_nrecon_folder(folder: Path, pages, *, prefix: str, suffix: str = ".bmp", log: str | None = None,
                        preview=None) -> Path:
    """``folder`` holding ``<prefix>_rec00000000<suffix>``, ... (one picture per page), the ``log`` text as
    ``<prefix>_rec.log`` when given and the ``preview`` picture as ``<prefix>_rec_spr<suffix>`` when given."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for z, page in enumerate(pages):
        Image.fromarray(page).save(folder / f"{prefix}_rec{z:08d}{suffix}")
    if preview is not None:
        Image.fromarray(preview).save(folder / f"{prefix}_rec_spr{suffix}")
    if log is not None:
        (folder / f"{prefix}_rec.log").write_text(log)
    return folder
