"""The batch runner with fast fake read/analyze: fault isolation, resume, determinism, back-ends, outputs."""

import csv
import json
import xml.etree.ElementTree as ET

import pytest

from ctbone.errors import ManifestError, OutputError
from ctbone.options import AnalysisOptions
from ctbone.study import run_batch
from test_batch_fakes import fake_analyze, fake_read, write_fake_scan

HOSTILE = "<script>alert(1)</script>"
VALUES = {"control": [1.0, 2.0, 3.0, 2.5], "treated": [5.0, 6.0, 7.5, 8.0]}
CSVS = ("per_animal.csv", "lesions.csv", "group_summary.csv", "group_stats.csv")


def make_study(root, *, corrupt=("T3",), hostile=True, timepoints=False):
    """A study folder with fake scans; returns the manifest path."""
    lines = ["animal_id,group,limb,scan,threshold,note"]
    for group, values in VALUES.items():
        for i, v in enumerate(values):
            animal = f"{group[0].upper()}{i}"
            for tp in ((0, 2) if timepoints else (None,)):
                name = animal + (f"_w{tp}" for _ in [0]).__next__() if tp is not None else animal
                write_fake_scan(root / "scans" / name, v + (tp or 0), corrupt=animal in corrupt)
                shown = HOSTILE if (hostile and animal == "C1") else animal
                threshold = "450" if animal == "C2" else ""
                lines.append(f"{shown},{group},R,scans/{name},{threshold},=HYPERLINK(\"x\")")
    if timepoints:
        lines[0] = "animal_id,group,limb,scan,threshold,note,timepoint"
        lines = [lines[0]] + [line + f",{2 * (i % 2)}" for i, line in enumerate(lines[1:])]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def batch(manifest, out, **kw):
    kw.setdefault("render", False)
    kw.setdefault("quiet", True)
    return run_batch(manifest, out, options=AnalysisOptions(), analyze_fn=kw.pop("analyze_fn", fake_analyze),
                     read_fn=fake_read, **kw)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    manifest = make_study(root / "study")
    out = root / "out"
    status = batch(manifest, out)
    return manifest, out, status


def _csvs(out):
    return {name: (out / name).read_bytes() for name in CSVS}


def test_corrupt_scan_is_an_error_row_and_others_go_on(reference_run):
    _, out, status = reference_run
    assert status == 1
    lines = (out / "per_animal.csv").read_text().splitlines()
    header, *rows = list(csv.reader(lines))
    assert header[:9] == ["animal_id", "group", "limb", "scan", "threshold", "note", "status", "error", "qc_notes"]
    assert len(lines) == 9  # 8 manifest rows, in manifest order
    assert [r[0] for r in rows] == ["C0", HOSTILE, "C2", "C3", "T0", "T1", "T2", "T3"]
    statuses = [r[6] for r in rows]
    assert statuses == ["ok"] * 7 + ["error"]
    assert "not a scan" in lines[-1] and "T3" in lines[-1]
    # per-row threshold override reached analyze
    assert rows[2][header.index("threshold_hu")] == "450" and rows[0][header.index("threshold_hu")] == "400"
    # the untrusted note column is neutralised
    assert all(r[5].startswith("'=HYPERLINK") for r in rows)


