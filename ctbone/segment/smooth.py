"""Gaussian smoothing before thresholding, as the field does it (Scanco IPL "sigma 0.8, support 1")."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def gaussian_smooth(array: np.ndarray, *, sigma_vox: float = 0.8, support_vox: int = 1) -> np.ndarray:
    """Gaussian filter with a kernel truncated at ``support_vox`` voxels from its centre.

    Parameters
    ----------
    array : (Z, Y, X) ndarray
    sigma_vox : float, keyword-only
        Standard deviation in voxels (0 = no smoothing, a float32 copy).
    support_vox : int, keyword-only
        Kernel half-width in voxels (support 1 = a 3x3x3 kernel); at least 1.

    Returns
    -------
    (Z, Y, X) float32 ndarray
    """
    array = np.asarray(array, np.float32)
    if sigma_vox <= 0:
        return array.copy()
    support = max(1, int(support_vox))
    # scipy's radius is int(truncate * sigma + 0.5): aim just below the next integer
    truncate = (support + 0.49) / sigma_vox
    return ndimage.gaussian_filter(array, sigma=sigma_vox, truncate=truncate, mode="nearest")
