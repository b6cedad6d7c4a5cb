"""A small phantom study end to end: real analysis (segment, morphometry, lesions, reference), one corrupt scan.

Scans are written as NIfTI with their geometry and read with `ctbone.read_scan` when the reader is
installed (a SimpleITK stand-in until then). Skipped until the analysis stages are in the package.
"""

import csv
import importlib

import pytest

from ctbone.errors import ScanReadError
from ctbone.options import AnalysisOptions


def _available(module, name):
    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


pytestmark = pytest.mark.skipif(
    not all(_available(m, n) for m, n in (("ctbone.segment", "segment"), ("ctbone.measure.lesions", "measure_lesions"),
                                          ("ctbone.measure.morphometry", "standard_morphometry"),
                                          ("ctbone.measure.reference", "compare_to_reference"),
                                          ("ctbone.phantoms", "make_phantom"))),
    reason="analysis stages not available yet")


def read_nifti(path):
    """`ctbone.read_scan` when the reader exists, else SimpleITK with the same geometry (module level: picklable)."""
    if _available("ctbone.io", "read_scan"):
        from ctbone.io import read_scan

        return read_scan(path)
    import SimpleITK as sitk

    from ctbone.volume import Volume

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ScanReadError(f"{path}: not a readable NIfTI file. Potential fix: re-export the scan") from exc
    return Volume.from_sitk(image, unit="HU", meta={"source": str(path)})


# a coarse, short bone keeps each scan to about a second; lesions large enough to be unmistakable at 0.03 mm
SMALL_STUDY = {
    "name": "small test study", "tumour_limb": "R",
    "base": {"voxel_mm": 0.03, "length_mm": 1.8, "shape": [60, 64, 75], "supersample": 2, "blur_sigma_mm": 0.015,
             "noise_hu": 40.0, "outer_a_mm": 0.7, "outer_b_mm": 0.52, "cortical_thickness_mm": 0.2,
             "metaphysis_length_mm": 0.6, "metaphysis_flare_pct": 10.0, "soft_tissue_mm": 0.1,
             "air_margin_mm": 0.04},
    "animals": [
        {"animal_id": "C1", "group": "control", "spec": {"geometry_seed": 1}, "lesions": []},
        {"animal_id": "C2", "group": "control", "spec": {"geometry_seed": 2}, "lesions": []},
        {"animal_id": "T1", "group": "treated", "spec": {"geometry_seed": 3},
         "lesions": [{"kind": "perforation", "z_mm": 1.2, "angle_deg": 30.0, "radius_mm": 0.2},
                     {"kind": "lytic_cavity", "z_mm": 0.8, "angle_deg": 200.0, "radius_mm": 0.3}]},
        {"animal_id": "T2", "group": "treated", "spec": {"geometry_seed": 4},
         "lesions": [{"kind": "perforation", "z_mm": 1.4, "angle_deg": 120.0, "radius_mm": 0.25},
                     {"kind": "lytic_cavity", "z_mm": 0.7, "angle_deg": 300.0, "radius_mm": 0.3}]},
    ],
}


