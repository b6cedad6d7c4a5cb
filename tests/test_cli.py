"""The command line as a user meets it: help, exit codes, one-line errors, no tracebacks."""

import subprocess
import sys

import pytest

from ctbone.cli import EXIT_FAILED, EXIT_USAGE, main


def test_help_lists_every_spec_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("info", "analyze", "batch", "render", "phantom", "demo"):
        assert f"  {command}" in out


def test_version_is_the_package_version(capsys):
    import ctbone

    assert main(["--version"]) == 0
    assert ctbone.__version__ in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["analyze"],                                   # missing PATH
    ["analyze", ".", "-o", "x", "--roi-mm", "a:b"],  # unparsable ROI
    ["analyze", ".", "-o", "x", "--threshold", "bone"],
    ["frobnicate"],
])
def test_unusable_arguments_exit_2(args, capsys):
    assert main(args) == EXIT_USAGE


def test_empty_folder_is_a_one_line_error_naming_it(tmp_path, capsys):
    empty = tmp_path / "empty_scan"
    empty.mkdir()
    status = main(["info", str(empty)])
    err = capsys.readouterr().err
    assert status == EXIT_FAILED
    assert "empty_scan" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_output_inside_input_folder_is_refused(tmp_path, capsys):
    scan = tmp_path / "scan"
    scan.mkdir()
    (scan / "junk.txt").write_text("not a scan")
    status = main(["analyze", str(scan), "-o", str(scan / "out")])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE
    assert "inside the input folder" in err
    assert not (scan / "out").exists()


