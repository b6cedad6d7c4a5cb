"""Density calibration: applying slope/intercept, vendor tags, and fitting from a synthetic rod phantom."""

import numpy as np
import pytest

from ctbone.calibrate import apply_calibration, fit_calibration_phantom, vendor_calibration
from ctbone.errors import CalibrationError
from ctbone.volume import Volume


def rod_phantom(values_hu, *, voxel_mm=0.05, noise_hu=20.0, seed=0):
    """Cylindrical rods (diameter 1.5 mm) of the given HU in water (0 HU), along z."""
    rng = np.random.default_rng(seed)
    n = 120
    c = (np.arange(n) - n / 2) * voxel_mm
    yy, xx = np.meshgrid(c, c, indexing="ij")
    plane = np.zeros((n, n), np.float32)
    for k, value in enumerate(values_hu):
        angle = 2 * np.pi * k / len(values_hu)
        cy, cx = 1.8 * np.sin(angle), 1.8 * np.cos(angle)
        plane[(yy - cy) ** 2 + (xx - cx) ** 2 <= 0.75 ** 2] = value
    image = np.repeat(plane[None], 10, axis=0) + rng.normal(0, noise_hu, (10, n, n)).astype(np.float32)
    return Volume(image.astype(np.float32), spacing=(voxel_mm,) * 3, unit="HU")


def test_apply_calibration_linear_and_unit():
    vol = Volume(np.array([[[0.0, 1000.0]]] * 2, np.float32).reshape(2, 1, 2), unit="HU")
    out = apply_calibration(vol, slope=0.5, intercept=10.0)
    np.testing.assert_allclose(out.array, [[[10.0, 510.0]]] * 2)
    assert out.unit == "mgHA/cm3" and out.meta["calibration"]["slope"] == 0.5
    assert vol.unit == "HU" and vol.array[0, 0, 1] == 1000.0  # input untouched
    with pytest.raises(CalibrationError, match="already in mg HA"):
        apply_calibration(out, slope=1.0, intercept=0.0)
    with pytest.raises(CalibrationError, match="slope"):
        apply_calibration(vol, slope=-1.0, intercept=0.0)


def test_fit_recovers_known_line():
    # rods at HU = (density - 100) / 0.8, i.e. density = 0.8 HU + 100: 20 HU noise averaged over ~2000 voxels
    # per rod gives a slope within 0.5 % and an intercept within 5 mg HA/cm3
    densities = [250.0, 750.0, 1200.0]
    vol = rod_phantom([(d - 100) / 0.8 for d in densities])
    slope, intercept = fit_calibration_phantom(vol, densities_mgha_cm3=densities)
    assert slope == pytest.approx(0.8, rel=0.005)
    assert intercept == pytest.approx(100.0, abs=5.0)


def test_fit_refuses_missing_rods():
    vol = rod_phantom([400.0])
    with pytest.raises(CalibrationError, match="found 1 calibration rod"):
        fit_calibration_phantom(vol, densities_mgha_cm3=[250, 750])


def test_scanco_vendor_tags():
    # WashU test values: slope 365.712, intercept -199.726, mu_water 0.4939 -> HU to BMD
    vol = Volume(np.zeros((1, 1, 1), np.float32), unit="HU",
                 meta={"scanco": {"density_slope": 365.712, "density_intercept": -199.726, "mu_water": 0.4939}})
    slope, intercept = vendor_calibration(vol)
    assert slope == pytest.approx(365.712 * 0.4939 / 1000)
    assert intercept == pytest.approx(365.712 * 0.4939 - 199.726)
    assert vendor_calibration(Volume(np.zeros((1, 1, 1), np.float32), unit="HU")) is None


def test_scanco_tags_as_read_by_io():
    # ctbone.io stores the Scanco tags flat; native values: BMD = value / mu_scaling * slope + intercept
    meta = {"scanco_density_slope": "365.712", "scanco_density_intercept": "-199.726", "scanco_mu_scaling": "8192",
            "scanco_mu_water": "0.4939"}
    raw = Volume(np.full((1, 1, 1), 4096.0, np.float32), unit="raw", meta=meta)
    slope, intercept = vendor_calibration(raw)
    assert 4096 * slope + intercept == pytest.approx(0.5 * 365.712 - 199.726)
    assert vendor_calibration(Volume(np.zeros((1, 1, 1), np.float32), unit="raw")) is None


def test_segment_uses_vendor_calibration():
    from ctbone.options import AnalysisOptions
    from ctbone.segment import segment

    a = np.zeros((8, 12, 12), np.float32)
    a[:, 3:9, 3:9] = 8192.0  # mu = 1 -> 365.712 - 199.726 mg HA/cm3
    meta = {"scanco_density_slope": 365.712, "scanco_density_intercept": -199.726, "scanco_mu_scaling": 8192}
    seg = segment(Volume(a, spacing=(0.01,) * 3, unit="raw", meta=meta), AnalysisOptions(min_particle_mm3=0))
    assert seg.image.unit == "mgHA/cm3"
    assert float(seg.raw_image.array.max()) == pytest.approx(365.712 - 199.726, rel=1e-5)
