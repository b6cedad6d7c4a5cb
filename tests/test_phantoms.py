"""Phantoms: determinism, exact truth against analytic values, partial volume, twins, DICOM round trip."""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate

from ctbone.phantoms import (
    LABEL_NAMES,
    PhantomSpec,
    PhantomSpecError,
    default_spec,
    fine_slice,
    intact_twin,
    make_phantom,
    mirrored,
)
from ctbone.phantoms.geometry import Rods, rasterise_rods
from ctbone.phantoms.study import DEMO_STUDY, MANIFEST_COLUMNS, load_definition, manifest_rows, study_scans

REPO = Path(__file__).resolve().parents[1]
WOVEN = LABEL_NAMES.index("woven")

# a short straight elliptical tube: no taper, no metaphysis, no noise, no blur (analytic truth)
TUBE = PhantomSpec(length_mm=0.4, taper_pct=0, metaphysis_length_mm=0, noise_hu=0, blur_sigma_mm=0)
# a short piece of the metaphysis with trabeculae, a perforation and a blastic cap (noise and blur on)
SMALL = PhantomSpec(length_mm=0.6, metaphysis_length_mm=0.8, noise_hu=60, lesions=(
    {"kind": "perforation", "z_mm": 0.3, "angle_deg": 30.0, "radius_mm": 0.08},
    {"kind": "blastic", "z_mm": 0.3, "angle_deg": 250.0, "half_length_mm": 0.25, "thickness_mm": 0.1},
))


@pytest.fixture(scope="module")
def small():
    return make_phantom(SMALL, seed=3)


def has_dicom_writer() -> bool:
    return importlib.util.find_spec("ctbone.io.dicom_write") is not None


# -- determinism -----------------------------------------------------------------
def test_same_seed_identical_other_seed_other_noise_same_truth(small):
    vol, truth = small
    again, truth_again = make_phantom(SMALL, seed=3)
    other, truth_other = make_phantom(SMALL, seed=4)
    assert np.array_equal(vol.array, again.array)
    assert not np.array_equal(vol.array, other.array)
    # the noise is the only difference: its size is what the spec asked for (60 HU, 0.5 % sampling error)
    assert np.std(vol.array - other.array) / np.sqrt(2) == pytest.approx(60, rel=0.02)
    assert {k: v for k, v in truth_other.items() if k != "seed"} == {k: v for k, v in truth.items() if k != "seed"}


def test_volume_geometry(small):
    vol, truth = small
    assert vol.array.dtype == np.float32 and vol.unit == "HU"
    assert vol.spacing == (0.02, 0.02, 0.02)
    assert np.array_equal(vol.direction, np.eye(3))
    nz, ny, nx = vol.shape
    assert nz == 30
    # the bone axis is x = y = 0: the grid is centred on it, so mirroring is x -> -x
    assert vol.origin[0] == pytest.approx(-(nx - 1) / 2 * 0.02) and vol.origin[2] == 0.0
    assert truth["shape"] == [nz, ny, nx]


# -- exact truth vs analytic ---------------------------------------------------------
@pytest.mark.parametrize("slice_mm", [None, 0.04], ids=["isotropic", "anisotropic"])
def test_tube_cortical_volume_and_areas_match_analytic(slice_mm):
    spec = replace(TUBE, slice_mm=slice_mm)
    vol, truth = make_phantom(spec)
    assert vol.spacing == spec.spacing_mm == (slice_mm or 0.02, 0.02, 0.02)
    assert vol.shape[0] == round(0.4 / (slice_mm or 0.02))
    a, b, t = TUBE.outer_a_mm, TUBE.outer_b_mm, TUBE.cortical_thickness_mm
    length = vol.shape[0] * spec.z_spacing_mm
    expected = np.pi * (a * b - (a - t) * (b - t)) * length
    # counting 5 µm fine voxels of ellipses ~100-150 fine voxels across: the lattice-point error of an
    # ellipse area is far below 0.2 % at that size (measured 0.02 %)
    assert truth["cortical_bone_volume_mm3"] == pytest.approx(expected, rel=2e-3)
    assert truth["bone_volume_mm3"] == truth["cortical_bone_volume_mm3"]
    assert truth["tv_mm3"] == pytest.approx(np.pi * a * b * length, rel=2e-3)
    assert truth["tt_ar_mm2"] == pytest.approx(np.pi * a * b, rel=1e-12)
    assert truth["tt_ar_mean_mm2"] == pytest.approx(np.pi * a * b, rel=2e-3)  # a straight tube: mean = mid-shaft
    assert truth["ma_ar_mm2"] == pytest.approx(np.pi * (a - t) * (b - t), rel=1e-12)
    assert truth["ct_th_mm"] == truth["ct_th_min_mm"] == truth["ct_th_max_mm"] == t
    assert truth["tb_bv_mm3"] == 0
    assert truth["cortical_defect_count"] == 0 and truth["lytic_volume_mm3"] == 0
    # Ramanujan's perimeter of the ellipse times the length: the lateral surface of the tube
    h = ((a - b) / (a + b)) ** 2
    perimeter = np.pi * (a + b) * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h)))
    assert truth["periosteal_surface_mm2"] == pytest.approx(perimeter * length, rel=1e-4)


