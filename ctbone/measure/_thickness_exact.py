"""Brute-force local thickness: the definition, every voxel against every ball (tests and benchmark only).

O(N_foreground²): use on small volumes. Independent of the ridge reduction and of
the row-by-row painting of `ctbone.measure.thickness`, so it checks both.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .thickness import INSIDE_RTOL, squared_distance


def local_thickness_exact(mask: np.ndarray, *, spacing_mm=(1.0, 1.0, 1.0), outside: str = "background") -> np.ndarray:
    """Same definition as `ctbone.measure.thickness.local_thickness`, computed naively (mm, float32)."""
    mask = np.asarray(mask).astype(bool)
    spacing = tuple(float(s) for s in spacing_mm)
    dist2 = squared_distance(mask, spacing_mm=spacing, outside=outside)
    points = np.argwhere(mask).astype(np.float64) * np.asarray(spacing)
    values = _brute(points, dist2[mask].astype(np.float64), INSIDE_RTOL)
    out = np.zeros(mask.shape, np.float32)
    out[mask] = values
    return out


@njit(cache=True)
def _brute(points, radii2, rtol):  # pragma: no cover - compiled
    n = radii2.shape[0]
    best = np.zeros(n, np.float32)
    for i in range(n):
        b = 0.0
        for j in range(n):
            value = 2.0 * np.sqrt(radii2[j])
            if value <= b:
                continue
            d2 = ((points[i, 0] - points[j, 0]) ** 2 + (points[i, 1] - points[j, 1]) ** 2
                  + (points[i, 2] - points[j, 2]) ** 2)
            if d2 < radii2[j] * (1.0 - rtol):
                b = value
        best[i] = b
    return best
