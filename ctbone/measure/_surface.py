"""Bone surface area from a marching-cubes mesh (partial-volume aware on gray images)."""

from __future__ import annotations

import numpy as np
from numba import njit

# planes of cubes per marching-cubes call: a few tens of MB of field at a time at 512^2
SLAB_CUBES = 32


def surface_area_mm2(field: np.ndarray, *, level: float, spacing_mm) -> float:
    """Area (mm²) of the iso-surface ``field == level``, closed at the array edges.

    For a gray image and its threshold the surface passes between voxel centres where the
    interpolated value crosses the threshold (partial-volume aware); for a 0/1 mask at level
    0.5 it is the classic marching-cubes surface (a 3x3x3 cube gives 42.7 voxel faces, not 54).
    """
    from skimage.measure import marching_cubes

    field = np.asarray(field, np.float32)
    if not (field > level).any():
        return 0.0
    low = np.float32(min(float(field.min()), level) - 1.0)
    spacing = tuple(float(s) for s in spacing_mm)
    # the field padded by one voxel of `low` on every side (closing surfaces cut by the array edge), cut
    # into slabs of cubes along z: a cube's triangles depend on its 8 corners only, so the slabs' meshes
    # are the whole mesh's pieces, and no padded copy or whole mesh of the volume is held at once
    nz, ny, nx = field.shape
    total = 0.0
    for k0 in range(0, nz + 1, SLAB_CUBES):
        k1 = min(k0 + SLAB_CUBES, nz + 1)  # cubes between padded planes k and k + 1, k in [k0, k1)
        slab = np.full((k1 - k0 + 1, ny + 2, nx + 2), low, np.float32)
        lo, hi = max(k0 - 1, 0), min(k1, nz)  # field planes in padded planes k0 .. k1 (padded = field + 1)
        slab[lo + 1 - k0:hi + 1 - k0, 1:-1, 1:-1] = field[lo:hi]
        if slab.max() < level:  # no corner at or above the level: no triangle (low < level: never below all)
            continue
        verts, faces, _, _ = marching_cubes(slab, level=level, spacing=spacing)
        total += float(_mesh_area(verts, faces))
    return total


@njit(cache=True)
def _mesh_area(verts, faces):  # pragma: no cover - compiled
    """Sum of the triangles' areas, in float64, in face order (skimage's mesh_surface_area builds two (n, 3)
    temporaries: 1.6 s for the 512^3 bone's 4.6 M triangles; this takes a few hundredths). One thread on
    purpose: a parallel sum's order, hence its last digits, would depend on the thread count (batch workers)."""
    total = 0.0
    for i in range(faces.shape[0]):
        a, b, c = faces[i, 0], faces[i, 1], faces[i, 2]
        ux = np.float64(verts[b, 0]) - verts[a, 0]
        uy = np.float64(verts[b, 1]) - verts[a, 1]
        uz = np.float64(verts[b, 2]) - verts[a, 2]
        vx = np.float64(verts[c, 0]) - verts[a, 0]
        vy = np.float64(verts[c, 1]) - verts[a, 1]
        vz = np.float64(verts[c, 2]) - verts[a, 2]
        cx = uy * vz - uz * vy
        cy = uz * vx - ux * vz
        cz = ux * vy - uy * vx
        total += 0.5 * np.sqrt(cx * cx + cy * cy + cz * cz)
    return total