def _cylinder_patch_area(r, big_r):
    """Area cut from a circular cylinder (radius big_r) by a perpendicular drill of radius r (exact integral)."""
    value, _ = integrate.quad(lambda u: 2 * np.sqrt(r * r - u * u) / np.sqrt(1 - (u / big_r) ** 2), -r, r)
    return value


@pytest.mark.parametrize(("radius_mm", "slice_mm"), [(0.06, None), (0.15, None), (0.15, 0.03)])
def test_perforation_area_and_count_on_a_round_tube(radius_mm, slice_mm):
    spec = replace(TUBE, outer_a_mm=0.6, outer_b_mm=0.6, length_mm=0.5, slice_mm=slice_mm,
                   lesions=({"kind": "perforation", "z_mm": 0.24, "angle_deg": 40.0, "radius_mm": radius_mm},))
    _, truth = make_phantom(spec)
    assert truth["cortical_defect_count"] == 1
    (defect,) = truth["defects"]
    exact = _cylinder_patch_area(radius_mm, 0.6)
    # the surface is sampled every 2.5 µm around and 5-7.5 µm along z: the patch boundary error is < 1 %
    assert defect["area_mm2"] == pytest.approx(exact, rel=0.01)
    # pi r^2 is a lower bound, off by the curvature: about (r/R)^2 / 8, i.e. < 1 % here
    assert np.pi * radius_mm ** 2 < exact < np.pi * radius_mm ** 2 * 1.01
    assert defect["angle_deg"] == pytest.approx(40.0, abs=0.5)
    assert defect["z_mm"] == pytest.approx(0.24, abs=0.005)
    # the drill removes the cortex along its length: a cylinder of radius r through a wall of
    # thickness t, to within the curvature of the two surfaces (a few %)
    t = spec.cortical_thickness_mm
    assert defect["volume_mm3"] == pytest.approx(np.pi * radius_mm ** 2 * t, rel=0.05)
    assert truth["lytic_volume_mm3"] == pytest.approx(defect["volume_mm3"])
    assert truth["cortical_bone_volume_mm3"] == pytest.approx(
        truth["intact_cortical_bone_volume_mm3"] - truth["lytic_volume_mm3"])


def test_openings_across_the_parameter_seam_and_overlapping_drills():
    def drills(*lesions):
        return make_phantom(replace(TUBE, lesions=tuple(
            {"kind": "perforation", "z_mm": z, "angle_deg": angle, "radius_mm": 0.08} for z, angle in lesions)))[1]

    # angle 0 is where the surface parameter wraps: still one opening, the same area as at 180 (symmetry)
    at_0, at_180 = drills((0.2, 0.0)), drills((0.2, 180.0))
    assert at_0["cortical_defect_count"] == at_180["cortical_defect_count"] == 1
    assert at_0["cortical_defect_area_mm2"] == pytest.approx(at_180["cortical_defect_area_mm2"], rel=1e-3)
    # two overlapping drills make one opening, smaller than the sum of two separate ones
    both = drills((0.17, 90.0), (0.23, 90.0))
    assert both["cortical_defect_count"] == 1 and both["defects"][0]["lesion_ids"] == [1, 2]
    apart = drills((0.1, 90.0), (0.3, 90.0))
    assert apart["cortical_defect_count"] == 2
    assert both["cortical_defect_area_mm2"] < apart["cortical_defect_area_mm2"]
    assert both["lytic_volume_mm3"] < sum(les["volume_mm3"] for les in both["lesions"])


