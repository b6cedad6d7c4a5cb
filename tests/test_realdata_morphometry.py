"""Real scans (../shared/realdata, skipped when absent): femur threshold and Ct.Th, shrew and LHDL BV/TV."""

from pathlib import Path

import numpy as np
import pytest

from ctbone.measure.morphometry import trabecular_cube_morphometry
from ctbone.options import AnalysisOptions
from ctbone.segment import segment
from ctbone.volume import Volume

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"
pytestmark = [pytest.mark.realdata, pytest.mark.skipif(not REAL.is_dir(), reason="no ../shared/realdata")]


def _sitk_volume(path):
    import SimpleITK as sitk

    return Volume.from_sitk(sitk.ReadImage(str(path)), unit="raw", meta={"source": str(path)})


def test_mouse_femur_threshold():
    from ctbone.segment.threshold import histogram_modes, otsu

    vol = _sitk_volume(next((REAL / "mouse_femur").glob("*.mhd")))
    # README: Otsu of all raw gray values is 60 (7.3 % above); our Otsu reproduces it to one 0.3-wide bin
    assert otsu(vol.array.ravel()) == pytest.approx(60, abs=0.5)
    seg = segment(vol, AnalysisOptions())
    # ctbone's auto threshold is half-way between the foam mode (~15) and the bone mode (~132): ~73, i.e.
    # stricter than Otsu; it must lie between the modes and keep a bone fraction of the same order (3-7.3 %)
    modes = histogram_modes(vol.array.ravel())
    assert seg.threshold == pytest.approx((modes[-2] + modes[-1]) / 2)
    assert 60 < seg.threshold < 90
    fraction = float((vol.array > seg.threshold).mean())
    assert 0.03 < fraction < 0.073


def test_mouse_femur_cortical_thickness():
    from ctbone.measure.morphometry import standard_morphometry

    vol = _sitk_volume(next((REAL / "mouse_femur").glob("*.mhd")))
    m = standard_morphometry(segment(vol, AnalysisOptions()))
    # 2-3 voxel cortex at 0.05 mm: plausible mouse Ct.Th is 0.10-0.15 mm; the plain-EDT convention adds up to
    # one voxel on odd thicknesses, so we accept 0.08-0.20 mm
    assert 0.08 <= m["ct_th_mm"] <= 0.20


def test_shrew_binary_bv_tv_exact():
    vol = _sitk_volume(REAL / "shrew_trabecular" / "Shrew.nrrd")
    m = trabecular_cube_morphometry(vol)
    # README: BV/TV by voxel count is 29.35 % (two decimals)
    assert round(m["bv_tv_pct"], 2) == 29.35
    assert np.isnan(m["tmd"])  # 0/255 labels: no density to average
    assert m["tv_mm3"] == pytest.approx(np.prod(vol.shape) * vol.voxel_volume_mm3, rel=1e-12)


def test_lhdl_bv_tv_plausible():
    import tifffile

    files = sorted((REAL / "lhdl_trabecular" / "3155_D_4_bc").glob("*.tif*"))
    a = np.stack([tifffile.imread(f) for f in files]).astype(np.float32)
    seg = segment(Volume(a, spacing=(0.0195,) * 3), AnalysisOptions(), mode="trabecular-cube")
    m = {"bv_tv_pct": 100.0 * float(seg.bone.array.mean())}  # BV/TV only: thickness of 200^3 is for the bench
    # ciclope reports 24.71 % with its own pipeline (threshold 63 after 2x downsampling); Otsu (~81) is stricter,
    # so a lower but same-order value is expected: 12-32 %
    assert 12 <= m["bv_tv_pct"] <= 32
