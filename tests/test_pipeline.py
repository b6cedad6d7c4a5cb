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


def test_both_limbs_in_one_scan_each_bone_as_if_scanned_alone():
    import numpy as np

    from ctbone.phantoms import intact_twin
    from ctbone.volume import Volume

    spec = PhantomSpec(voxel_mm=0.03, length_mm=1.8, metaphysis_length_mm=0.0,
                       lesions=({"kind": "perforation", "z_mm": 0.6, "angle_deg": 0.0, "radius_mm": 0.1},
                                {"kind": "lytic_cavity", "z_mm": 1.2, "angle_deg": 180.0, "radius_mm": 0.2}))
    tumour, _ = make_phantom(spec, seed=0)
    contra, _ = make_phantom(intact_twin(spec), seed=1)
    gap = np.repeat(tumour.array[:, :, :1], 40, axis=2)  # 1.2 mm of soft tissue between the legs
    both = Volume(np.ascontiguousarray(np.concatenate([tumour.array, gap, contra.array[:, :, ::-1]], axis=2)),
                  spacing=tumour.spacing, unit=tumour.unit, meta={"source": "both legs"})
    keys = ("bv_mm3", "tv_mm3", "ct_th_mm", "cortical_defect_count", "cortical_defect_area_mm2", "lytic_volume_mm3")
    # a fixed threshold: the two-leg histogram would move the automatic one a little
    alone = analyze(tumour, render=False, threshold=720.0).metrics
    first = analyze(both, render=False, threshold=720.0, bone=1)
    assert [first.metrics[k] for k in keys] == pytest.approx([alone[k] for k in keys], rel=1e-9)
    assert first.info["segmentation"]["bones_found"] == 2 and first.metrics["cortical_defect_count"] >= 1
    # the contralateral limb of the same scan (lying mirrored in it) as the reference, mirrored back: the same
    # loss as from its own scan as it was made
    separate = analyze(tumour, reference=contra, render=False, threshold=720.0).metrics
    same_scan = analyze(both, reference=both, bone=1, reference_bone=2, mirror_reference=True, render=False,
                        threshold=720.0).metrics
    assert same_scan["bone_lost_mm3"] == pytest.approx(separate["bone_lost_mm3"], rel=0.02)
    assert same_scan["registration_dice"] > 0.9


def test_a_cortex_under_four_voxels_is_flagged_at_in_vivo_resolution(caplog):
    # docs/accuracy.md: the lesion measures hold at 40 um (the phantom's 0.18 mm cortex measures 4.7-4.9 voxels)
    # and lose accuracy at 50 um (4.0-4.2 voxels): blastic +45 %, false defects in thin shells
    import logging

    from ctbone import analyze
    from ctbone.phantoms import PhantomSpec, make_phantom

    for voxel_mm, flagged in ((0.05, True), (0.025, False)):
        vol, _ = make_phantom(PhantomSpec(voxel_mm=voxel_mm, length_mm=1.5, metaphysis_length_mm=0.0), seed=0)
        vol.meta["source"] = f"phantom_{voxel_mm}.nii"
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ctbone"):
            res = analyze(vol, render=False)
        voxels = res.info["cortex_voxels"]
        assert voxels == pytest.approx(res.metrics["ct_th_mm"] / voxel_mm, rel=1e-3)
        warned = [r.getMessage() for r in caplog.records if "voxels thick" in r.getMessage()]
        assert (voxels < 4.5) == flagged and bool(warned) == flagged
        if flagged:
            assert f"phantom_{voxel_mm}.nii" in warned[0]


@pytest.mark.parametrize("call,error,words", [
    (lambda vol: analyze(vol.array), TypeError, "analyze needs a ctbone.Volume"),
    (lambda vol: analyze(vol, reference=vol.array), TypeError, "reference must be a ctbone.Volume or the path"),
    (lambda vol: analyze(vol, max_defect_diameter_mm=-1), ValueError, "max_defect_diameter_mm must be a finite"),
    (lambda vol: analyze(vol, sigma_vox=float("nan")), ValueError, "sigma_vox must be a finite number"),
    (lambda vol: analyze(vol, min_lesion_mm3="0.1"), ValueError, "min_lesion_mm3 must be a finite number"),
    (lambda vol: analyze(vol, mode="cube"), ValueError, "mode must be one of"),
])
def test_notebook_mistakes_are_said_before_any_work(call, error, words):
    # found by trying the API as a notebook user would: a bare array ended in "AttributeError: meta", a negative
    # bridge was measured with, a NaN smoothing sigma gave "no bone above threshold"
    vol, _ = make_phantom(PhantomSpec(voxel_mm=0.05, length_mm=0.5, metaphysis_length_mm=0.0), seed=0)
    with pytest.raises(error, match=words):
        call(vol)