def test_console_script_runs_as_a_process():
    proc = subprocess.run([sys.executable, "-m", "ctbone.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "Usage: ctbone" in proc.stdout


# --- helpers -----------------------------------------------------------------------------------------

class Stop(Exception):
    """Raised by fakes once they have recorded their arguments."""


def _record(monkeypatch, module, name, calls):
    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        raise Stop

    monkeypatch.setattr(module, name, fake)


def _nonuniform_dicom(folder, shape=(6, 16, 16)):
    """A DICOM series whose gap after the third slice is 0.07 mm instead of 0.05 mm."""
    import numpy as np
    import pydicom

    from ctbone.io import write_dicom_series
    from ctbone.volume import Volume

    array = np.random.default_rng(0).integers(-1000, 2000, size=shape).astype(np.float32)
    paths = write_dicom_series(Volume(array, spacing=(0.05, 0.02, 0.02), origin=(0.0, 0.0, 10.0)), folder)
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.ImagePositionPatient = [0.0, 0.0, 10.0 + 0.05 * i + (0.02 if i >= 3 else 0.0)]
        ds.save_as(p)
    return folder


# --- --allow-nonuniform ------------------------------------------------------------------------------

def test_info_allow_nonuniform_describes_the_resampled_geometry(tmp_path, capsys):
    import json

    scan = _nonuniform_dicom(tmp_path / "scan")
    assert main(["info", str(scan), "--json"]) == 0
    refused = json.loads(capsys.readouterr().out)
    assert "non-uniform slice spacing" in refused["problem"] and "--allow-nonuniform" in refused["problem"]
    assert main(["info", str(scan), "--json", "--allow-nonuniform"]) == 0
    allowed = json.loads(capsys.readouterr().out)
    assert allowed["problem"] is None
    # 0.27 mm of extent on the median 0.05 mm grid: 6 slices (5.4 -> floor 5, + 1)
    assert allowed["geometry"]["shape_zyx"] == [6, 16, 16]
    assert allowed["geometry"]["spacing_zyx_mm"][0] == pytest.approx(0.05)
    assert allowed["nonuniform"]["gaps_mm"] == [0.05, 0.07]


def test_analyze_without_allow_nonuniform_names_the_positions_and_the_option(tmp_path, capsys):
    scan = _nonuniform_dicom(tmp_path / "scan")
    status = main(["analyze", str(scan), "-o", str(tmp_path / "out"), "--no-render"])
    err = capsys.readouterr().err
    assert status == EXIT_FAILED
    assert "0.07 mm after 10.1000" in err and "--allow-nonuniform" in err
    assert len(err.strip().splitlines()) == 1


def test_analyze_allow_nonuniform_reaches_the_reader(tmp_path, monkeypatch, capsys):
    import ctbone

    scan = _nonuniform_dicom(tmp_path / "scan")
    calls = []
    _record(monkeypatch, ctbone, "analyze", calls)
    status = main(["analyze", str(scan), "-o", str(tmp_path / "out"), "--allow-nonuniform"])
    assert status == EXIT_FAILED  # the fake analysis stops after recording
    (handed,), kwargs = calls[0]
    volume = handed.peek()  # the command hands the scan over to the analysis
    assert volume.spacing[0] == pytest.approx(0.05) and volume.shape == (6, 16, 16)
    assert kwargs["allow_nonuniform"] is True  # recorded in the options (run.json, metrics.json)


def test_batch_allow_nonuniform_goes_into_the_options(tmp_path, monkeypatch):
    import ctbone.study

    manifest = tmp_path / "m.csv"
    manifest.write_text("animal_id,group,scan\nA1,ctl,s\n")
    calls = []
    _record(monkeypatch, ctbone.study, "run_batch", calls)
    main(["batch", str(manifest), "-o", str(tmp_path / "out"), "--allow-nonuniform", "--roi-mm", "metaphyseal",
          "--mode", "trabecular-cube"])
    options = calls[0][1]["options"]
    assert options.allow_nonuniform is True and options.roi_mm == "metaphyseal" and options.mode == "trabecular-cube"


def test_batch_job_reads_with_allow_nonuniform_only_when_asked(tmp_path):
    from ctbone.options import AnalysisOptions
    from ctbone.study.job import Job, run_job

    reads = []

    def read(path, **kwargs):
        reads.append(kwargs)
        raise Stop

    for allow, expected in ((True, {"allow_nonuniform": True}), (False, {})):
        job = Job(name="a", scan=tmp_path / "s", reference=None, options=AnalysisOptions(allow_nonuniform=allow),
                  outdir=tmp_path / "o", render=False, read_fn=read, analyze_fn=lambda *a, **k: None)
        assert run_job(job)["status"] == "error"
        assert reads[-1] == expected


def test_render_allow_nonuniform_is_passed_on(tmp_path, monkeypatch):
    import ctbone.io

    scan = _nonuniform_dicom(tmp_path / "scan")
    calls = []
    _record(monkeypatch, ctbone.io, "open_scan", calls)
    main(["render", str(scan), "-o", str(tmp_path / "s.png"), "--allow-nonuniform", "--size", "200x100"])
    args, kwargs = calls[0]
    assert kwargs["allow_nonuniform"] is True


def test_render_writes_snapshot_turntable_and_meshes(tmp_path, capsys):
    import imageio.v3 as iio
    import SimpleITK as sitk

    from ctbone.phantoms import PhantomSpec, make_phantom

    spec = PhantomSpec(voxel_mm=0.04, length_mm=1.6, metaphysis_length_mm=0,
                       lesions=({"kind": "perforation", "z_mm": 0.8, "radius_mm": 0.15},))
    vol, _ = make_phantom(spec, seed=0)
    (tmp_path / "in").mkdir()
    sitk.WriteImage(vol.to_sitk(), str(tmp_path / "in" / "tibia.nii.gz"))
    out = tmp_path / "out"
    code = main(["render", str(tmp_path / "in" / "tibia.nii.gz"), "-o", str(out / "s.png"), "--size", "320x240",
                 "--turntable", str(out / "turn.gif"), "--meshes", str(out / "meshes")])
    assert code == 0
    assert iio.imread(out / "s.png").shape[:2] == (240, 320)
    assert iio.imread(out / "turn.gif", index=None).shape[0] > 1  # several frames
    assert (out / "meshes" / "bone.stl").stat().st_size > 10_000 and (out / "meshes" / "lytic.stl").is_file()
    assert "mesh(es)" in capsys.readouterr().out
    assert main(["render", str(tmp_path / "in" / "tibia.nii.gz"), "-o", str(out / "s.png"),
                 "--turntable", str(out / "turn.avi")]) == EXIT_USAGE


# --- --roi-mm and --mode -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [("0.5:2.5", (0.5, 2.5)), ("metaphyseal", "metaphyseal"),
                                           ("Metaphyseal", "metaphyseal")])