def _read_csv(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    import SimpleITK as sitk

    from ctbone.phantoms import make_phantom
    from ctbone.phantoms.study import study_scans
    from ctbone.study import run_batch

    root = tmp_path_factory.mktemp("e2e")
    study = root / "study"
    (study / "scans").mkdir(parents=True)
    # a fixed threshold given per row (the manifest override path) keeps this test about the batch, not the
    # automatic threshold; 650 HU lies between the phantoms' soft tissue and bone
    lines = ["animal_id,group,limb,scan,reference,mirror_reference,threshold"]
    for i, scan in enumerate(study_scans(SMALL_STUDY)):
        volume, _ = make_phantom(scan["spec"], seed=i)
        sitk.WriteImage(volume.to_sitk(), str(study / "scans" / f"{scan['name']}.nii.gz"))
        if scan["reference"]:
            lines.append(f"{scan['animal_id']},{scan['group']},{scan['limb']},scans/{scan['name']}.nii.gz,"
                         f"scans/{scan['reference']}.nii.gz,yes,650")
    # one corrupt scan: gzip garbage under a NIfTI name
    (study / "scans" / "X1_R.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    lines.append("X1,treated,R,scans/X1_R.nii.gz,,,")
    (study / "manifest.csv").write_text("\n".join(lines) + "\n")
    out = root / "out"
    status = run_batch(study / "manifest.csv", out, options=AnalysisOptions(), render=False, quiet=True,
                       control="control", read_fn=read_nifti)
    rows = _read_csv(out / "per_animal.csv")
    return status, out, rows


def test_corrupt_scan_fails_alone(study_run):
    status, _, rows = study_run
    assert status == 1
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "ok", "error"]
    assert rows[-1]["error"] and "\n" not in rows[-1]["error"]


def test_treated_lesions_exceed_control(study_run):
    _, out, rows = study_run
    ok = [r for r in rows if r["status"] == "ok"]

    def values(metric, group):
        return [float(r[metric]) for r in ok if r["group"] == group]

    # every treated phantom has two perforations of 0.4-0.5 mm diameter and a lytic cavity;
    # the control phantoms are intact, so any overlap of the groups would be a failure of the method
    for metric in ("cortical_defect_count", "cortical_defect_area_mm2", "lytic_volume_mm3", "bone_lost_mm3"):
        assert min(values(metric, "treated")) > max(values(metric, "control")), metric
    assert {r["threshold_hu"] for r in ok} == {"650"}
    stats = _read_csv(out / "group_stats.csv")
    lost = next(s for s in stats if s["metric"] == "bone_lost_mm3" and s["test"] == "welch_t")
    assert (lost["group_a"], lost["group_b"]) == ("treated", "control") and float(lost["hedges_g"]) > 0
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "scans" / "T1_R" / "masks" / "bone.nii.gz").is_file()
    # one lesion label map beside the separate masks: lytic 1, blastic 2, defect 3, on the same voxels
    import SimpleITK as sitk

    masks = out / "scans" / "T1_R" / "masks"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(masks / "lesions.nii.gz")))
    defects = sitk.GetArrayFromImage(sitk.ReadImage(str(masks / "defects.nii.gz")))
    assert (labels == 3).sum() == (defects > 0).sum() > 0 and (labels == 1).any()
    assert (out / "study.pzfx").is_file() and (out / "plots" / "bone_lost_mm3.svg").is_file()


REALDATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.mark.realdata
@pytest.mark.skipif(not (REALDATA / "mouse_femur").is_dir(), reason="../shared/realdata not present")
@pytest.mark.skipif(not _available("ctbone.io", "read_scan"), reason="reader not available yet")
def test_real_mouse_femur_through_the_batch(tmp_path):
    from ctbone.study import run_batch

    scan = next((REALDATA / "mouse_femur").glob("*.mhd"))
    (tmp_path / "m.csv").write_text(f"animal_id,group,scan\nF1,healthy,{scan}\n")
    out = tmp_path / "out"
    assert run_batch(tmp_path / "m.csv", out, options=AnalysisOptions(), render=False, quiet=True,
                     allow_absolute_paths=True) == 0
    row = _read_csv(out / "per_animal.csv")[0]
    # README: 0.050 mm isotropic, 103 slices, raw gray values (not HU)
    assert row["status"] == "ok" and float(row["voxel_mm"]) == pytest.approx(0.05)
    assert 0 < float(row["bv_tv_pct"]) < 100
    assert not list((REALDATA / "mouse_femur").glob("metrics*"))  # nothing written beside the input


def test_report_notes_what_the_analysis_bridged(study_run):
    import json

    from ctbone.report.study_outputs import scan_notes

    _, out, rows = study_run
    assert "_notes" not in rows[0]
    html = (out / "report.html").read_text(encoding="utf-8")
    notes = {}
    for r in rows:
        if r["status"] == "ok":
            name = f"{r['animal_id']}_{r['limb']}"
            notes[name] = scan_notes(json.loads((out / "scans" / name / "metrics.json").read_text(encoding="utf-8")))
    from ctbone.report.html import esc

    # T2's 0.6 mm cavity and 0.5 mm perforation leave the 0.6 mm bridge open (the ball dips into both sides)
    assert notes["T2_R"] and not notes["C1_R"]
    assert ">Notes</h2>" in html
    for name, found in notes.items():
        for note in found:
            assert esc(note) in html
    # and in per_animal.csv's qc_notes, for filtering in R or pandas
    table = {f"{r['animal_id']}_{r['limb']}": r for r in _read_csv(out / "per_animal.csv")}
    assert table["T2_R"]["qc_notes"] == "; ".join(notes["T2_R"]) and table["C1_R"]["qc_notes"] == ""