def test_study_tables_and_report(reference_run):
    _, out, _ = reference_run
    stats = (out / "group_stats.csv").read_text().splitlines()
    assert stats[0].startswith("metric,timepoint,comparison,group_a,group_b,n_a,n_b,test,statistic,df,p,p_adj")
    assert any(",treated vs control,treated,control,3,4,welch_t," in s for s in stats)
    summary = (out / "group_summary.csv").read_text().splitlines()
    assert summary[0] == "group,metric,n,mean,sd,sem,median,q1,q3,min,max"
    assert "control,bv_tv_pct,4,12.125," in "\n".join(summary)  # mean of 11, 12, 13, 12.5
    lesions = (out / "lesions.csv").read_text().splitlines()
    assert lesions[0].startswith("animal_id,group,limb,timepoint,id,kind,")
    html = (out / "report.html").read_text()
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html and "data:image/png;base64," in html
    assert "Key metrics" in html and "12.1 ± 0.854 (n=4)" in html  # bv_tv_pct of control: 11, 12, 13, 12.5
    assert "Failed scans" in html and "Methods" in html and "max_defect_diameter_mm" in html
    assert (out / "plots" / "lytic_volume_mm3.png").is_file() and (out / "plots" / "lytic_volume_mm3.svg").is_file()
    tables = ET.parse(out / "study.pzfx").getroot().findall("Table")
    lytic = next(t for t in tables if t.findtext("Title") == "lytic_volume_mm3")
    assert [c.findtext("Title") for c in lytic.findall("YColumn")] == ["control", "treated"]
    assert len(lytic.find("YColumn").findall("Subcolumn/d")) == 4
    assert (out / "batch.log").read_text().count("T3_R") >= 1
    run = json.loads((out / "run.json").read_text())
    assert run["rows"]["T3_R"]["status"] == "error" and run["parameters"]["max_defect_diameter_mm"] == 0.6


def test_rerun_skips_and_is_byte_identical(reference_run, tmp_path):
    manifest, out, _ = reference_run
    before = _csvs(out)
    calls = []

    def counting(volume, **kw):
        calls.append(1)
        return fake_analyze(volume, **kw)

    assert batch(manifest, out, analyze_fn=counting) == 1
    assert len(calls) == 0  # the failed row fails at read time; the ok rows are skipped
    assert _csvs(out) == before
    assert batch(manifest, out, analyze_fn=counting, force=True) == 1
    assert len(calls) == 7 and _csvs(out) == before


def test_rerun_after_the_code_changed_recomputes(reference_run, tmp_path, monkeypatch):
    # results change with the code even where the version does not (a development install): the fingerprint
    # holds a digest of ctbone's sources, recorded in run.json
    import shutil

    from ctbone.study import resume

    manifest, out, _ = reference_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    assert json.loads((copy / "run.json").read_text())["ctbone_code_sha256"] == resume.code_digest()
    calls = []

    def counting(volume, **kw):
        calls.append(1)
        return fake_analyze(volume, **kw)

    monkeypatch.setattr(resume, "code_digest", lambda: "another build")
    assert batch(manifest, copy, analyze_fn=counting) == 1
    assert len(calls) == 7


@pytest.mark.parametrize("damage", [b"", b'{"metrics": {"bv_mm3": 1', b"[1, 2, 3]", bytes(range(256))],
                         ids=["empty", "cut-short", "a-list", "garbled"])
def test_rerun_analyses_again_a_scan_whose_record_is_damaged(reference_run, tmp_path, damage):
    # a metrics.json emptied, cut short, replaced or garbled since the last run (a disk error, a stray edit):
    # the scan is analysed again, not reported as failed (or, for a JSON list, the whole batch crashing)
    import shutil

    manifest, out, _ = reference_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / "scans" / "C2_R" / "metrics.json").write_bytes(damage)
    calls = []

    def counting(volume, **kw):
        calls.append(1)
        return fake_analyze(volume, **kw)

    assert batch(manifest, copy, analyze_fn=counting) == 1  # the corrupt scan of the study still fails, alone
    assert len(calls) == 1
    assert _csvs(copy) == _csvs(out)