def test_roi_mm_range_or_metaphyseal(tmp_path, monkeypatch, text, expected):
    import ctbone

    scan = _nonuniform_dicom(tmp_path / "scan")
    calls = []
    _record(monkeypatch, ctbone, "analyze", calls)
    main(["analyze", str(scan), "-o", str(tmp_path / "out"), "--allow-nonuniform", "--roi-mm", text])
    assert calls[0][1]["roi_mm"] == expected


@pytest.mark.parametrize("text", ["2:1", "-1:2", "1:1", "nan:2", "1:2:3", "epiphyseal"])
def test_bad_roi_mm_is_unusable(tmp_path, text, capsys):
    assert main(["analyze", str(tmp_path), "-o", str(tmp_path.parent / "o"), "--roi-mm", text]) == EXIT_USAGE
    assert "metaphyseal" in capsys.readouterr().err


def test_manifest_roi_mm_accepts_metaphyseal(tmp_path):
    from ctbone.study.manifest import read_manifest

    (tmp_path / "s").mkdir()
    (tmp_path / "m.csv").write_text("animal_id,group,scan,roi_mm\nA1,ctl,s,metaphyseal\nA2,ctl,s,1:2\n")
    rows = read_manifest(tmp_path / "m.csv").rows
    assert [r.overrides()["roi_mm"] for r in rows] == ["metaphyseal", (1.0, 2.0)]


def test_mode_reaches_the_analysis(tmp_path, monkeypatch):
    import ctbone

    scan = _nonuniform_dicom(tmp_path / "scan")
    calls = []
    _record(monkeypatch, ctbone, "analyze", calls)
    main(["analyze", str(scan), "-o", str(tmp_path / "out"), "--allow-nonuniform", "--mode", "trabecular-cube"])
    assert calls[0][1]["mode"] == "trabecular-cube"
    assert main(["analyze", str(scan), "-o", str(tmp_path / "out"), "--mode", "cube"]) == EXIT_USAGE


def test_a_result_segmented_in_another_mode_is_refused():
    from types import SimpleNamespace

    from ctbone.errors import CtboneError
    from ctbone.options import AnalysisOptions
    from ctbone.study.job import check_mode_applied

    cube = AnalysisOptions(mode="trabecular-cube")
    with pytest.raises(CtboneError, match="not the requested 'trabecular-cube'"):
        check_mode_applied(SimpleNamespace(info={}), cube)
    check_mode_applied(SimpleNamespace(info={"mode": "trabecular-cube"}), cube)
    check_mode_applied(SimpleNamespace(info={}), AnalysisOptions())


# --- calibration arguments ---------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--calibration", "0,5"],                       # slope must be positive
    ["--calibration", "1,nan"],
    ["--calibration", "1,2,3"],
    ["--rod-densities", "250,750"],                 # densities without a phantom scan
    ["--calibration", "1.2,-100", "--rod-densities", "250,750"],
    ["--calibration", "PHANTOM"],                   # a phantom scan without its densities
    ["--calibration", "PHANTOM", "--rod-densities", "250,x"],
    ["--threshold", "nan"],
    ["--workers", "0"],
    ["--max-defect-diameter-mm", "-1"],
])
def test_unusable_analysis_arguments_exit_2(tmp_path, args, capsys):
    phantom_scan = tmp_path / "phantom_scan"
    phantom_scan.mkdir()
    args = [str(phantom_scan) if a == "PHANTOM" else a for a in args]
    scan = tmp_path / "scan"
    scan.mkdir()
    assert main(["analyze", str(scan), "-o", str(tmp_path / "out"), *args]) == EXIT_USAGE
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_calibration_slope_intercept_reaches_the_analysis(tmp_path, monkeypatch):
    import ctbone

    scan = _nonuniform_dicom(tmp_path / "scan")
    calls = []
    _record(monkeypatch, ctbone, "analyze", calls)
    main(["analyze", str(scan), "-o", str(tmp_path / "out"), "--allow-nonuniform", "--calibration", "0.5,100",
          "--threshold", "600"])
    assert calls[0][1]["calibration"] == (0.5, 100.0) and calls[0][1]["threshold"] == 600.0