def test_cavity_inside_the_cortex_has_sphere_volume_and_no_opening():
    r = 0.05
    spec = replace(TUBE, lesions=({"kind": "lytic_cavity", "z_mm": 0.2, "angle_deg": 0.0, "radius_mm": r,
                                   "depth_mm": 0.09},))
    _, truth = make_phantom(spec)
    # a sphere 20 fine voxels across: voxel counting error ~1 % (measured 0.3 %)
    assert truth["lytic_volume_mm3"] == pytest.approx(4 / 3 * np.pi * r ** 3, rel=0.02)
    assert truth["cortical_defect_count"] == 0 and truth["defects"] == []
    (lesion,) = truth["lesions"]
    assert lesion["through_cortex"] is False and lesion["opening_area_mm2"] == 0
    assert lesion["centroid_mm"] == pytest.approx([0.75 - 0.09, 0.0, 0.2], abs=1e-3)


def test_cavity_breaking_through_counts_as_defect():
    spec = replace(TUBE, lesions=({"kind": "lytic_cavity", "z_mm": 0.2, "angle_deg": 90.0, "radius_mm": 0.25},))
    _, truth = make_phantom(spec)
    # centred on the endosteum (default depth), radius 0.25 > thickness 0.18: it opens the periosteum
    assert truth["cortical_defect_count"] == 1
    assert truth["defects"][0]["area_mm2"] > 0.01
    assert truth["lesions"][0]["depth_mm"] == pytest.approx(TUBE.cortical_thickness_mm)


def test_vascular_canals_are_cortical_porosity_not_defects():
    spec = replace(TUBE, length_mm=0.6, vascular_canals=3)
    _, truth = make_phantom(spec)
    assert truth["cortical_defect_count"] == 0 and truth["lytic_volume_mm3"] == 0
    pores_mm3 = truth["cortical_compartment_mm3"] - truth["intact_cortical_bone_volume_mm3"]
    # each canal crosses the cortex (>= 0.18 mm) and is at most ~0.3 mm long inside it (oblique)
    canal_area = np.pi * (spec.canal_diameter_mm / 2) ** 2
    assert 3 * canal_area * 0.1 < pores_mm3 < 3 * canal_area * 0.35
    assert truth["ct_po_pct"] == pytest.approx(100 * pores_mm3 / truth["cortical_compartment_mm3"])
    assert len(truth["vascular_canal_segments_mm"]) == 3


def test_blastic_cap_is_outside_the_envelope_porous_and_denser_than_soft_tissue(small):
    _, truth = small
    assert truth["blastic_volume_mm3"] > 0
    assert truth["blastic_mean_density_hu"] == SMALL.woven_hu
    assert truth["bone_volume_mm3"] == pytest.approx(
        truth["cortical_bone_volume_mm3"] + truth["tb_bv_mm3"] + truth["blastic_volume_mm3"])
    fine = fine_slice(SMALL, 15)  # z = 0.3 mm, the cap's centre
    woven = fine.labels == WOVEN
    assert woven.any()
    assert not (woven & fine.envelope).any()
    # porosity 0.35 by construction of the pore field: the cap is ~65 % bone (the field is only
    # approximately Gaussian on a slice, hence the loose bound)
    cap_bone_fraction = woven.sum() / (woven.sum() + ((fine.labels == 1) & _cap_zone(fine)).sum())
    assert 0.45 < cap_bone_fraction < 0.85


def _cap_zone(fine):
    """Soft tissue within the cap's angular sector and thickness (where pores are)."""
    from ctbone.phantoms.geometry import outer_axes_mm

    z = fine.z_mm[:, None, None]
    a, b = (v[:, None, None] for v in outer_axes_mm(SMALL, fine.z_mm))
    x, y = fine.x_mm[None, None, :], fine.y_mm[None, :, None]
    ring = ((x / a) ** 2 + (y / b) ** 2 > 1) & ((x / (a + 0.1)) ** 2 + (y / (b + 0.1)) ** 2 <= 1)
    angle = np.rad2deg(np.arctan2(y, x)) % 360
    return ring & (np.abs(angle - 250) < 30) & (np.abs(z - 0.3) < 0.1)