def test_a_picture_path_that_is_a_folder_is_refused_before_writing(tmp_path):
    from ctbone.atomic_write import atomic_write_bytes
    from ctbone.errors import OutputError

    with pytest.raises(OutputError, match="is a folder; a file name is needed"):
        atomic_write_bytes(tmp_path, b"png bytes")
    assert list(tmp_path.iterdir()) == []  # no temporary file left


@pytest.mark.parametrize("calibrated, stored_integers", [(False, False), (True, False), (False, True), (True, True)])
def test_a_handed_over_scan_is_let_go_after_segmentation_with_equal_results(calibrated, stored_integers):
    # the memory lever of issue 7: the lesion and morphometry stages run beside the bone's crop, not the scan
    import gc
    import weakref

    import numpy as np

    from ctbone.volume import HandedOver

    spec = PhantomSpec(voxel_mm=0.03, length_mm=1.2, metaphysis_length_mm=0.0,
                       lesions=({"kind": "perforation", "z_mm": 0.6, "angle_deg": 0.0, "radius_mm": 0.1},))
    options = {"render": False, "calibration": (0.5, -10.0) if calibrated else None}

    def scan():  # stored integers, as a DICOM series holds them: the analysis then holds its crop as codes
        vol = make_phantom(spec, seed=0)[0]
        return vol.with_array(np.round(vol.array)) if stored_integers else vol

    kept = scan()
    plain = analyze(kept, **options)
    if not calibrated:  # a scan its caller holds is not copied: the result's image is a view of it
        assert np.shares_memory(plain.image.array, kept.array)

    handed = HandedOver(scan())
    scan_array = weakref.ref(handed.peek().array)
    alive_at = {}

    def progress(stage):
        gc.collect()
        alive_at[stage] = scan_array() is not None

    result = analyze(handed, progress=progress, **options)
    assert alive_at == {"segment": True, "lesions": False, "morphometry": False}
    with pytest.raises(RuntimeError, match="handed over to an analysis, which let it go"):
        handed.peek()
    assert result.metrics.keys() == plain.metrics.keys()
    for name, value in plain.metrics.items():
        assert result.metrics[name] == value or (value != value and result.metrics[name] != result.metrics[name]), name
    for name, mask in plain.masks.items():
        assert np.array_equal(result.masks[name].array, mask.array), name
    assert np.array_equal(result.image.array, plain.image.array) and result.image.origin == plain.image.origin
    assert result.image.array.flags.c_contiguous  # a compact crop, not a view of a freed scan


def test_the_results_compartments_are_made_when_read_from_bits_alone(small_result):
    # the result holds the compartments as bits (73 MB each as masks at 512^3), not the segmentation's values
    import pickle

    import numpy as np

    from ctbone.result import MaskSet
    from ctbone.segment import CompartmentMask

    masks = small_result.masks
    assert isinstance(masks, MaskSet) and list(masks)[:5] == ["bone", "envelope", "cortex", "marrow", "trabecular"]
    first, again = masks["cortex"], masks["cortex"]
    assert first is not again and np.array_equal(first.array, again.array)  # a new array at each read
    assert first.array.dtype == np.uint8 and first.unit == "mask" and first.shape == masks["bone"].shape
    maker = masks._items["cortex"]
    # it holds the bone and the bits, not the segmentation (whose calibrated values would stay alive with the result)
    assert isinstance(maker, CompartmentMask)
    assert set(vars(maker)) == {"name", "bone", "packed_envelope", "packed_marrow"}
    envelope, marrow = masks["envelope"].array.astype(bool), masks["marrow"].array.astype(bool)
    assert np.array_equal(first.array.astype(bool), envelope & ~marrow)
    assert np.array_equal(masks["trabecular"].array.astype(bool), marrow & masks["bone"].array.astype(bool))
    copied = pickle.loads(pickle.dumps(masks))  # a notebook may pickle a result: makers are plain objects
    assert np.array_equal(copied["cortex"].array, first.array)
    assert dict(masks).keys() == masks.keys()