@pytest.mark.parametrize("flag", [["--mirror-reference"], ["--reference-bone", "2"]])
def test_reference_options_without_a_reference_are_unusable(tmp_path, flag, capsys):
    scan = tmp_path / "scan"
    scan.mkdir()
    assert main(["analyze", str(scan), "-o", str(tmp_path / "out"), *flag]) == EXIT_USAGE
    assert "--reference PATH" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_batch_refuses_a_global_reference(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("animal_id,group,scan\nA1,ctl,s\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out"), "--reference", str(manifest)]) == EXIT_USAGE


# --- phantom --spec ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,problem", [
    ('{"voxel_mm": 0.05, ', "not valid JSON"),
    ('{"voxel_mm": 0.05, "bone_colour": "white"}', "unknown field(s) bone_colour"),
    ('{"voxel_mm": -0.05}', "voxel_mm must be > 0"),
    ('{"shape": 3}', "wrong type"),
    ('{"lesions": [{"kind": "fracture", "z_mm": 1}]}', "unknown kind 'fracture'"),
    ('{"shape": [20, 5, 5]}', "too small for a bone"),   # found only while drawing the phantom
    ('[1, 2]', "must be an object"),
    ('{"supersample": 100}', "supersample must be an integer from 1 to 8"),  # took 10 GB and more before
    ('{"length_mm": 1e6}', "more than a phantom built in memory may hold"),
])
def test_bad_phantom_spec_is_one_line_exit_2_nothing_written(tmp_path, capsys, text, problem):
    spec = tmp_path / "my_spec.json"
    spec.write_text(text)
    out = tmp_path / "out"
    status = main(["phantom", str(out), "--spec", str(spec)])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE
    assert "my_spec.json" in err and problem in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_phantom_spec_file_is_used(tmp_path, capsys):
    import json

    spec = tmp_path / "small.json"
    spec.write_text(json.dumps({"voxel_mm": 0.05, "length_mm": 0.5, "metaphysis_length_mm": 0.0, "supersample": 1}))
    assert main(["phantom", str(tmp_path / "out"), "--spec", str(spec)]) == 0
    truth = json.loads((tmp_path / "out" / "truth.json").read_text())
    assert json.dumps(truth).count("0.05") >= 1
    import ctbone

    assert ctbone.read_scan(tmp_path / "out" / "dicom").spacing == pytest.approx((0.05, 0.05, 0.05))



def test_phantom_study_shows_each_scan_written_and_the_manifest(tmp_path, capsys, monkeypatch):
    import ctbone.phantoms

    names = [scan["name"] for scan in ctbone.phantoms.study_scans()]

    def fake_write_study(folder, *, seed=0, progress=None, **kw):  # the real one takes ~25 s
        for name in names:
            progress(name)
        return folder / "manifest.csv"

    monkeypatch.setattr(ctbone.phantoms, "write_study", fake_write_study)
    assert main(["phantom", str(tmp_path / "study"), "--study"]) == 0
    captured = capsys.readouterr()
    assert f"{len(names)}/{len(names)}" in captured.err and names[-1] in captured.err
    assert str(tmp_path / "study" / "manifest.csv") in captured.out


def test_render_size_beyond_the_renderer_is_a_usage_error_before_any_work(tmp_path, capsys):
    scan = tmp_path / "scan"
    scan.mkdir()  # an empty folder: the size is refused before the scan is even looked at
    assert main(["render", str(scan), "-o", str(tmp_path / "s.png"), "--size", "17000x4000"]) == EXIT_USAGE
    assert "16 to 16384 pixels a side" in capsys.readouterr().err


