"""The whole path as a user runs it: `ctbone phantom` writes a DICOM series with truth.json, `ctbone analyze`
reads it back and writes metrics.csv; the metrics are compared with the truth (tolerances from
docs/accuracy.md, measured values beside them)."""

from __future__ import annotations

import csv
import json

import pytest

from ctbone.cli import main


# one perforation, one lytic cavity breaching the cortex, one blastic outgrowth, at 30 um
SPEC = {"voxel_mm": 0.03, "length_mm": 2.0, "metaphysis_length_mm": 0.0,
        "lesions": [{"kind": "perforation", "z_mm": 0.5, "angle_deg": 0.0, "radius_mm": 0.12},
                    {"kind": "lytic_cavity", "z_mm": 1.1, "angle_deg": 200.0, "radius_mm": 0.2},
                    {"kind": "blastic", "z_mm": 1.3, "angle_deg": 300.0, "half_length_mm": 0.4}]}
COMPARED = ("cortical_defect_count", "lytic_volume_mm3", "blastic_volume_mm3", "ct_th_mm", "tv_mm3")


def _write_phantom(tmp_path):
    """`ctbone phantom` writes SPEC as a DICOM series (tmp_path/ph/dicom) with its truth.json."""
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    assert main(["phantom", str(tmp_path / "ph"), "--spec", str(tmp_path / "spec.json"), "--seed", "3"]) == 0


def _truth_and_metrics(tmp_path):
    """(truth.json, the metrics.csv row `analyze` wrote to tmp_path/out, the COMPARED metrics as floats)."""
    truth = json.loads((tmp_path / "ph" / "truth.json").read_text())
    with open(tmp_path / "out" / "metrics.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    return truth, row, {name: float(row[name]) for name in COMPARED}


def test_phantom_dicom_through_analyze_cli_matches_truth(tmp_path):
    _write_phantom(tmp_path)
    assert main(["analyze", str(tmp_path / "ph" / "dicom"), "-o", str(tmp_path / "out"), "--no-render", "-q"]) == 0
    truth, row, m = _truth_and_metrics(tmp_path)

    def err(name):
        return (m[name] - truth[name]) / truth[name]

    assert m["cortical_defect_count"] == truth["cortical_defect_count"] == 2
    assert abs(err("lytic_volume_mm3")) <= 0.05            # measured -0.04 %
    assert 0.0 < err("blastic_volume_mm3") <= 0.25          # measured +9.1 %
    assert abs(m["ct_th_mm"] - truth["ct_th_mm"]) <= 0.03   # one voxel; measured +0.011 mm
    assert m["tv_mm3"] == pytest.approx(truth["tv_mm3"], rel=0.03)  # measured +0.2 %
    assert (tmp_path / "out" / "masks" / "lesions.nii.gz").is_file()
    assert (row["input_format"], row["voxel_size_from"]) == ("dicom", "header")
    # a shaft lying along z inside the field of view, one bone, hollow: no scan check flags it, nothing warned
    info = json.loads((tmp_path / "out" / "metrics.json").read_text())["info"]
    assert not {"fills_field_of_view_pct", "left_out_particle_mm3", "shaft_across_slices"} & set(info["segmentation"])
    assert info["segmentation"]["marrow_pct_of_envelope"] > 40 and info["threshold_method"] != "otsu-no-contrast"


def test_phantom_as_a_bruker_nrecon_bmp_stack_matches_truth(tmp_path):
    # Bruker SkyScan's reconstruction writes 8-bit BMP slices and a *_rec.log with the pixel size: the same
    # phantom, its attenuation mapped to 0-255 as NRecon maps it (linearly; HU -1000..3000 here), must give the
    # truth within the DICOM test's tolerances (measured values beside them)
    from nrecon_folders import gray_pages, write_nrecon_folder

    import ctbone

    _write_phantom(tmp_path)
    hu = ctbone.read_scan(tmp_path / "ph" / "dicom").array
    gray = gray_pages(hu)
    rec = write_nrecon_folder(tmp_path / "tibia_rec", gray, prefix="tibia",
                              preview=gray[len(gray) // 2, ::4, ::4])  # with NRecon's preview
    (rec / "tibia__rec.log").write_text("[Reconstruction]\nPixel Size (um)=30.0\n")
    before = sorted(p.name for p in rec.iterdir())
    assert main(["analyze", str(rec), "-o", str(tmp_path / "out"), "--no-render", "-q"]) == 0
    assert sorted(p.name for p in rec.iterdir()) == before  # nothing written beside the input
    truth, row, m = _truth_and_metrics(tmp_path)
    assert "threshold_raw" in row  # gray values, not HU
    assert m["cortical_defect_count"] == truth["cortical_defect_count"] == 2
    assert m["lytic_volume_mm3"] == pytest.approx(truth["lytic_volume_mm3"], rel=0.05)  # measured +0.04 %
    assert 0.0 < m["blastic_volume_mm3"] / truth["blastic_volume_mm3"] - 1 <= 0.25   # measured +9.5 %
    assert abs(m["ct_th_mm"] - truth["ct_th_mm"]) <= 0.03                            # measured +0.011 mm
    assert m["tv_mm3"] == pytest.approx(truth["tv_mm3"], rel=0.03)                   # measured +0.1 %
