"""Decide what a scan's numbers are: HU, calibrated density (mg HA/cm³) or raw gray."""

from __future__ import annotations

import numpy as np


def hu_sample_slices(n_slices: int) -> range:
    """The slices `looks_like_hu` looks at (about 16, evenly spaced): a slab-by-slab reader reads just these."""
    return range(0, n_slices, max(1, n_slices // 16))


def looks_like_hu(array: np.ndarray) -> bool:
    """Air near -1000: the 0.5th percentile of a (sub-sampled) array lies in [-1100, -850].

    Passing only the slices `hu_sample_slices` names gives the same answer (they are at most 31,
    so the sampling below then keeps them all)."""
    sample = array[hu_sample_slices(array.shape[0])]
    low = float(np.percentile(sample, 0.5))
    return -1100.0 <= low <= -850.0


def decide_unit(*, modality: str, rescale_type: str, manufacturer: str, intercepts, array, extra: dict):
    """(unit, reason) for a DICOM series."""
    kind = rescale_type.strip().upper()
    if kind == "HU":
        return "HU", "RescaleType is HU"
    if kind in ("MGHA/CCM", "MG HA/CCM", "MGHA/CM3", "MG HA/CM3", "BMD"):
        return "mgHA/cm3", f"RescaleType is {rescale_type}"
    if "SCANCO" in manufacturer.upper() and extra.get("scanco_density_slope") is not None:
        # Scanco's DICOM export writes native values (air near 0) or HU (air near -1000), with the same tags;
        # the calibration's formula differs (calibrate.vendor_calibration), so the values decide
        if looks_like_hu(array):
            return "HU", "Scanco values in HU (air near -1000); density calibration tags available (scanco_density_*)"
        return "raw", "Scanco native values; density calibration tags available (scanco_density_*)"
    if modality.upper() == "CT" and looks_like_hu(array):
        return "HU", "CT with air near -1000 after rescale"
    return "raw", "no rescale type and values do not look like HU"