def test_resume_after_interrupted_run(reference_run, tmp_path):
    manifest, ref_out, _ = reference_run
    out = tmp_path / "out"
    calls = []

    def dies_on_third(volume, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the run were killed mid-way
        return fake_analyze(volume, **kw)

    with pytest.raises(KeyboardInterrupt):
        batch(manifest, out, analyze_fn=dies_on_third)
    assert not (out / "per_animal.csv").exists()
    # leave what a kill during writing leaves: a temporary file and a half-written scan folder
    partial = out / "scans" / "C2_R"
    (partial / "masks").mkdir(parents=True, exist_ok=True)
    (partial / "metrics.csv").write_text("half")
    (partial / ".metrics.json.abc.tmp").write_text("{")
    assert batch(manifest, out) == 1
    assert _csvs(out) == _csvs(ref_out)
    assert not list(partial.glob(".*"))
    run = json.loads((out / "run.json").read_text())
    assert sum(bool(r.get("skipped")) for r in run["rows"].values()) == 2  # the two scans finished before the kill


def test_changed_input_or_parameter_recomputes(reference_run, tmp_path):
    manifest, _, _ = reference_run
    out = tmp_path / "out"
    batch(manifest, out)
    write_fake_scan(manifest.parent / "scans" / "T0", 5.5)  # new contents of one input (size and mtime change)
    calls = []

    def counting(volume, **kw):
        calls.append(1)
        return fake_analyze(volume, **kw)

    batch(manifest, out, analyze_fn=counting)
    assert len(calls) == 1
    # an input that became unreadable: the row turns to error and its old outputs are gone
    write_fake_scan(manifest.parent / "scans" / "T0", 5.0, corrupt=True)
    batch(manifest, out, analyze_fn=counting)
    assert not (out / "scans" / "T0_R" / "metrics.csv").exists()
    assert not list((out / "scans" / "T0_R" / "masks").glob("*"))
    write_fake_scan(manifest.parent / "scans" / "T0", 5.0)
    run_batch(manifest, out, options=AnalysisOptions(min_lesion_mm3=0.002), analyze_fn=counting, read_fn=fake_read,
              render=False, quiet=True)
    assert len(calls) == 1 + 7  # every readable row again, for the new parameter


def test_workers_give_same_results(reference_run, tmp_path):
    manifest, ref_out, _ = reference_run
    out = tmp_path / "out"
    assert batch(manifest, out, workers=2) == 1
    assert _csvs(out) == _csvs(ref_out)
    # what the worker processes warned reaches batch.log (once per scan, named) and each scan's metrics.json,
    # as in a serial run (a fresh one: other tests add to the reference run's log)
    serial = tmp_path / "serial"
    assert batch(manifest, serial) == 1
    for run_out in (out, serial):
        log_text = (run_out / "batch.log").read_text()
        assert log_text.count("fake check on a scan") == 7, run_out  # the 7 readable scans
        info = json.loads((run_out / "scans" / "C0_R" / "metrics.json").read_text())["info"]
        assert len(info["warnings"]) == 1 and "fake check" in info["warnings"][0]
    assert "C0_R: " in (out / "batch.log").read_text()


def test_dask_local_cluster_gives_same_results(reference_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    manifest, ref_out, _ = reference_run
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        assert batch(manifest, out, scheduler=cl.scheduler_address) == 1
    assert (out / "per_animal.csv").read_bytes() == (ref_out / "per_animal.csv").read_bytes()
    assert _csvs(out) == _csvs(ref_out)
    # the cluster's threads run in this process: their warnings reach batch.log once, not forwarded twice
    assert (out / "batch.log").read_text().count("fake check on a scan") == 7


def test_validate_only_and_bad_manifest_do_no_work(reference_run, tmp_path, capsys):
    manifest, _, _ = reference_run
    out = tmp_path / "out"
    assert batch(manifest, out, validate_only=True) == 0
    assert "OK, 8 scans, 2 groups" in capsys.readouterr().out
    assert not out.exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "m.csv").write_text("animal_id,group,scan\nA,,nowhere\n")
    with pytest.raises(ManifestError, match="line 2: empty group; line 2: scan 'nowhere' not found"):
        batch(bad / "m.csv", out)
    assert not out.exists()


def test_output_inside_an_input_folder_refused(reference_run):
    manifest, _, _ = reference_run
    with pytest.raises(OutputError, match="inside the input folder"):
        batch(manifest, manifest.parent / "scans" / "C0" / "out")
    with pytest.raises(OutputError, match="study folder"):
        batch(manifest, manifest.parent)


def test_timepoints_give_change_from_baseline(tmp_path):
    manifest = make_study(tmp_path / "study", corrupt=(), hostile=False, timepoints=True)
    out = tmp_path / "out"
    assert batch(manifest, out) == 0
    change = (out / "change_from_baseline.csv").read_text().splitlines()
    header = change[0].split(",")
    c0_w2 = next(line.split(",") for line in change if line.startswith("C0,") and ",2," in line)
    # fake bv_tv_pct = 10 + value; value 1 at week 0 and 3 at week 2: (13 - 11) / 11
    assert float(c0_w2[header.index("bv_tv_pct_change_pct")]) == pytest.approx(200 / 11, rel=1e-9)
    assert "timepoint" in (out / "group_summary.csv").read_text().splitlines()[0]
    assert (out / "plots" / "bv_tv_pct_over_time.png").is_file()


def _fake_render(result, path, **kw):
    import numpy as np
    from matplotlib.image import imsave

    imsave(path, np.full((8, 10, 3), result.metrics["bv_tv_pct"] / 30.0))


def test_snapshots_copied_and_montages_embedded(tmp_path, monkeypatch):
    import ctbone.render

    monkeypatch.setattr(ctbone.render, "render_snapshot", _fake_render, raising=False)
    monkeypatch.delattr(ctbone.render, "montage_from_masks", raising=False)  # exercise the matplotlib grid
    manifest = make_study(tmp_path / "study", corrupt=("T3",), hostile=True)
    out = tmp_path / "out"
    assert batch(manifest, out, render=True) == 1
    names = sorted(p.name for p in (out / "snapshots").iterdir())
    assert names == ["C0_R.png", "C2_R.png", "C3_R.png", "T0_R.png", "T1_R.png", "T2_R.png",
                     "script-alert-1-script_R.png"]
    assert (out / "plots" / "montage_control.png").is_file() and (out / "plots" / "montage_treated.png").is_file()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 + 4  # 2 montages + the group plots
    # each analysed scan's QC slices (the failed one has none), all on one page, group by group
    assert (out / "scans" / "C0_R" / "qc_slices.png").is_file() and not (out / "scans" / "T3_R" / "qc_slices.png").exists()
    qc = (out / "qc.html").read_text()
    assert qc.count("data:image/png;base64,") == 7 and "T3_R" not in qc
    assert qc.index("Group control") < qc.index("of C0_R") < qc.index("Group treated") < qc.index("of T0_R")
    assert "qc.html" in html


def test_log_file_does_not_make_the_console_chatty(reference_run, tmp_path):
    import io
    import logging

    manifest, _, _ = reference_run
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    pkg = logging.getLogger("ctbone")
    old = pkg.level
    pkg.addHandler(handler)
    pkg.setLevel(logging.ERROR)  # as `ctbone batch --quiet` configures it
    try:
        batch(manifest, tmp_path / "out")
    finally:
        pkg.removeHandler(handler)
        pkg.setLevel(old)
    assert "ok (" not in stream.getvalue() and "T3_R" in stream.getvalue()  # errors only on the console
    assert "C0_R: ok" in (tmp_path / "out" / "batch.log").read_text()  # everything in the file
    assert pkg.level == old and handler.level == logging.NOTSET


def test_memory_gate_runs_one_at_a_time_when_ram_is_short(monkeypatch):
    from ctbone.study.backends import _iter_gated

    class Job:
        def __init__(self, name):
            self.name, self.scan, self.reference = name, None, None

    running, peak = set(), [0]

    def submit(job):
        running.add(job.name)
        peak[0] = max(peak[0], len(running))
        return job.name

    def wait(futures):
        done = {sorted(futures)[0]}
        running.difference_update(done)
        return done, set(futures) - done

    monkeypatch.setattr("ctbone.study.backends.estimate_job_bytes", lambda job: 600)
    done = list(_iter_gated([Job(n) for n in "abcd"], submit, wait, max_running=3, budget_bytes=1000))
    assert sorted(done) == list("abcd") and peak[0] == 1  # 2 x 600 > 1000: never two at once
    peak[0] = 0
    done = list(_iter_gated([Job(n) for n in "abcd"], submit, wait, max_running=3, budget_bytes=10_000))
    assert sorted(done) == list("abcd") and peak[0] == 3  # enough RAM: limited by the worker count


def slow_analyze(volume, **kw):
    import time

    time.sleep(0.4)
    return fake_analyze(volume, **kw)


def test_batch_killed_with_sigkill_then_rerun(reference_run, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    manifest, ref_out, _ = reference_run
    out = tmp_path / "out"
    tests_dir = Path(__file__).resolve().parent
    script = (f"import sys; sys.path.insert(0, {str(tests_dir)!r})\n"
              "from test_batch import batch, slow_analyze\n"
              f"batch({str(manifest)!r}, {str(out)!r}, analyze_fn=slow_analyze)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill once two scans are recorded as done
            run = out / "run.json"
            if run.is_file() and run.read_text().count('"status": "ok"') >= 2:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "per_animal.csv").exists()
    assert batch(manifest, out) == 1
    assert _csvs(out) == _csvs(ref_out)  # every row once, same numbers as the uninterrupted run


def test_run_demo_writes_the_study_once_then_runs_the_batch(tmp_path, monkeypatch):
    import ctbone.phantoms
    from ctbone.study import demo

    written, calls = [], []

    def fake_write_study(folder, *, seed=0, **kw):
        written.append(folder)
        return make_study(folder, corrupt=(), hostile=False)

    def spy(manifest, outdir, **kw):
        calls.append((manifest, outdir, kw))
        return run_batch(manifest, outdir, analyze_fn=fake_analyze, read_fn=fake_read, **{**kw, "quiet": True})

    monkeypatch.setattr(ctbone.phantoms, "write_study", fake_write_study, raising=False)
    monkeypatch.setattr(demo, "run_batch", spy)
    assert demo.run_demo(tmp_path / "demo", quiet=True) == 0
    assert demo.run_demo(tmp_path / "demo", quiet=True) == 0
    assert written == [tmp_path / "demo" / "study"]  # the second run reuses the scans (and skips the analysis)
    assert calls[0][2]["control"] == "control" and (tmp_path / "demo" / "report.html").is_file()


def test_run_demo_shows_the_phantoms_being_written(tmp_path, monkeypatch, capsys):
    import ctbone.phantoms
    from ctbone.study import demo

    def fake_write_study(folder, *, seed=0, progress=None, **kw):
        for scan in ctbone.phantoms.study_scans():
            progress(scan["name"])
        return make_study(folder, corrupt=(), hostile=False)

    monkeypatch.setattr(ctbone.phantoms, "write_study", fake_write_study, raising=False)
    monkeypatch.setattr(demo, "run_batch", lambda *a, **kw: 0)
    assert demo.run_demo(tmp_path / "demo", quiet=False) == 0
    err = capsys.readouterr().err
    assert "demo phantoms" in err and "12/12" in err and "T3_L" in err  # every scan counted, the last one named


def test_unreachable_scheduler_is_a_clear_error(reference_run, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("ctbone.study.backends.CONNECT_TIMEOUT_S", 1)
    from ctbone.errors import CtboneError

    manifest, _, _ = reference_run
    with pytest.raises(CtboneError, match="cannot connect to the dask scheduler"):
        run_batch(manifest, tmp_path / "out", options=AnalysisOptions(), scheduler="tcp://127.0.0.1:9", quiet=True,
                  render=False, analyze_fn=fake_analyze, read_fn=fake_read)


def test_memory_estimate_reads_the_image_header(tmp_path):
    import numpy as np
    import SimpleITK as sitk

    from ctbone.study.backends import MEMORY_FACTOR, estimate_job_bytes
    from ctbone.study.job import Job

    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 30, 40), np.int16)), str(path))  # compresses to ~nothing
    job = Job(name="a", scan=path, reference=None, options=None, outdir=tmp_path / "out", render=False)
    # 24 000 voxels as float32, times the peak factor; the compressed file size would underestimate it
    assert estimate_job_bytes(job) == int(MEMORY_FACTOR * 20 * 30 * 40 * 4)


