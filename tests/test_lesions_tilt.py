"""Lesions of a shaft tilted from the slice axis: the analysis works slice by slice across the shaft, and real
bones lie a few degrees to a few tens of degrees off z in the holder. Against phantom truth, the same bands as
upright (tests/test_lesions.py): tilting resamples the image by linear interpolation, which blurs by under a voxel.
"""

from __future__ import annotations

import numpy as np
import pytest

import ctbone
from ctbone.phantoms import PhantomSpec, make_phantom, tilted

from test_lesions import LESIONS as UPRIGHT_LESIONS
from test_lesions import VOXEL_MM

# the upright tests' lesions, 0.6 mm further along a longer shaft: clear of the slices the lean cuts off its ends
LESIONS = tuple({**lesion, "z_mm": lesion["z_mm"] + 0.6} for lesion in UPRIGHT_LESIONS)


@pytest.fixture(scope="module")
def tilt_case():
    vol, truth = make_phantom(PhantomSpec(voxel_mm=VOXEL_MM, length_mm=3.3, metaphysis_length_mm=0.0,
                                          lesions=LESIONS), seed=3)
    return ctbone.analyze(tilted(vol, 15.0), render=False), truth


def test_tilted_shaft_is_seen_tilted(tilt_case):
    res, _ = tilt_case
    # the principal axis of the bone's voxels: a short shaft cut across by the first and last slices is a sheared
    # cylinder, whose voxels lean further than its axis (18 degrees here); it tells a leaning shaft from one
    # lying along x or y (90), which is what it is for
    assert 10.0 < res.info["segmentation"]["long_axis_tilt_deg"] < 25.0


def test_tilted_shaft_lesions_within_the_upright_bands(tilt_case):
    res, truth = tilt_case
    m = res.metrics
    assert m["cortical_defect_count"] == truth["cortical_defect_count"] == 3
    # perforations: |dA| <= perimeter x voxel each; the cavity's opening up to its 2-voxel breach zone (see
    # tests/test_lesions.py): together within 2 sum(sqrt(pi A)) s + pi 2 R 2 s of the truth, never 10 % below
    areas = [d["area_mm2"] for d in truth["defects"]]
    slack = 2 * sum(np.sqrt(np.pi * a) for a in areas) * VOXEL_MM + np.pi * 2 * 0.2 * 2 * VOXEL_MM
    assert 0.9 * truth["cortical_defect_area_mm2"] <= m["cortical_defect_area_mm2"]
    assert m["cortical_defect_area_mm2"] <= truth["cortical_defect_area_mm2"] + slack
    assert m["lytic_volume_mm3"] == pytest.approx(truth["lytic_volume_mm3"], rel=0.20)
    assert m["blastic_volume_mm3"] == pytest.approx(truth["blastic_volume_mm3"], rel=0.20)