def test_an_output_path_that_is_a_file_is_refused_before_the_scan_is_read(tmp_path, capsys):
    scan = tmp_path / "scan"
    scan.mkdir()  # empty: reading it would fail, but the unusable -o is said first, before any work
    (tmp_path / "results").write_text("an older file")
    assert main(["analyze", str(scan), "-o", str(tmp_path / "results")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "cannot create the output folder (a file of that name is in the way)" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["phantom", "{out}"], ["phantom", "{out}", "--study"], ["demo", "-o", "{out}"],
                                     ["render", "{scan}", "-o", "{out}/s.png"], ["batch", "{manifest}", "-o", "{out}"]])
def test_every_command_says_in_one_line_when_its_output_sits_under_a_file(tmp_path, capsys, command):
    # found by trying: phantom, demo and render ended in "internal error: NotADirectoryError / FileExistsError"
    (tmp_path / "afile").write_text("in the way")
    scan = tmp_path / "scan"
    scan.mkdir()
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("animal_id,group,scan\nA1,ctl,scan\n")
    args = [a.format(out=tmp_path / "afile" / "sub", scan=scan, manifest=manifest) for a in command]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "cannot create the output folder" in err and "is a file, not a folder" in err
    assert "internal error" not in err and len(err.strip().splitlines()) == 1


def test_render_says_before_any_work_what_it_cannot_write(tmp_path, capsys, monkeypatch):
    # a .jpg name got PNG bytes; an .mp4 without imageio's ffmpeg plugin ended, after the rendering, in
    # "internal error: KeyError: None" (imageio fell back to Pillow)
    import builtins

    scan = tmp_path / "scan"
    scan.mkdir()  # empty: each refusal must come before the scan is read
    assert main(["render", str(scan), "-o", str(tmp_path / "s.jpg")]) == EXIT_USAGE
    assert "expected a .png file name" in capsys.readouterr().err
    real_import = builtins.__import__

    def no_ffmpeg(name, *args, **kwargs):
        if name == "imageio_ffmpeg":
            raise ImportError("no imageio_ffmpeg")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ffmpeg)
    assert main(["render", str(scan), "-o", str(tmp_path / "s.png"), "--turntable", str(tmp_path / "t.mp4")]) != 0
    err = capsys.readouterr().err
    assert "needs imageio's ffmpeg plugin" in err and "internal error" not in err

# --- help texts --------------------------------------------------------------------------------------

