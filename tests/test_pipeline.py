"""`analyze` orchestration: what the result carries besides the metrics."""

from __future__ import annotations

import json

import pytest

from ctbone.phantoms import PhantomSpec, make_phantom
from ctbone.pipeline import analyze


@pytest.fixture(scope="module")
def small_result():
    spec = PhantomSpec(voxel_mm=0.03, length_mm=1.2, metaphysis_length_mm=0.0,
                       lesions=({"kind": "perforation", "z_mm": 0.6, "angle_deg": 0.0, "radius_mm": 0.1},))
    vol, _ = make_phantom(spec, seed=0)
    return analyze(vol, render=False)


def test_lesion_info_is_kept_and_json_safe(small_result):
    info = small_result.info
    assert isinstance(info["lesions"], dict) and "angle_bins" in info["lesions"]
    json.dumps(info, allow_nan=False)  # no numpy scalars, no NaN: metrics.json and run.json take it as is


def test_stage_timings_recorded(small_result):
    assert set(small_result.info["timings_s"]) >= {"segment", "morphometry", "lesions"}