def test_rod_rasterisation_matches_capsule_volume():
    h = 0.005
    grid = np.arange(-0.2, 0.2, h) + h / 2
    rods = Rods(np.array([[-0.1, 0.01, 0.0]]), np.array([[0.1, 0.01, 0.0]]), 0.025)
    mask = rasterise_rods(rods, grid, grid, grid)
    capsule = np.pi * 0.025 ** 2 * 0.2 + 4 / 3 * np.pi * 0.025 ** 3
    # a grid-aligned rod 10 fine voxels across: its cross-section is a lattice disc of radius 5,
    # whose pixel count is 94-103 % of pi r^2 depending on the offset (Gauss circle problem)
    assert mask.sum() * h ** 3 == pytest.approx(capsule, rel=0.06)
    # and the rod is where it should be: its voxel centroid is the segment's midpoint
    zz, yy, xx = np.nonzero(mask)
    assert [grid[xx].mean(), grid[yy].mean(), grid[zz].mean()] == pytest.approx([0.0, 0.01, 0.0], abs=h / 2)


def test_trabeculae_fill_only_the_metaphyseal_marrow(small):
    _, truth = small
    assert truth["tb_bv_mm3"] > 0
    assert truth["tb_rod_diameter_mm"] == 0.05
    fine = fine_slice(SMALL, 5)
    trab = fine.labels == LABEL_NAMES.index("trabecular")
    assert trab.any() and not (trab & ~fine.marrow).any()


# -- partial volume -----------------------------------------------------------------------
def test_block_average_equals_fine_grid():
    spec = replace(SMALL, noise_hu=0, blur_sigma_mm=0, length_mm=0.2)
    vol, truth = make_phantom(spec)
    # the image is the exact block mean of the fine grid (float32 rounding only)
    assert float(vol.array.mean(dtype=np.float64)) == pytest.approx(truth["fine_mean_hu"], abs=1e-3)
    s = spec.supersample
    fine = fine_slice(spec, 4).intensity_hu
    block = fine.reshape(1, s, vol.shape[1], s, vol.shape[2], s).mean(axis=(1, 3, 5))[0]
    assert np.allclose(block, vol.array[4], atol=1e-3)
    # partial volume is there: boundary voxels take values between marrow and cortex
    values = vol.array[4]
    assert ((values > spec.marrow_hu + 100) & (values < spec.cortical_hu - 100)).sum() > 50


# -- twins -----------------------------------------------------------------------------------
def test_mirrored_twin_is_the_x_flip(small):
    vol, truth = small
    left, left_truth = make_phantom(mirrored(SMALL), seed=3)
    assert left.origin == vol.origin
    assert np.array_equal(left.array, vol.array[:, :, ::-1])
    assert left_truth["side"] == "L" and mirrored(mirrored(SMALL)) == SMALL
    for right_lesion, left_lesion in zip(truth["lesions"], left_truth["lesions"]):
        x, y, z = right_lesion["centroid_mm"]
        assert left_lesion["centroid_mm"] == pytest.approx([-x, y, z])
        assert left_lesion["angle_deg"] == pytest.approx((180 - right_lesion["angle_deg"]) % 360)
    assert left_truth["blastic_volume_mm3"] == truth["blastic_volume_mm3"]


def test_intact_twin_has_no_lesion_truth(small):
    _, truth = small
    twin, twin_truth = make_phantom(intact_twin(SMALL), seed=3)
    for key in ("cortical_defect_count", "cortical_defect_area_mm2", "lytic_volume_mm3",
                "trabecular_bone_removed_mm3", "blastic_volume_mm3"):
        assert twin_truth[key] == 0, key
    assert twin_truth["lesions"] == [] and twin_truth["defects"] == []
    # the same bone: the lesioned scan lost exactly what its truth says it lost
    assert twin_truth["cortical_bone_volume_mm3"] == pytest.approx(
        truth["cortical_bone_volume_mm3"] + truth["lytic_volume_mm3"])
    assert twin_truth["tb_bv_mm3"] == pytest.approx(truth["tb_bv_mm3"] + truth["trabecular_bone_removed_mm3"])


# -- spec ---------------------------------------------------------------------------------------
def test_spec_json_round_trip_and_refusals(tmp_path):
    spec = default_spec()
    assert PhantomSpec.from_json(spec.to_json()) == spec
    assert PhantomSpec.from_json(json.dumps(json.loads(spec.to_json()))).lesions == spec.lesions
    with pytest.raises(PhantomSpecError, match="unknown field"):
        PhantomSpec.from_dict({"voxel_size": 0.01})
    bad = tmp_path / "bad.json"
    bad.write_text('{"voxel_size": 0.01}')
    with pytest.raises(PhantomSpecError, match=r"bad\.json: phantom spec: unknown field"):
        PhantomSpec.from_file(bad)
    with pytest.raises(PhantomSpecError, match="unknown kind"):
        PhantomSpec(lesions=({"kind": "fracture", "z_mm": 1},))
    with pytest.raises(PhantomSpecError, match="needs z_mm"):
        PhantomSpec(lesions=({"kind": "perforation"},))
    with pytest.raises(PhantomSpecError, match="thicker"):
        PhantomSpec(cortical_thickness_mm=0.6)


