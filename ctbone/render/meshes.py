"""Bone and lesion surfaces as mesh files (STL/PLY) for printing, MeshLab or Blender."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic_write import written_into
from ..errors import RenderError
from .surfaces import mask_surface, to_physical, write_mesh

# mesh name -> masks united into it
MESH_PARTS = {"bone": ("bone",), "lytic": ("lytic", "defects"), "blastic": ("blastic",)}


def export_meshes(result, outdir, *, fmt: str = "stl") -> dict[str, Path]:
    """Write ``bone``, ``lytic`` (lytic lesions and cortical defects: where bone is missing) and ``blastic``
    surfaces of an `AnalysisResult` into ``outdir`` as ``<name>.stl`` or ``.ply``, in scanner
    coordinates (mm). Empty parts are skipped. Returns name -> path.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in ("stl", "ply"):
        raise RenderError(f"unknown mesh format {fmt!r}. Potential fix: use stl or ply.")
    if "bone" not in result.masks:
        raise RenderError("the analysis result has no bone mask")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    reference = result.masks["bone"]
    written = {}
    for name, parts in MESH_PARTS.items():
        present = [result.masks[p].array.astype(bool) for p in parts if p in result.masks]
        if not present:
            continue
        mask = np.logical_or.reduce(present)
        surface = mask_surface(mask, reference.spacing)
        if surface is None:
            continue
        path = outdir / f"{name}.{fmt}"
        with written_into(path, suffix=f".{fmt}") as tmp:
            write_mesh(to_physical(surface, reference), tmp)
        written[name] = path
    return written
