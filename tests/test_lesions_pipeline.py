"""Lesions through the DEFAULT pipeline (`ctbone.analyze` / `ctbone.segment.segment` with `AnalysisOptions()`,
automatic threshold) against the phantoms' exact truth.

Every tolerance below is the error measured by scripts/validate_lesions.py (docs/accuracy.md) or on these
exact phantoms and seeds, plus a margin; the measured figure is written next to it. Directions matter: a
breaching cavity's opening and a porous woven cap read high, lytic volume reads low (docs/accuracy.md says
why); a tolerance is never widened to pass.
"""

from __future__ import annotations

import pytest

import ctbone
from ctbone.measure.lesions import measure_lesions
from ctbone.options import AnalysisOptions
from ctbone.phantoms import PhantomSpec, default_spec, intact_twin, make_phantom

segment = pytest.importorskip("ctbone.segment").segment

LESIONS = (
    {"kind": "perforation", "z_mm": 0.5, "angle_deg": 0.0, "radius_mm": 0.1},
    {"kind": "lytic_cavity", "z_mm": 1.0, "angle_deg": 200.0, "radius_mm": 0.2},
    {"kind": "blastic", "z_mm": 1.1, "angle_deg": 300.0, "half_length_mm": 0.4},
)


def _spec(**kw):
    return PhantomSpec(**{**dict(voxel_mm=0.025, length_mm=1.6, metaphysis_length_mm=0.0, lesions=LESIONS), **kw})


def _err(got, want):
    return (got - want) / want


def _opening(rows, z_mm):
    found = [row for row in rows if row["kind"] == "defect" and abs(row["centroid_z_mm"] - z_mm) < 0.1]
    assert len(found) == 1, f"expected one defect near z = {z_mm} mm, found {len(found)}"
    return found[0]["area_mm2"]


def _true_opening(truth, z_mm):
    (area,) = [d["area_mm2"] for d in truth["defects"] if abs(d["z_mm"] - z_mm) < 0.1]
    return area


@pytest.mark.parametrize("seed", [1, 2])
def test_default_pipeline_lesions_vs_truth(seed):
    vol, truth = make_phantom(_spec(), seed=seed)
    seg = segment(vol, AnalysisOptions())
    assert seg.threshold_method == "half-max-between-modes"
    res = measure_lesions(seg, AnalysisOptions())
    m = res.metrics
    assert m["cortical_defect_count"] == truth["cortical_defect_count"] == 2
    # a perforation's opening at the cortical half-maximum: measured -0.7..+1.3 % (seeds 1-3, 25 um)
    assert abs(_err(_opening(res.lesions, 0.5), _true_opening(truth, 0.5))) <= 0.08
    # lytic volume (column bone mass on the unsmoothed image, intact reference from the same angle bin in
    # the slices above and below): measured -0.6..+0.7 % here (seeds 1-3); -8.8..-12.4 % with the
    # reference taken from the neighbouring bins of the same slice
    assert abs(_err(m["lytic_volume_mm3"], truth["lytic_volume_mm3"])) <= 0.05
    # woven cap found although the automatic threshold (~715 HU) is above woven bone (700 HU): the lesion
    # module's own woven level. It reads high (pores ~1.6 voxels unresolved): measured +13.1..+13.7 %
    # (+32.9..+33.6 % while the cortex's own rim under the cap was counted)
    assert 0.0 < _err(m["blastic_volume_mm3"], truth["blastic_volume_mm3"]) <= 0.22
    # under-mineralised, not lamellar (measured 543-544 HU; material 700 HU, lamellar 1400 HU)
    assert m["blastic_mean_density_hu"] < 0.6 * 1400


