"""The whole path as a user runs it: `ctbone phantom` writes a DICOM series with truth.json, `ctbone analyze`
reads it back and writes metrics.csv; the metrics are compared with the truth (tolerances from
docs/accuracy.md, measured values beside them)."""

from __future__ import annotations

import csv
import json

import pytest

from ctbone.cli import main


def test_phantom_dicom_through_analyze_cli_matches_truth(tmp_path):
    spec = {"voxel_mm": 0.03, "length_mm": 2.0, "metaphysis_length_mm": 0.0,
            "lesions": [{"kind": "perforation", "z_mm": 0.5, "angle_deg": 0.0, "radius_mm": 0.12},
                        {"kind": "lytic_cavity", "z_mm": 1.1, "angle_deg": 200.0, "radius_mm": 0.2},
                        {"kind": "blastic", "z_mm": 1.3, "angle_deg": 300.0, "half_length_mm": 0.4}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert main(["phantom", str(tmp_path / "ph"), "--spec", str(tmp_path / "spec.json"), "--seed", "3"]) == 0
    assert main(["analyze", str(tmp_path / "ph" / "dicom"), "-o", str(tmp_path / "out"), "--no-render", "-q"]) == 0
    truth = json.loads((tmp_path / "ph" / "truth.json").read_text())
    with open(tmp_path / "out" / "metrics.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    names = ("cortical_defect_count", "lytic_volume_mm3", "blastic_volume_mm3", "ct_th_mm", "tv_mm3")
    m = {name: float(row[name]) for name in names}

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
    import numpy as np
    from PIL import Image

    import ctbone

    spec = {"voxel_mm": 0.03, "length_mm": 2.0, "metaphysis_length_mm": 0.0,
            "lesions": [{"kind": "perforation", "z_mm": 0.5, "angle_deg": 0.0, "radius_mm": 0.12},
                        {"kind": "lytic_cavity", "z_mm": 1.1, "angle_deg": 200.0, "radius_mm": 0.2},
                        {"kind": "blastic", "z_mm": 1.3, "angle_deg": 300.0, "half_length_mm": 0.4}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert main(["phantom", str(tmp_path / "ph"), "--spec", str(tmp_path / "spec.json"), "--seed", "3"]) == 0
    hu = ctbone.read_scan(tmp_path / "ph" / "dicom").array
    gray = np.clip(np.rint((hu + 1000.0) * 255.0 / 4000.0), 0, 255).astype(np.uint8)
    rec = tmp_path / "tibia_rec"
    rec.mkdir()
    for z, page in enumerate(gray):
        Image.fromarray(page).save(rec / f"tibia_rec{z:08d}.bmp")
    Image.fromarray(gray[len(gray) // 2, ::4, ::4]).save(rec / "tibia_rec_spr.bmp")  # NRecon's preview
    (rec / "tibia__rec.log").write_text("[Reconstruction]\nPixel Size (um)=30.0\n")
    before = sorted(p.name for p in rec.iterdir())
    assert main(["analyze", str(rec), "-o", str(tmp_path / "out"), "--no-render", "-q"]) == 0
    assert sorted(p.name for p in rec.iterdir()) == before  # nothing written beside the input
    truth = json.loads((tmp_path / "ph" / "truth.json").read_text())
    with open(tmp_path / "out" / "metrics.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    names = ("cortical_defect_count", "lytic_volume_mm3", "blastic_volume_mm3", "ct_th_mm", "tv_mm3")
    m = {name: float(row[name]) for name in names}
    assert "threshold_raw" in row  # gray values, not HU
    assert m["cortical_defect_count"] == truth["cortical_defect_count"] == 2
    assert m["lytic_volume_mm3"] == pytest.approx(truth["lytic_volume_mm3"], rel=0.05)  # measured +0.04 %
    assert 0.0 < m["blastic_volume_mm3"] / truth["blastic_volume_mm3"] - 1 <= 0.25   # measured +9.5 %
    assert abs(m["ct_th_mm"] - truth["ct_th_mm"]) <= 0.03                            # measured +0.011 mm
    assert m["tv_mm3"] == pytest.approx(truth["tv_mm3"], rel=0.03)                   # measured +0.1 %