def test_both_limbs_of_an_animal_as_rows_get_statistics_per_limb(tmp_path):
    # rows are animals in the statistics: an animal's two limbs as rows would count twice, and an injected limb
    # would be pooled with its contralateral. When an animal has several limbs as rows, everything is per limb
    for name, value in (("A1_L", 1.0), ("A1_R", 2.0), ("A2_R", 3.0), ("B1_R", 4.0), ("B2_R", 5.0)):
        write_fake_scan(tmp_path / name, value)
    (tmp_path / "m.csv").write_text("animal_id,group,limb,scan\nA1,ctl,L,A1_L\nA1,ctl,R,A1_R\nA2,ctl,R,A2_R\n"
                                    "B1,trt,R,B1_R\nB2,trt,R,B2_R\n")
    out = tmp_path / "out"
    assert batch(tmp_path / "m.csv", out, quiet=True) == 0
    with open(out / "group_stats.csv", newline="") as f:
        stats = list(csv.DictReader(f))
    welch = {r["limb"]: r for r in stats if r["metric"] == "bv_mm3" and r["test"] == "welch_t"}
    assert set(welch) == {"L", "R"}
    assert (welch["R"]["n_a"], welch["R"]["n_b"]) == ("2", "2")  # trt vs ctl on the right limbs: each animal once
    assert (welch["L"]["n_a"], welch["L"]["n_b"]) == ("0", "1")
    with open(out / "group_summary.csv", newline="") as f:
        summary = [r for r in csv.DictReader(f) if r["metric"] == "bv_mm3"]
    assert {(r["group"], r["limb"], r["n"]) for r in summary} == {("ctl", "L", "1"), ("ctl", "R", "2"),
                                                                    ("trt", "L", "0"), ("trt", "R", "2")}
    assert (out / "plots" / "bv_tv_pct_limb_R.png").is_file() and (out / "plots" / "bv_tv_pct_limb_L.png").is_file()
    assert "per limb (L, R)" in (out / "report.html").read_text()
    # each animal's limbs, normalised: (first limb of the manifest - other) / other x 100 per animal
    with open(out / "per_animal.csv", newline="") as f:
        bv = {(r["animal_id"], r["limb"]): float(r["bv_mm3"]) for r in csv.DictReader(f)}
    with open(out / "limb_difference.csv", newline="") as f:
        diff = {r["animal_id"]: r for r in csv.DictReader(f)}
    assert set(diff) == {"A1", "A2", "B1", "B2"} and diff["A1"]["limb"] == "L vs R"
    assert float(diff["A1"]["bv_mm3_limb_diff_pct"]) == pytest.approx(
        (bv[("A1", "L")] - bv[("A1", "R")]) / bv[("A1", "R")] * 100)
    assert diff["A2"]["bv_mm3_limb_diff_pct"] in ("", "nan", "NaN")  # one limb only
    with open(out / "group_summary.csv", newline="") as f:
        diff_summary = [r for r in csv.DictReader(f) if r["metric"] == "bv_mm3_limb_diff_pct"]
    assert {(r["group"], r["limb"], r["n"]) for r in diff_summary} == {("ctl", "L vs R", "1"), ("trt", "L vs R", "0")}
    assert "limb_difference.csv" in (out / "report.html").read_text()
    tables = ET.parse(out / "study.pzfx").getroot()
    assert any("(limb R)" in (t.findtext("Title") or "") for t in tables.iter("Table"))
    # one row per animal, whichever its limb: nothing split (and no limb column)
    from ctbone.report.tables import limb_strata, stats_columns

    rows = [{"status": "ok", "group": "ctl", "animal_id": a, "limb": limb, "timepoint": ""}
            for a, limb in (("A1", "R"), ("A2", "L"))]
    assert limb_strata(rows) == [None] and "limb" not in stats_columns(rows)
    rows.append({"status": "ok", "group": "ctl", "animal_id": "A1", "limb": "R", "timepoint": "2"})  # longitudinal
    assert limb_strata(rows) == [None]
