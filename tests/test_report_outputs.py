"""Per-scan outputs: files, geometry of masks, atomic writing, formula-injection and input protection."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ctbone.errors import OutputError
from ctbone.report import write_scan_outputs
from ctbone.report.html import esc, table_html
from ctbone.report.safeio import check_output_dir, csv_text, format_cell
from test_batch_fakes import fake_analyze, fake_read, write_fake_scan


@pytest.fixture
def result(tmp_path):
    scan = write_fake_scan(tmp_path / "input" / "scan1", 4.0)
    vol = fake_read(scan)
    vol = vol.with_array(vol.array)  # keep geometry
    return fake_analyze(vol)


def test_writes_every_file_with_geometry(tmp_path, result):
    out = tmp_path / "out"
    written = write_scan_outputs(result, out, render=False, extra={"animal_id": "A1"})
    assert {"metrics_csv", "metrics_json", "lesions_csv", "mask_bone"} <= set(written)
    header, row = (out / "metrics.csv").read_text().splitlines()
    assert header.startswith("animal_id,voxel_mm,") and header.endswith(",blastic_volume_mm3")
    assert row.startswith("A1,0.02,")
    data = json.loads((out / "metrics.json").read_text())
    assert data["metrics"]["bv_tv_pct"] == pytest.approx(14.0)
    assert data["options"] is not None and data["ctbone_version"]
    image = sitk.ReadImage(str(out / "masks" / "bone.nii.gz"))
    assert image.GetSpacing() == pytest.approx((0.02, 0.02, 0.02))
    assert np.array_equal(sitk.GetArrayFromImage(image), result.masks["bone"].array)
    # lesions: 4 % 3 = 1 fake lesion, negative coordinate kept as a number
    lines = (out / "lesions.csv").read_text().splitlines()
    assert len(lines) == 2 and ",-1.5," in lines[1]
    # nothing temporary left behind
    assert not [p for p in out.rglob(".*")]


def test_rerun_gives_byte_identical_csv(tmp_path, result):
    write_scan_outputs(result, tmp_path / "a", render=False)
    write_scan_outputs(result, tmp_path / "b", render=False)
    for name in ("metrics.csv", "lesions.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_output_inside_input_refused(tmp_path, result):
    src = tmp_path / "input" / "scan1"
    with pytest.raises(OutputError, match="inside the input folder"):
        write_scan_outputs(result, src / "out", render=False)
    with pytest.raises(OutputError, match="is an input"):
        write_scan_outputs(result, src, render=False)
    assert not (src / "out").exists() and not (src / "metrics.csv").exists()
    # a sibling folder is fine
    assert check_output_dir(tmp_path / "input" / "scan1_out", [src]) == (tmp_path / "input" / "scan1_out").resolve()


@pytest.mark.parametrize("text, expected", [
    ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"), ("+1+2", "'+1+2"), ("-cmd|x", "'-cmd|x"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("-3.5", "-3.5"), ("+2", "+2"), ("C1", "C1"), ("a=b", "a=b"),
])
def test_formula_injection_neutralised_but_negative_numbers_kept(text, expected):
    assert format_cell(text) == expected


def test_numbers_in_fixed_format():
    assert [format_cell(v) for v in (-2.5, 1 / 3, 1e-12, float("nan"), -0.0, 7, np.float32(0.1), True)] == [
        "-2.5", "0.3333333333", "1e-12", "", "0", "7", "0.1000000015", "true"]
    text = csv_text([{"id": "=1+1", "v": -1.0}], ["id", "v"])
    assert text == "id,v\n'=1+1,-1\n"


def test_html_escapes_hostile_text():
    hostile = "<script>alert(1)</script>"
    assert esc(hostile) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    html = table_html([{"animal_id": hostile, "group": '"><img src=x onerror=alert(1)>'}], ["animal_id", "group"])
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html


def test_prism_file_round_trips_hostile_names(tmp_path):
    import xml.etree.ElementTree as ET

    from ctbone.report.prism import write_pzfx

    tables = {"lytic_volume_mm3": {"ctl <&>": [("A1", 0.5), ("A2", float("nan"))], "trt": [("B1", 2.25)]}}
    root = ET.parse(write_pzfx(tmp_path / "s.pzfx", tables)).getroot()
    assert root.tag == "GraphPadPrismFile"
    table = root.find("Table")
    assert table.get("TableType") == "OneWay" and table.findtext("Title") == "lytic_volume_mm3"
    cols = table.findall("YColumn")
    assert [c.findtext("Title") for c in cols] == ["ctl <&>", "trt"]
    assert [d.text for d in cols[0].findall("Subcolumn/d")] == ["0.5", None]  # NaN -> empty cell
    assert [d.text for d in cols[1].findall("Subcolumn/d")] == ["2.25", None]  # padded to the row count
    assert [d.text for d in table.findall("RowTitlesColumn/Subcolumn/d")] == ["A1 / B1", "A2"]


def test_written_into_renames_a_finished_file_and_leaves_nothing_when_the_writer_fails(tmp_path):
    import stat

    from ctbone.report.safeio import FILE_MODE, written_into

    with written_into(tmp_path / "a.png", suffix=".png") as tmp:
        assert tmp.endswith(".png") and Path(tmp).parent == tmp_path  # beside the target, named for the format
        Path(tmp).write_bytes(b"picture")
    assert (tmp_path / "a.png").read_bytes() == b"picture"
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == FILE_MODE  # shared like any output, not 0600
    with pytest.raises(RuntimeError):
        with written_into(tmp_path / "b.png", suffix=".png") as tmp:
            Path(tmp).write_bytes(b"half")
            raise RuntimeError("the writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no b.png, no temporary file
