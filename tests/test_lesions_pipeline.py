"""Lesions on the pipeline's own segmentation (ctbone.segment.segment, automatic threshold)."""

from __future__ import annotations

import pytest

from ctbone.measure.lesions import measure_lesions
from ctbone.options import AnalysisOptions
from ctbone.phantoms import PhantomSpec, intact_twin, make_phantom

segment = pytest.importorskip("ctbone.segment").segment

LESIONS = (
    {"kind": "perforation", "z_mm": 0.5, "angle_deg": 0.0, "radius_mm": 0.1},
    {"kind": "lytic_cavity", "z_mm": 1.0, "angle_deg": 200.0, "radius_mm": 0.2},
    {"kind": "blastic", "z_mm": 1.1, "angle_deg": 300.0, "half_length_mm": 0.4},
)


def _spec(**kw):
    return PhantomSpec(**{**dict(voxel_mm=0.025, length_mm=1.6, metaphysis_length_mm=0.0, lesions=LESIONS), **kw})


def test_defects_and_woven_bone_found_with_automatic_threshold():
    vol, truth = make_phantom(_spec(), seed=2)
    res = measure_lesions(segment(vol, AnalysisOptions()), AnalysisOptions())
    assert res.metrics["cortical_defect_count"] == truth["cortical_defect_count"] == 2
    # the automatic threshold sits near mid-cortex (~710 HU), above the woven bone (700 HU): the lesion
    # module's own woven level must still find the cap (at least half of it; docs/accuracy.md has the error)
    assert res.metrics["blastic_volume_mm3"] > 0.5 * truth["blastic_volume_mm3"]
    assert res.metrics["blastic_mean_density_hu"] < 1000.0  # under-mineralised, not lamellar


def test_no_false_lesions_with_automatic_threshold():
    vol, _ = make_phantom(intact_twin(_spec(metaphysis_length_mm=0.8)), seed=3)
    res = measure_lesions(segment(vol, AnalysisOptions()), AnalysisOptions())
    assert res.metrics["cortical_defect_count"] == 0
    assert res.metrics["lytic_volume_mm3"] == 0.0
    assert res.metrics["blastic_volume_mm3"] == 0.0
