"""Decide what a scan's numbers are: HU, calibrated density (mg HA/cm³) or raw gray."""

from __future__ import annotations

import numpy as np


def hu_sample_slices(n_slices: int) -> range:
    """The slices `looks_like_hu` looks at (about 16, evenly spaced): a slab-by-slab reader reads just these."""
    return range(0, n_slices, max(1, n_slices // 16))


def looks_like_hu(array: np.ndarray) -> bool:
    """Air near -1000: the 0.5th percentile of a (sub-sampled) array lies in [-1100, -850], or the values hold a
    peak there (`has_air_peak_at_minus_1000`: air noisier than ~40 HU puts the percentile below -1100).

    Passing only the slices `hu_sample_slices` names gives the same answer (they are at most 31,
    so the sampling below then keeps them all)."""
    sample = array[hu_sample_slices(array.shape[0])]
    low = float(np.percentile(sample, 0.5))
    return -1100.0 <= low <= -850.0 or _air_peak(sample)


def has_air_peak_at_minus_1000(array: np.ndarray) -> bool:
    """Whether the values hold a peak (a bump, not a tail) around -1000: air in HU.

    `looks_like_hu`'s low percentile cannot tell HU from Scanco's native values when those are noisy: native
    air sits at 0, and with a noise of ~400 gray values (160 HU at a µ-scaling of 8192, as in vivo scans may
    have) its 0.5th percentile reaches -1000 too. A peak does not move with the noise: the counts between -1150
    and -850 must exceed twice those 200-350 below and above it."""
    return _air_peak(array[hu_sample_slices(array.shape[0])])


def _air_peak(sample: np.ndarray) -> bool:
    """`has_air_peak_at_minus_1000` on slices already sampled."""
    counts, _ = np.histogram(sample, bins=(-1350, -1200, -1150, -850, -800, -650))
    return bool(counts[2] > 2 * counts[0] and counts[2] > 2 * counts[4] and counts[2] > 0.001 * sample.size)


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
        if has_air_peak_at_minus_1000(array):
            return "HU", "Scanco values in HU (air near -1000); density calibration tags available (scanco_density_*)"
        return "raw", "Scanco native values; density calibration tags available (scanco_density_*)"
    if modality.upper() == "CT" and looks_like_hu(array):
        return "HU", "CT with air near -1000 after rescale"
    return "raw", "no rescale type and values do not look like HU"