def test_scan_notes_read_the_bridged_envelope():
    from ctbone.report.study_outputs import scan_notes

    assert scan_notes({"info": {"segmentation": {}}}) == []
    (note,) = scan_notes({"info": {"segmentation": {"envelope_bridged_mm": [[0.78, 1.0]]}}})
    assert "0.78–1.00 mm" in note and "--max-defect-diameter-mm" in note
    fills, bridged = scan_notes({"info": {"segmentation": {"fills_field_of_view_pct": 98.5,
                                                           "envelope_bridged_mm": [[0.78, 1.0]]}}})
    assert "98 %" in fills and "--mode trabecular-cube" in fills and "0.78–1.00 mm" in bridged
    (flat,) = scan_notes({"info": {"threshold_method": "otsu-no-contrast", "segmentation": {}}})
    assert "no bone contrast" in flat
    assert scan_notes({"info": {"segmentation": {"long_axis_tilt_deg": 12.0}}}) == []
    # a cortex under 4.5 voxels: under the resolution the lesion measures were validated at
    assert scan_notes({"info": {"cortex_voxels": 4.6, "segmentation": {}}}) == []
    (coarse,) = scan_notes({"info": {"cortex_voxels": 3.2, "segmentation": {}}})
    assert "3.2 voxels" in coarse and "false defects" in coarse
    # openings the threshold reads but the gray values deny: said, with where to look
    assert scan_notes({"info": {"segmentation": {}, "lesions": {"openings_without_missing_bone_mm2": []}}}) == []
    (denied,) = scan_notes({"info": {"segmentation": {}, "lesions": {"openings_without_missing_bone_mm2": [0.2988]}}})
    assert "1 opening(s) of 0.299 mm²" in denied and "qc_slices.png" in denied
    # a shaft leaning in the slices analysed: its slice areas are 1/cos - 1 over its cross-sections
    assert scan_notes({"info": {"segmentation": {"shaft_tilt_deg": 9.9}}}) == []
    (lean,) = scan_notes({"info": {"segmentation": {"shaft_tilt_deg": 20.0}}})
    assert "20°" in lean and "6.4 %" in lean and "Ct.Ar" in lean
    # a short piece wider than long leans nowhere in particular: no flag, no note, whatever its principal axis
    assert scan_notes({"info": {"segmentation": {"long_axis_tilt_deg": 89.8}}}) == []
    (tilted,) = scan_notes({"info": {"segmentation": {"long_axis_tilt_deg": 89.6, "shaft_across_slices": True}}})
    assert "90°" in tilted and "reslice" in tilted
    assert scan_notes({"info": {"segmentation": {"marrow_pct_of_envelope": 52.0}}}) == []
    second, solid = scan_notes({"info": {"segmentation": {"left_out_particle_mm3": 2.96,
                                                          "marrow_pct_of_envelope": 0.0}}})
    assert "2.96 mm³" in second and "no marrow cavity" in solid


def test_a_study_of_image_stacks_with_and_without_their_rec_log(tmp_path):
    # Bruker NRecon folders: one keeps its *_rec.log, one lost it and has spacing_mm in the manifest, and a
    # DICOM scan given a spacing_mm is refused in its row (it carries its own voxel size), not silently used
    from nrecon_folders import gray_pages, write_nrecon_folder

    from ctbone.io import write_dicom_series
    from ctbone.phantoms import PhantomSpec, make_phantom
    from ctbone.study import run_batch

    vol, _ = make_phantom(PhantomSpec(voxel_mm=0.04, length_mm=1.2, metaphysis_length_mm=0.0), seed=1)
    gray = gray_pages(vol.array)
    write_nrecon_folder(tmp_path / "with_log", gray, prefix="b", suffix=".png",
                        log="[Reconstruction]\nPixel Size (um)=40.0\n")
    write_nrecon_folder(tmp_path / "no_log", gray, prefix="b", suffix=".png")
    write_dicom_series(vol, tmp_path / "dicom")
    (tmp_path / "m.csv").write_text("animal_id,group,scan,spacing_mm\nA1,ctl,with_log,\nA2,ctl,no_log,0.04\n"
                                    "A3,trt,no_log,\nA4,trt,dicom,0.04\n")
    assert run_batch(tmp_path / "m.csv", tmp_path / "out", options=AnalysisOptions(), render=False, quiet=True) != 0
    rows = {r["animal_id"]: r for r in _read_csv(tmp_path / "out" / "per_animal.csv")}
    assert rows["A1"]["status"] == rows["A2"]["status"] == "ok"
    assert float(rows["A1"]["voxel_mm"]) == float(rows["A2"]["voxel_mm"]) == pytest.approx(0.04)
    assert rows["A1"]["bv_mm3"] == rows["A2"]["bv_mm3"]  # the same pictures, the same voxel size
    # where each voxel size came from, for the methods section
    assert (rows["A1"]["input_format"], rows["A1"]["voxel_size_from"]) == ("png", "rec.log")
    assert rows["A2"]["voxel_size_from"] == "given"
    assert rows["A3"]["status"] == "error" and "carry no voxel size" in rows["A3"]["error"]
    assert rows["A4"]["status"] == "error" and "only read for image stacks" in rows["A4"]["error"]
