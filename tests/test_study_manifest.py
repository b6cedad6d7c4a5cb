"""Manifest validation: every problem reported at once, with line numbers, before any work."""

import pytest

from ctbone.errors import ManifestError
from ctbone.study import read_manifest


def _study(tmp_path, text, scans=("s1", "s2", "s3")):
    for s in scans:
        (tmp_path / s).mkdir()
    path = tmp_path / "manifest.csv"
    path.write_text(text)
    return path


def test_valid_manifest_rows_options_and_extra_columns(tmp_path):
    path = _study(tmp_path, "animal_id,group,scan,limb,timepoint,roi_mm,threshold,mirror_reference,cage\n"
                            "A1,ctl,s1,L,0,0.5:2.5,auto,yes,7\nA1,ctl,s2,L,2,,450,,7\nB1,trt,s3,R,0,,,no,8\n")
    m = read_manifest(path)
    assert [r.line for r in m.rows] == [2, 3, 4]
    assert m.groups == ["ctl", "trt"]
    assert m.rows[0].overrides() == {"roi_mm": (0.5, 2.5), "threshold": "auto", "mirror_reference": True}
    assert m.rows[1].overrides() == {"threshold": 450.0}
    assert m.rows[2].overrides() == {"mirror_reference": False}
    assert m.rows[0].columns["cage"] == "7" and m.rows[0].name == "A1_L_0"
    assert m.rows[0].scan == (tmp_path / "s1").resolve()


def test_all_problems_at_once_with_line_numbers(tmp_path):
    text = ("animal_id,group,scan,roi_mm,threshold\n"
            "A1,ctl,s1,,\n"          # 2 ok
            "A2,,s2,,\n"             # 3 empty group
            "A3,ctl,missing,,\n"     # 4 scan not found
            "A1,ctl,s3,,\n"          # 5 duplicate of line 2
            "A4,ctl,../outside,,\n"  # 6 escapes the study folder
            "A5,trt,s2,3:1,abc\n")   # 7 bad roi and threshold
    with pytest.raises(ManifestError) as info:
        read_manifest(_study(tmp_path, text))
    problems = info.value.problems
    joined = " | ".join(problems)
    for expected in ("line 3: empty group", "line 4: scan 'missing' not found", "line 5: duplicate of line 2",
                     "line 6: scan path '../outside' leaves the study folder", "line 7: roi_mm '3:1'",
                     "line 7: threshold 'abc'"):
        assert expected in joined
    assert len(problems) == 6
    assert str(info.value).count("; line ") == 5 and "\n" not in str(info.value)


def test_a_nul_character_in_a_path_is_a_problem_not_a_crash(tmp_path):
    # found by fuzzing: pathlib raises ValueError on NUL, which escaped read_manifest
    with pytest.raises(ManifestError, match="line 2: scan path .* holds a NUL character"):
        read_manifest(_study(tmp_path, "animal_id,group,scan\nA1,ctl,s\x001\n"))


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_separated_manifests_are_read(tmp_path, delimiter):
    # what a spreadsheet saves as "CSV" where the decimal mark is a comma: cells apart by ';' (quoted when they
    # hold one); these were refused with "missing column(s) animal_id, group, scan"
    text = delimiter.join(["animal_id", "group", "scan", "roi_mm"]) + "\r\n"
    text += delimiter.join(["A1", "ctl", "s1", "0.5:2.5"]) + "\r\n" + delimiter.join(["B1", "trt", '"s2"', ""]) + "\r\n"
    m = read_manifest(_study(tmp_path, "\ufeff" + text))
    assert [r.animal_id for r in m.rows] == ["A1", "B1"] and m.rows[0].overrides() == {"roi_mm": (0.5, 2.5)}
    assert m.rows[1].scan == (tmp_path / "s2").resolve()


