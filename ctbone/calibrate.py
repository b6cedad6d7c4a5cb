"""Density calibration: image values (HU or raw gray) -> mg HA/cm³, and fitting it from a phantom scan.

Pure functions. The calibration is linear, ``density = value * slope + intercept``
(what Bruker CTAn's two-rod calibration and Scanco's slope/intercept tags give).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from .errors import CalibrationError
from .volume import Volume

log = logging.getLogger(__name__)

DENSITY_UNIT = "mgHA/cm3"


def apply_calibration(volume: Volume, *, slope: float, intercept: float) -> Volume:
    """The volume in mg HA/cm³: ``value * slope + intercept``.

    Parameters
    ----------
    volume : Volume
        HU or raw gray image.
    slope : float, keyword-only
        mg HA/cm³ per image unit; must be positive (denser = brighter).
    intercept : float, keyword-only
        mg HA/cm³ at image value 0.

    Returns
    -------
    Volume
        float32, unit "mgHA/cm3", same geometry; ``meta["calibration"]`` records slope and intercept.
    """
    source = volume.meta.get("source", "the scan")
    if volume.unit == DENSITY_UNIT:
        raise CalibrationError(f"{source}: the image is already in mg HA/cm3. Potential fix: drop --calibration.")
    if volume.unit == "mask":
        raise CalibrationError(f"{source}: a mask cannot be calibrated. Potential fix: pass the gray-value scan.")
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope <= 0:
        raise CalibrationError(f"{source}: calibration slope must be a positive number and the intercept finite, "
                               f"got slope={slope}, intercept={intercept}. Potential fix: --calibration SLOPE,INTERCEPT.")
    array = volume.array.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return volume.with_array(array, unit=DENSITY_UNIT,
                             calibration={"slope": float(slope), "intercept": float(intercept), "from": volume.unit})


def vendor_calibration(volume: Volume) -> tuple[float, float] | None:
    """(slope, intercept) from the image's own unit to mg HA/cm³ from vendor metadata, or None.

    Reads, in order: ``meta["calibration"]`` = {"slope", "intercept"} (already in image units);
    the Scanco DICOM tags as ctbone.io stores them (``scanco_density_slope``, ``scanco_density_intercept``,
    ``scanco_mu_scaling``, ``scanco_mu_water``) or nested in ``meta["scanco"]`` without the prefix.
    Scanco: for native values (unit "raw") µ = value / µ_scaling and BMD = µ·slope + intercept; for an
    HU image BMD = HU·(slope·µw/1000) + slope·µw + intercept.
    """
    if volume.unit in (DENSITY_UNIT, "mask"):
        return None
    cal = volume.meta.get("calibration")
    if isinstance(cal, dict) and {"slope", "intercept"} <= set(cal) and cal.get("from", volume.unit) == volume.unit:
        return float(cal["slope"]), float(cal["intercept"])
    nested = volume.meta.get("scanco") if isinstance(volume.meta.get("scanco"), dict) else {}

    def tag(name):
        value = volume.meta.get(f"scanco_{name}", nested.get(name))
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    slope, intercept = tag("density_slope"), tag("density_intercept")
    if slope is None or intercept is None or slope <= 0:
        return None
    if volume.unit == "HU":
        mu_water = tag("mu_water")
        return None if not mu_water else (slope * mu_water / 1000.0, slope * mu_water + intercept)
    scaling = tag("mu_scaling")
    return None if not scaling else (slope / scaling, intercept)


def fit_calibration_phantom(volume: Volume, *, densities_mgha_cm3, min_rod_diameter_mm: float = 0.5,
                            ) -> tuple[float, float]:
    """Find the rods of a density phantom scan and fit value -> mg HA/cm³.

    The rods are bright, uniform cylinders along z. Pixels of the z-mean image clearly above
    the embedding medium are grouped into connected regions; each region wider than ``min_rod_diameter_mm`` is a rod,
    measured by the median over its core (eroded by a quarter of its radius).
    "Above" means six robust noise levels above the median of the z-mean image. Rods are
    paired with the densities in order of brightness, and a least-squares line is fitted.

    Parameters
    ----------
    volume : Volume
        Scan of the phantom (HU or raw).
    densities_mgha_cm3 : sequence of float, keyword-only
        Known densities of the rods (at least two).
    min_rod_diameter_mm : float, keyword-only
        Smaller bright regions are ignored.

    Returns
    -------
    slope, intercept : float
        ``density = value * slope + intercept``.

    Raises
    ------
    CalibrationError
        Fewer rods found than densities given, or a non-increasing fit.
    """
    source = volume.meta.get("source", "the phantom scan")
    densities = np.sort(np.asarray(densities_mgha_cm3, float))
    if densities.size < 2:
        raise CalibrationError(f"{source}: need at least two rod densities to fit a calibration. "
                               "Potential fix: give e.g. 250,750.")
    mean_image = volume.array.astype(np.float32).mean(axis=0)
    background = float(np.median(mean_image))
    top = float(np.percentile(mean_image, 99.9))
    # rods: anything clearly above the embedding medium. The faintest rod may be close to it, so the cut
    # is a few noise levels (robust, from the median absolute deviation) above the medium, and size
    # rejects what noise still passes
    noise = 1.4826 * float(np.median(np.abs(mean_image - background)))
    cut = background + max(6.0 * noise, 0.02 * (top - background))
    labels, n = ndimage.label(ndimage.binary_opening(mean_image > cut, iterations=1))
    pixel_mm2 = volume.spacing[1] * volume.spacing[2]
    min_area = np.pi * (min_rod_diameter_mm / 2) ** 2 / pixel_mm2
    values = []
    for i in range(1, n + 1):
        region = labels == i
        area = int(region.sum())
        if area < min_area:
            continue
        radius_px = np.sqrt(area / np.pi)
        core = ndimage.binary_erosion(region, iterations=max(1, int(radius_px / 4)))
        if core.any():
            values.append(float(np.median(volume.array[:, core])))
    if len(values) < densities.size:
        raise CalibrationError(f"{source}: found {len(values)} calibration rod(s) but {densities.size} densities were "
                               f"given. Potential fix: check the densities, or crop the scan to the phantom.")
    values = np.sort(values)
    if len(values) > densities.size:  # extra bright objects (e.g. the holder): keep the brightest rods
        values = values[-densities.size:]
    slope, intercept = np.polyfit(values, densities, 1)
    if slope <= 0:
        raise CalibrationError(f"{source}: the rods do not get brighter with density (slope {slope:.4g}). "
                               "Potential fix: check the order of the densities and the scan.")
    log.info("calibration from %d rods: slope %.6g, intercept %.6g", len(values), slope, intercept)
    return float(slope), float(intercept)
