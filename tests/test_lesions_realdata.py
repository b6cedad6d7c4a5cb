"""Lesion measures on a real healthy mouse femur (../shared/realdata/mouse_femur); skipped when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctbone.measure.lesions import measure_lesions
from ctbone.measure.lesions_standin import standin_segmentation
from ctbone.options import AnalysisOptions
from ctbone.volume import Volume

FEMUR = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "mouse_femur" / "mouse_femur2.mhd"
pytestmark = [pytest.mark.realdata,
              pytest.mark.skipif(not FEMUR.exists(), reason="real data folder ../shared/realdata not present")]


def test_healthy_femur_shaft_has_no_lesions():
    import SimpleITK as sitk

    vol = Volume.from_sitk(sitk.ReadImage(str(FEMUR)), unit="raw")
    # the diaphysis: from 2.5 mm (slice 50 at 50 um) to the end of the scan; proximal of it the femoral
    # neck and trochanters are not a tube (README: a healthy bone has no cortical defects there either,
    # but the shaft is what the lesion model is for)
    shaft = vol.crop((slice(50, None), slice(None), slice(None)))
    # the README's Otsu threshold of the raw gray values
    seg = standin_segmentation(shaft, threshold=60.0)
    res = measure_lesions(seg, AnalysisOptions())
    assert res.metrics["cortical_defect_count"] == 0
    assert res.metrics["lytic_volume_mm3"] == 0.0
    # the third trochanter is a dense lamellar ridge: not a blastic lesion
    assert res.metrics["blastic_volume_mm3"] == 0.0
    assert res.info["dense_outgrowths_excluded_mm3"] > 0
    assert res.info["periosteal_surface_mm2"] > 0


def test_healthy_femur_whole_scan_default_pipeline():
    import SimpleITK as sitk

    import ctbone

    vol = Volume.from_sitk(sitk.ReadImage(str(FEMUR)), unit="raw")
    res = ctbone.analyze(vol, render=False)
    # a long bone lying in the scan, one bone, hollow, along z: none of the scan checks flags it
    seg_info = res.info["segmentation"]
    assert not {"fills_field_of_view_pct", "left_out_particle_mm3", "shaft_across_slices"} & set(seg_info)
    assert seg_info["marrow_pct_of_envelope"] > 40 and seg_info["long_axis_tilt_deg"] < 30
    assert res.info["threshold_method"] != "otsu-no-contrast"
    info = res.info["lesions"]
    # defects are searched only where the bone is a tube: not the femoral head and neck at the proximal end
    # (the first ~1.4 mm); measured: 76 of 103 slices searched
    assert 0 < info["slices_defect_search"] < info["slices_total"]
    # README: a healthy bone has no cortical defects. Measured with the default pipeline (auto threshold 73.5):
    # the threshold reads one opening (0.30 mm²) in the thin cortex of the third-trochanter region (1.5-2.3 mm),
    # but its gray values show no bone missing there (what it would remove through the cortex: none of it), so
    # it is not a defect (it was counted before that rule; before the tube rule the whole scan gave 10)
    assert res.metrics["cortical_defect_count"] == 0
    assert [round(a, 2) for a in info["openings_without_missing_bone_mm2"]] == [0.30]
    # lytic regions whose gray values show no bone missing (dips of the thresholded surface in the thin
    # trochanteric cortex) are not lesions: measured 1 lytic row (9 rows, 7 of them 0.0 mm3, before such
    # regions were dropped; 2 while the opening above counted, one of them holding it at 0.0 mm3)
    lytic = [row for row in res.lesions if row["kind"] == "lytic"]
    assert len(lytic) <= 2 and all(row["volume_mm3"] > 0.001 for row in lytic)


def test_healthy_femur_shaft_roi_default_pipeline_is_clean():
    # what docs/accuracy.md advises: the default pipeline (automatic threshold) restricted to the shaft
    import ctbone

    vol = ctbone.read_scan(FEMUR)
    res = ctbone.analyze(vol, render=False, roi_mm=(2.5, 5.1))
    m = res.metrics
    assert m["cortical_defect_count"] == 0
    assert m["lytic_volume_mm3"] == 0.0 and m["blastic_volume_mm3"] == 0.0
    # the scan checks on a real bone: its shaft leans ~12° in the holder (measured 12.5°: slice areas +2.4 %), and
    # its 2-3-voxel cortex at 50 um is under the resolution the lesion measures were validated at (measured 3.9)
    assert 10.0 < res.info["segmentation"]["shaft_tilt_deg"] < 15.0
    assert 3.0 < res.info["cortex_voxels"] < 4.5


LHDL = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "lhdl_trabecular" / "3155_D_4_bc"


@pytest.mark.skipif(not LHDL.exists(), reason="real data folder ../shared/realdata not present")
def test_a_trabecular_cube_analysed_as_a_long_bone_gives_bounded_lesion_volumes():
    # the wrong mode for this scan (--mode trabecular-cube is right), but what a user may run first: the lesion
    # volumes may mean little, yet they must stay inside the scan (lytic read 62 866 mm3 of a 59 mm3 cube when
    # the cortex share around the bone was extrapolated from an arc of intact bins)
    import ctbone

    vol = ctbone.read_scan(LHDL, spacing=0.0195)
    result = ctbone.analyze(vol, render=False)
    metrics = result.metrics
    # and the analysis says the scan is no long bone (a warning, and a note in the study report)
    assert result.info["segmentation"]["fills_field_of_view_pct"] > 90
    scanned_mm3 = vol.array.size * 0.0195 ** 3
    assert 0.0 <= metrics["lytic_volume_mm3"] <= metrics["tv_mm3"] <= scanned_mm3
    assert 0.0 <= metrics["blastic_volume_mm3"] <= metrics["tv_mm3"]
