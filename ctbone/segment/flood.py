"""Flood fill within each z slice, compiled and in parallel over slices.

One kernel serves the envelope's hole fill (8-connected, from the slice's edge) and the lesion
stage's exterior (4-connected, from given seeds): both are the in-slice components of a mask
that hold a seed, found without a label volume.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..parallel import run_in_chunks


def flood_in_slices(allowed: np.ndarray, seeds: np.ndarray | None = None, *, connectivity: int) -> np.ndarray:
    """Voxels of ``allowed`` joined, within their z slice, to a seed: a voxel of ``seeds & allowed``, or
    (``seeds`` None) a voxel of ``allowed`` on the slice's edge.

    Same as labelling ``allowed`` slice by slice (``connectivity`` 4 or 8) and keeping the labels that
    hold a seed (tested).
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    allowed = np.ascontiguousarray(allowed, dtype=bool)
    if allowed.size == 0:
        return allowed.copy()
    from_edge = seeds is None
    seeds = allowed if from_edge else np.ascontiguousarray(seeds, dtype=bool)
    out = np.zeros(allowed.shape, bool)
    run_in_chunks(_flood, allowed.shape[0], allowed, seeds, from_edge, connectivity == 8, out)
    return out


@njit(cache=True, nogil=True)
def _flood(allowed, seeds, from_edge, eight, out, z0, z1):  # pragma: no cover - compiled
    nz, ny, nx = allowed.shape
    for z in range(z0, z1):
        a, o, s = allowed[z], out[z], seeds[z]
        stack = np.empty(ny * nx, np.int64)
        top = 0
        for y in range(ny):
            for x in range(nx):
                edge = y == 0 or x == 0 or y == ny - 1 or x == nx - 1
                if a[y, x] and s[y, x] and (edge or not from_edge):
                    o[y, x] = True
                    stack[top] = y * nx + x
                    top += 1
        while top > 0:
            top -= 1
            y0 = stack[top] // nx
            x0 = stack[top] - y0 * nx
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if (dy == 0 and dx == 0) or (not eight and dy != 0 and dx != 0):
                        continue
                    y, x = y0 + dy, x0 + dx
                    if 0 <= y < ny and 0 <= x < nx and a[y, x] and not o[y, x]:
                        o[y, x] = True
                        stack[top] = y * nx + x
                        top += 1