# -- study definition -----------------------------------------------------------------------
def test_demo_definition_file_matches_builtin_and_manifest_template():
    on_disk = REPO / "phantoms" / "demo_study.json"
    if not on_disk.exists():
        pytest.skip("phantoms/demo_study.json is not beside the package (installed without the repository)")
    assert load_definition(on_disk) == DEMO_STUDY
    with (REPO / "phantoms" / "demo_manifest.csv").open() as fh:
        template = list(csv.DictReader(fh))
    assert template == manifest_rows(DEMO_STUDY)
    scans = study_scans(DEMO_STUDY)
    groups = {s["group"] for s in scans}
    assert groups == {"control", "treated"} and len(scans) == 12
    for scan in scans:
        if scan["limb"] == "L":  # the contralateral limb is the intact mirror of the tumour limb
            assert scan["spec"].lesions == () and scan["spec"].side == "L"
    # the example spec for `ctbone phantom --spec` is the default phantom
    assert PhantomSpec.from_json((REPO / "phantoms" / "default_spec.json").read_text()) == default_spec()
    assert list(MANIFEST_COLUMNS[:5]) == ["animal_id", "group", "limb", "scan", "reference"]


# -- on disk ------------------------------------------------------------------------------------
@pytest.mark.skipif(not has_dicom_writer(), reason="ctbone.io.dicom_write is not there yet (reader engineer)")
def test_dicom_round_trip_with_distractors(tmp_path):
    import ctbone
    from ctbone.phantoms.write import write_phantom

    spec = replace(SMALL, length_mm=0.2)
    folder = write_phantom(spec, tmp_path / "ph", seed=5)
    vol, truth = make_phantom(spec, seed=5)
    files = sorted(p.name for p in (folder / "dicom").iterdir())
    assert any(name.endswith(".log") for name in files)
    back = ctbone.read_scan(folder / "dicom")
    assert back.shape == vol.shape
    # int16 storage with slope 1 keeps whole HU: at most one unit off, whatever the rounding rule
    assert np.max(np.abs(back.array - vol.array)) <= 1.0
    assert back.spacing == pytest.approx(vol.spacing) and back.origin == pytest.approx(vol.origin)
    stored = json.loads((folder / "truth.json").read_text())
    assert stored["lytic_volume_mm3"] == truth["lytic_volume_mm3"] and stored["seed"] == 5
    # the reader chose the CT series, not the scout, and skipped the log and the preview
    assert back.meta["series_uid"] == stored["series_uid"]
    from ctbone.io import scan_info

    info = scan_info(folder / "dicom")
    assert len(info["series"]) == 2 and len(info["skipped"]) == 2


@pytest.mark.skipif(not has_dicom_writer(), reason="ctbone.io.dicom_write is not there yet (reader engineer)")
def test_write_study_manifest_and_truth(tmp_path):
    from ctbone.phantoms.study import write_study

    definition = {"tumour_limb": "R",
                  "base": {"length_mm": 0.16, "metaphysis_length_mm": 0, "noise_hu": 10},
                  "animals": [{"animal_id": "A", "group": "control", "lesions": []},
                              {"animal_id": "B", "group": "treated",
                               "lesions": [{"kind": "perforation", "z_mm": 0.08, "radius_mm": 0.05}]}]}
    manifest = write_study(tmp_path, seed=1, definition=definition)
    with manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["animal_id"] for r in rows] == ["A", "B"]
    for row in rows:
        assert (tmp_path / row["scan"]).is_dir() and (tmp_path / row["reference"]).is_dir()
    with (tmp_path / "truth.csv").open() as fh:
        truth = {(r["animal_id"], r["limb"]): r for r in csv.DictReader(fh)}
    assert float(truth["B", "R"]["cortical_defect_count"]) == 1
    assert float(truth["B", "L"]["cortical_defect_count"]) == 0