def test_analyze_help_explains_calibration_and_roi(capsys):
    assert main(["analyze", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Scanco" in out and "applied automatically" in out
    assert "a fixed --threshold is read in mg HA/cm3" in out
    assert "value * SLOPE + INTERCEPT" in out
    assert "metaphyseal" in out and "START:END" in out and "growth plate" in out
    for option in ("--workers", "--scheduler", "--quiet", "--verbose", "--no-render", "--reference",
                   "--mirror-reference", "--allow-nonuniform", "--mode"):  # SPEC: shared by analyze and batch
        assert option in out


def _options_of(command):
    from ctbone.cli import cli

    return [p for p in cli.commands[command].params if p.param_type_name == "option" and not p.is_flag]


UNIT_WORDS = {"--max-defect-diameter-mm": "in mm", "--min-defect-area-mm2": "in mm2", "--min-lesion-mm3": "in mm3",
              "--sigma-vox": "in voxels", "--spacing": "in mm", "--size": "in pixels", "--roi-mm": "in mm",
              "--threshold": "HU", "--calibration": "mg HA/cm3", "--rod-densities": "mg HA/cm3"}


@pytest.mark.parametrize("command", ["info", "analyze", "batch", "render", "phantom", "demo"])
def test_every_option_with_a_unit_names_it_in_its_help(command):
    for option in _options_of(command):
        name = max(option.opts, key=len)
        if name in UNIT_WORDS:
            assert UNIT_WORDS[name] in option.help, (command, name, option.help)
        if name in ("--threshold",):
            assert "mg HA/cm3" in option.help and "raw" in option.help


# --- analyze --workers / --scheduler (SPEC: shared by analyze and batch) --------------------------------

def test_analyze_on_a_cluster_ships_one_job_with_the_options(tmp_path, monkeypatch, capsys):
    import ctbone.study.backends

    scan = _nonuniform_dicom(tmp_path / "scan")
    jobs = []

    def fake_run_dask(job_list, *, scheduler):
        jobs.extend(job_list)
        yield {"name": job_list[0].name, "status": "error", "error": "worker says no", "seconds": 0.0}

    monkeypatch.setattr(ctbone.study.backends, "run_dask", fake_run_dask)
    status = main(["analyze", str(scan), "-o", str(tmp_path / "out"), "--scheduler", "tcp://h:8786",
                   "--allow-nonuniform", "--roi-mm", "1:2"])
    assert status == EXIT_FAILED
    assert capsys.readouterr().err.strip() == "ctbone: error: worker says no"
    (job,) = jobs
    assert job.scan == scan.resolve() and job.outdir == (tmp_path / "out").resolve()
    assert job.options.allow_nonuniform is True and job.options.roi_mm == (1.0, 2.0)


def test_analyze_workers_sets_the_kernel_threads(tmp_path, monkeypatch):
    import ctbone
    import numba

    threads = []
    monkeypatch.setattr(numba, "set_num_threads", threads.append)
    _record(monkeypatch, ctbone, "analyze", [])
    main(["analyze", str(_nonuniform_dicom(tmp_path / "scan")), "-o", str(tmp_path / "out"), "--allow-nonuniform",
          "--workers", "1"])
    assert threads == [1]


def test_trabecular_cube_analyze_skips_lesions_cleanly(tmp_path, capsys, monkeypatch):
    # a rod lattice cube: morphometry is measured, lesion metrics are left empty (no cortex), and
    # nothing warns (pytest turns warnings into errors)
    import json

    import numpy as np
    import SimpleITK as sitk

    z, y, x = np.mgrid[:40, :40, :40]
    rods = ((y % 10 < 3) & (x % 10 < 3)) | ((z % 10 < 3) & (x % 10 < 3)) | ((z % 10 < 3) & (y % 10 < 3))
    image = sitk.GetImageFromArray(np.where(rods, 1000, 30).astype(np.int16))
    image.SetSpacing((0.02, 0.02, 0.02))
    (tmp_path / "in").mkdir()
    sitk.WriteImage(image, str(tmp_path / "in" / "cube.nii.gz"))
    out = tmp_path / "out"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # as on a terminal: the stage bar shows
    code = main(["analyze", str(tmp_path / "in" / "cube.nii.gz"), "-o", str(out), "--mode", "trabecular-cube", "--no-render"])
    assert code == 0
    doc = json.loads((out / "metrics.json").read_text())
    metrics = doc["metrics"]
    assert metrics["cortical_defect_count"] is None and metrics["lytic_volume_mm3"] is None
    assert 20 < metrics["bv_tv_pct"] < 35 and metrics["tb_th_mm"] > 0
    captured = capsys.readouterr()
    assert "BV/TV" in captured.out
    assert "ctbone analyze" in captured.err and "stages" in captured.err  # the stage bar, on stderr
    assert not (out / "masks" / "lytic.nii.gz").exists()


def test_spacing_serves_an_image_stack_and_its_reference(tmp_path):
    # two NRecon-like folders without their *_rec.log: --spacing gives both their voxel size
    import json

    from nrecon_folders import gray_pages, write_nrecon_folder

    from ctbone.phantoms import PhantomSpec, make_phantom

    vol, _ = make_phantom(PhantomSpec(voxel_mm=0.04, length_mm=1.2, metaphysis_length_mm=0.0), seed=2)
    for name in ("scan", "ref"):
        write_nrecon_folder(tmp_path / name, gray_pages(vol.array), prefix=name)
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "scan"), "--reference", str(tmp_path / "ref"), "--spacing", "0.04",
                 "-o", str(out), "--no-render", "-q"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["bone_lost_mm3"] == pytest.approx(0.0, abs=1e-3)  # the same scan: nothing lost