def test_a_semicolon_manifest_takes_decimal_commas(tmp_path):
    (tmp_path / "s1").mkdir()
    text = "animal_id;group;scan;roi_mm;threshold;spacing_mm;note\nA1;ctl;s1;0,5:2,5;450,5;0,0195;12,5 g\n"
    m = read_manifest(_study(tmp_path, text, scans=("s2", "s3")))
    row = m.rows[0]
    assert (row.roi_mm, row.threshold, row.spacing_mm) == ((0.5, 2.5), 450.5, (0.0195,) * 3)
    assert row.columns["note"] == "12,5 g" and row.columns["roi_mm"] == "0,5:2,5"  # carried through as written


def test_missing_columns_reported_together(tmp_path):
    with pytest.raises(ManifestError, match="missing column\\(s\\) group, scan"):
        read_manifest(_study(tmp_path, "animal_id,notes\nA1,x\n"))


def test_absolute_paths_need_permission(tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    study = tmp_path / "study"
    study.mkdir()
    (study / "m.csv").write_text(f"animal_id,group,scan\nA1,ctl,{other}\n")
    with pytest.raises(ManifestError, match="absolute path"):
        read_manifest(study / "m.csv")
    assert read_manifest(study / "m.csv", allow_absolute_paths=True).rows[0].scan == other.resolve()


def test_unknown_control_group_and_empty_manifest(tmp_path):
    path = _study(tmp_path, "animal_id,group,scan\nA1,ctl,s1\n")
    with pytest.raises(ManifestError, match="control group 'vehicle' not in the manifest"):
        read_manifest(path, control="vehicle")
    (tmp_path / "empty.csv").write_text("animal_id,group,scan\n")
    with pytest.raises(ManifestError, match="no scan rows"):
        read_manifest(tmp_path / "empty.csv")


def test_output_folders_must_differ_ignoring_case(tmp_path):
    path = _study(tmp_path, "animal_id,group,scan\nA1,ctl,s1\na1,ctl,s2\n")
    with pytest.raises(ManifestError, match="line 3: output folder name 'a1' clashes with line 2"):
        read_manifest(path)


def test_bone_columns_choose_a_bone_of_a_scan_holding_several(tmp_path):
    path = _study(tmp_path, "animal_id,group,limb,scan,bone,reference,reference_bone\n"
                            "A1,ctl,R,s1,1,s1,2\nA1,ctl,L,s1,2,,\nB1,trt,R,s2,,,\n", scans=("s1", "s2"))
    rows = read_manifest(path).rows
    assert rows[0].overrides() == {"bone": 1, "reference_bone": 2}
    assert rows[1].overrides() == {"bone": 2} and rows[2].overrides() == {}
    bad = tmp_path / "bad.csv"
    bad.write_text("animal_id,group,scan,bone,reference_bone\nA1,ctl,s1,0,\nA2,ctl,s2,left,1.5\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(bad)
    joined = " | ".join(info.value.problems)
    assert "line 2: bone '0'" in joined and "line 3: bone 'left'" in joined and "line 3: reference_bone '1.5'" in joined


def test_spacing_column_gives_image_stacks_their_voxel_size(tmp_path):
    path = _study(tmp_path, "animal_id,group,scan,spacing_mm\nA1,ctl,s1,0.0105\nA2,ctl,s2,0.02 0.0105 0.0105\n"
                            "A3,trt,s3,\n")
    rows = read_manifest(path).rows
    assert rows[0].overrides() == {"spacing_mm": (0.0105,) * 3}
    assert rows[1].overrides() == {"spacing_mm": (0.02, 0.0105, 0.0105)} and rows[2].overrides() == {}
    bad = tmp_path / "bad.csv"
    bad.write_text("animal_id,group,scan,spacing_mm\nA1,ctl,s1,0\nA2,ctl,s2,10 um\nA3,ctl,s3,0.01 0.01\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(bad)
    joined = " | ".join(info.value.problems)
    assert all(f"line {n}: spacing_mm" in joined for n in (2, 3, 4))
