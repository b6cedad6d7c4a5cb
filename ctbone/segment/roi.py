"""Region of interest along the bone (z): explicit mm range, growth plate and the metaphyseal ROI."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import SegmentationError


def roi_slices(roi_mm, *, n_slices: int, spacing_z_mm: float, source: str = "the scan") -> slice:
    """Slice indices [start, end) of an ROI given in mm from the centre of the first slice (inclusive ends)."""
    start_mm, end_mm = (float(v) for v in roi_mm)
    if not end_mm > start_mm:
        raise SegmentationError(f"{source}: ROI {start_mm}:{end_mm} mm is empty. Potential fix: --roi-mm START:END "
                                "with END > START.")
    start = max(0, int(np.ceil(start_mm / spacing_z_mm - 1e-6)))
    stop = min(n_slices, int(np.floor(end_mm / spacing_z_mm + 1e-6)) + 1)
    if stop - start < 1:
        length = (n_slices - 1) * spacing_z_mm
        raise SegmentationError(f"{source}: ROI {start_mm}:{end_mm} mm lies outside the scan (0 to {length:.3f} mm "
                                "along z). Potential fix: choose an ROI inside the scan.")
    return slice(start, stop)


def find_growth_plate_mm(bone: np.ndarray, envelope: np.ndarray, *, spacing_z_mm: float,
                         search_fraction: float = 0.35) -> float | None:
    """z (mm from the first slice) of the growth plate of a long bone, or None if no plate is seen.

    The growth plate is a band of cartilage across the bone near one end: the slices there
    have a large envelope but little bone. The function looks, within ``search_fraction``
    of the bone's length from either end, for the slice whose bone fraction (bone / envelope
    area, smoothed over ~3 slices) is lowest, and accepts it when that fraction is below half
    of the median over the bone (a real plate is a clear dip; a plain tube has none).

    Parameters
    ----------
    bone, envelope : (Z, Y, X) bool ndarray
    spacing_z_mm : float, keyword-only
    search_fraction : float, keyword-only

    Returns
    -------
    float or None
    """
    env_area = envelope.sum(axis=(1, 2)).astype(float)
    bone_area = bone.sum(axis=(1, 2)).astype(float)
    present = np.flatnonzero(env_area > 0.2 * env_area.max()) if env_area.max() > 0 else []
    if len(present) < 10:
        return None
    z0, z1 = present[0], present[-1]
    fraction = ndimage.uniform_filter1d(np.where(env_area > 0, bone_area / np.maximum(env_area, 1), 1.0), 3)
    reference = float(np.median(fraction[z0:z1 + 1]))
    span = max(3, int(search_fraction * (z1 - z0)))
    best = None
    for lo, hi in ((z0 + 1, z0 + span), (z1 - span, z1 - 1)):
        k = lo + int(np.argmin(fraction[lo:hi + 1]))
        if fraction[k] < 0.5 * reference and (best is None or fraction[k] < fraction[best]):
            best = k
    return None if best is None else float(best * spacing_z_mm)


def metaphyseal_roi_mm(growth_plate_mm: float, *, offset_mm: float = 0.1, length_mm: float = 1.0,
                       towards: int = 1) -> tuple[float, float]:
    """Standard metaphyseal ROI: from ``offset_mm`` past the growth plate, ``length_mm`` long, towards the shaft.

    Parameters
    ----------
    growth_plate_mm : float
        z of the growth plate, mm from the first slice.
    offset_mm : float, keyword-only
        Gap that excludes the primary spongiosa (0.1-0.5 mm in mice).
    length_mm : float, keyword-only
        ROI length (1-2 mm in mice).
    towards : {1, -1}, keyword-only
        +1 if the shaft lies at larger z than the plate, -1 otherwise.
    """
    if towards not in (1, -1):
        raise ValueError("towards must be +1 or -1")
    a = growth_plate_mm + towards * offset_mm
    b = a + towards * length_mm
    return (min(a, b), max(a, b))