def test_default_phantom_through_analyze():
    # ctbone.analyze with every default, on the default phantom (20 um, noise 60 HU, blur 10 um, metaphysis,
    # vascular canals; two perforations, a breaching cavity and a woven cap)
    vol, truth = make_phantom(default_spec(), seed=0)
    res = ctbone.analyze(vol, render=False)
    m = res.metrics
    assert m["cortical_defect_count"] == truth["cortical_defect_count"] == 3  # vascular canals are not defects
    # perforations: measured +8.0 % (r 100 um) and -4.1 % (r 70 um)
    assert abs(_err(_opening(res.lesions, 3.2), _true_opening(truth, 3.2))) <= 0.15
    assert abs(_err(_opening(res.lesions, 3.9), _true_opening(truth, 3.9))) <= 0.15
    # total area includes the breaching cavity's opening, which reads high (its rim thins below a voxel):
    # measured +23.1 %
    assert 0.0 <= _err(m["cortical_defect_area_mm2"], truth["cortical_defect_area_mm2"]) <= 0.35
    # lytic: measured +0.3 %
    assert abs(_err(m["lytic_volume_mm3"], truth["lytic_volume_mm3"])) <= 0.05
    # blastic: found (woven 700 HU below the ~716 HU threshold); measured +11.9 % (+25.9 % before the
    # cortex rim under the cap was left out)
    assert 0.0 < _err(m["blastic_volume_mm3"], truth["blastic_volume_mm3"]) <= 0.20
    assert res.info["lesions"]["slices_defect_search"] > 0


@pytest.mark.parametrize("voxel_mm", [0.03, 0.04])
def test_coarse_voxels_lytic_and_blastic(voxel_mm):
    # the same phantom at 30 and 40 um (seed 1): lytic measured +1.8 / -0.7 %, blastic +12.6 / +19.1 %
    # (seeds 1-2: lytic -1.8..+1.8 %, blastic +12.6..+19.1 %)
    vol, truth = make_phantom(_spec(voxel_mm=voxel_mm), seed=1)
    m = measure_lesions(segment(vol, AnalysisOptions()), AnalysisOptions()).metrics
    assert m["cortical_defect_count"] == 2
    assert abs(_err(m["lytic_volume_mm3"], truth["lytic_volume_mm3"])) <= 0.05
    assert 0.0 < _err(m["blastic_volume_mm3"], truth["blastic_volume_mm3"]) <= 0.25


def test_dense_woven_cap():
    # a 950 HU woven cap (the demo study's), cut at its own half maximum: measured +16.8 % at 20 um (+28.8 %
    # with the quarter level alone, the half maximum of ~700 HU woven bone). Found, not taken for a dense ridge.
    spec = PhantomSpec(voxel_mm=0.02, length_mm=2.0, metaphysis_length_mm=0.0,
                       lesions=({"kind": "blastic", "z_mm": 1.0, "angle_deg": 300.0, "half_length_mm": 0.5,
                                 "hu": 950.0},))
    vol, truth = make_phantom(spec, seed=1)
    m = measure_lesions(segment(vol, AnalysisOptions()), AnalysisOptions()).metrics
    assert 0.0 < _err(m["blastic_volume_mm3"], truth["blastic_volume_mm3"]) <= 0.25


@pytest.mark.parametrize("radius_mm,low,high", [(0.15, -0.05, 0.05), (0.25, -0.05, 0.05)])
def test_isolated_cavity_lytic_volume(radius_mm, low, high):
    # a cavity centred on the endosteum of the 180 um cortex, alone, 20 um voxels, noise 60 HU. Measured
    # +0.0 % (r 150 um, it stops short of the periosteum) and +0.3 % (r 250 um, it breaches it); with the
    # reference from the neighbouring bins of the same slice: -12.7 % and -3.8 % (noise 0)
    spec = PhantomSpec(voxel_mm=0.02, length_mm=2.0, metaphysis_length_mm=0.0,
                       lesions=({"kind": "lytic_cavity", "z_mm": 1.0, "angle_deg": 30.0, "radius_mm": radius_mm},))
    vol, truth = make_phantom(spec, seed=0)
    m = measure_lesions(segment(vol, AnalysisOptions()), AnalysisOptions()).metrics
    assert low <= _err(m["lytic_volume_mm3"], truth["lytic_volume_mm3"]) <= high


def test_no_false_lesions_with_automatic_threshold():
    vol, _ = make_phantom(intact_twin(_spec(metaphysis_length_mm=0.8)), seed=3)
    res = measure_lesions(segment(vol, AnalysisOptions()), AnalysisOptions())
    assert res.metrics["cortical_defect_count"] == 0
    assert res.metrics["lytic_volume_mm3"] == 0.0
    assert res.metrics["blastic_volume_mm3"] == 0.0
