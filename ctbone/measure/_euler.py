"""Euler characteristic and connectivity with edge correction (Odgaard & Gundersen 1993)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def euler_characteristic(mask: np.ndarray) -> int:
    """Euler characteristic of a 3D mask, 26-connected foreground / 6-connected background."""
    from skimage.measure import euler_number

    mask = np.asarray(mask, bool)
    if not mask.any():
        return 0
    return int(euler_number(np.pad(mask, 1), connectivity=3))


def delta_euler(mask: np.ndarray, voi: np.ndarray | None = None) -> float:
    """Edge-corrected Euler characteristic Δχ of the structure inside a VOI.

    Δχ = χ(X ∩ V) − ½ χ(X ∩ ∂V): the half of the Euler characteristic of the structure's cut
    faces (the foreground voxels of the VOI's one-voxel boundary shell) removes what cutting the
    network out of a larger one adds. A block that continues beyond the VOI gives Δχ = 0;
    a structure clear of the VOI's boundary gives Δχ = χ. ``voi`` None = the whole array.
    """
    mask = np.asarray(mask, bool)
    voi = np.ones(mask.shape, bool) if voi is None else np.asarray(voi, bool)
    inside = mask & voi
    # the boundary shell: VOI voxels with a 6-neighbour outside the VOI (or the array edge)
    shell = voi & ~ndimage.binary_erosion(np.pad(voi, 1))[1:-1, 1:-1, 1:-1]
    return euler_characteristic(inside) - 0.5 * euler_characteristic(inside & shell)


def connectivity_density_per_mm3(mask: np.ndarray, *, spacing_mm, voi: np.ndarray | None = None) -> float:
    """Conn.D = (1 − Δχ) / TV, mm⁻³ (TV = the VOI's volume; BoneJ's convention, an empty VOI gives 1/TV)."""
    voi_count = mask.size if voi is None else int(np.count_nonzero(voi))
    tv = voi_count * float(np.prod(spacing_mm))
    if tv <= 0:
        return float("nan")
    return (1.0 - delta_euler(mask, voi)) / tv
