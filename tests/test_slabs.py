"""Scans read slab by slab (ctbone.io.slabs, ctbone.segment.streamed): the same masks and metrics as in memory."""

import math

import cc3d
import numpy as np
import pytest

from ctbone import analyze
from ctbone.errors import ScanReadError, SegmentationError
from ctbone.io import open_scan, read_scan, write_dicom_series
from ctbone.io.slabs import ArraySlabs, DicomSlabs
from ctbone.options import AnalysisOptions
from ctbone.phantoms import PhantomSpec, make_phantom
from ctbone.segment import segment
from ctbone.segment.streamed import _particles, segment_slabs

MASKS = ("bone", "envelope", "cortex", "marrow", "trabecular", "image", "raw_image")


@pytest.fixture(scope="module")
def phantom_with_particles():
    """A noisy shaft with a metaphysis, plus a big particle far from the bone (dropped), one near it
    (kept: a fragment), and a one-voxel speckle."""
    vol, _ = make_phantom(PhantomSpec(voxel_mm=0.03, length_mm=2.0, noise_hu=60), seed=0)
    a = vol.array.copy()
    a[5:12, 1:4, 1:4] = 1400
    a[30:40, 30:33, 2:5] = 1400
    a[50, 3, 40] = 1400
    return vol.with_array(a)


@pytest.fixture(scope="module")
def dicom_folder(phantom_with_particles, tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    write_dicom_series(phantom_with_particles, folder)
    return folder


@pytest.fixture(scope="module")
def tiff_folder(phantom_with_particles, tmp_path_factory):
    """The phantom as one int16 TIFF per slice (as Bruker NRecon writes a reconstruction)."""
    import tifffile

    folder = tmp_path_factory.mktemp("tiffs")
    for z, page in enumerate(np.rint(phantom_with_particles.array).astype(np.int16)):
        tifffile.imwrite(folder / f"rec_{z:04d}.tif", page)
    return folder


def _as_slabs(vol):
    return ArraySlabs(vol.array, spacing=vol.spacing, origin=vol.origin, direction=vol.direction, unit=vol.unit,
                      meta=vol.meta)


def _same_segmentation(a, b):
    assert a.threshold == b.threshold and a.threshold_method == b.threshold_method
    assert a.info["crop_zyx"] == b.info["crop_zyx"]
    for name in MASKS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and np.array_equal(x.array, y.array), name
        assert x.origin == y.origin and x.unit == y.unit, name  # the same floats: computed from the scan's origin


def test_dicom_slabs_read_the_same_values(dicom_folder):
    memory = read_scan(dicom_folder)
    slabs = open_scan(dicom_folder, memory="slabs")
    assert isinstance(slabs, DicomSlabs)
    assert slabs.shape == memory.shape and slabs.unit == memory.unit == "HU"
    assert np.allclose(slabs.spacing, memory.spacing) and np.allclose(slabs.origin, memory.origin)
    assert np.array_equal(slabs.read(0, memory.shape[0]), memory.array)
    assert np.array_equal(slabs.read(10, 20, slice(5, 30), slice(7, 9)), memory.array[10:20, 5:30, 7:9])


@pytest.mark.parametrize("slab_slices", [1, 7, 30])
def test_slab_segmentation_equals_in_memory(dicom_folder, slab_slices):
    memory = read_scan(dicom_folder)
    slabs = open_scan(dicom_folder, memory="slabs")
    expected = segment(memory, AnalysisOptions())
    got = segment_slabs(slabs, AnalysisOptions(), slab_voxels=slab_slices * memory.shape[1] * memory.shape[2])
    _same_segmentation(expected, got)
    # the near particle is kept, so the block reaches the scan's first columns; the far one is not
    assert got.info["crop_zyx"][2][0] == 0 and got.bone.array[:, :, :3].any()
    assert got.info["slab_read"]["particles"] >= 3


@pytest.mark.parametrize("overrides", [
    {"threshold": 650.0},
    {"calibration": (0.8, 50.0)},
    {"roi_mm": (0.3, 1.5)},
    {"roi_mm": "metaphyseal"},
    {"sigma_vox": 0.0},
])
def test_slab_segmentation_equals_in_memory_with_options(phantom_with_particles, overrides):
    vol = phantom_with_particles
    opts = AnalysisOptions(**overrides)
    try:
        expected = segment(vol, opts)
    except SegmentationError as exc:  # then the slab path must refuse it the same way
        with pytest.raises(SegmentationError, match=str(exc).split(":")[-1][:30]):
            segment_slabs(_as_slabs(vol), opts, slab_voxels=5 * 64 * 81)
        return
    got = segment_slabs(_as_slabs(vol), opts, slab_voxels=5 * 64 * 81)
    _same_segmentation(expected, got)


def test_binary_input_read_by_slabs(phantom_with_particles):
    vol = phantom_with_particles
    binary = vol.with_array(np.where(vol.array > 700, 255, 0).astype(np.float32), is_binary=False)
    expected = segment(binary, AnalysisOptions())
    got = segment_slabs(_as_slabs(binary), AnalysisOptions(), slab_voxels=9 * 64 * 81)
    assert got.threshold_method == "binary-input"
    _same_segmentation(expected, got)


@pytest.mark.parametrize("slab_slices", [1, 2, 5])
def test_particles_joined_across_slab_faces_match_whole_volume_labels(slab_slices):
    rng = np.random.default_rng(3)
    mask = rng.random((23, 19, 17)) < 0.3  # near the percolation threshold: particles cross many faces
    # and apart from them, empty slices and particles in a corner of the field (slabs without bone,
    # labels on a part of the slice)
    mask = np.pad(mask, ((0, 12), (0, 15), (0, 9)))
    mask[27:33, 25:31, 3:8] = rng.random((6, 6, 5)) < 0.4
    whole = cc3d.connected_components(mask, connectivity=26)
    stats = cc3d.statistics(whole)
    expected = sorted((int(c), tuple(s.start for s in b), tuple(s.stop for s in b))
                      for c, b in zip(stats["voxel_counts"][1:], stats["bounding_boxes"][1:]))
    scan = ArraySlabs(mask.astype(np.float32), spacing=(1, 1, 1))
    found = _particles(scan, lambda b: b, lambda b, yx_box: b[(slice(None), *yx_box)], 0.5, 0, slab_slices)
    got = sorted((int(c), tuple(lo), tuple(hi)) for c, lo, hi in zip(found["count"], found["lo"], found["hi"]))
    assert got == expected


def test_analyze_from_slabs_gives_the_same_metrics(dicom_folder):
    expected = analyze(read_scan(dicom_folder), render=False)
    got = analyze(open_scan(dicom_folder, memory="slabs"), render=False)
    assert expected.metrics.keys() == got.metrics.keys()
    for key, value in expected.metrics.items():
        other = got.metrics[key]
        assert value == other or (isinstance(value, float) and math.isnan(value) and math.isnan(other)), key
    assert len(expected.lesions) == len(got.lesions)
    assert got.info["segmentation"]["slab_read"]["slab_slices"] > 0


def test_open_scan_reads_small_scans_in_memory(dicom_folder):
    assert not isinstance(open_scan(dicom_folder), DicomSlabs)


def test_slab_reading_refuses_what_it_cannot_do(dicom_folder, phantom_with_particles, tmp_path):
    from ctbone.io.formats import SITK_SUFFIXES  # noqa: F401  (NIfTI is one of them)

    nifti = tmp_path / "scan.nii.gz"
    import SimpleITK as sitk

    sitk.WriteImage(phantom_with_particles.to_sitk(), str(nifti))
    with pytest.raises(ScanReadError, match="DICOM series or an image stack"):
        open_scan(nifti, memory="slabs")
    with pytest.raises(SegmentationError, match="in memory"):
        segment_slabs(open_scan(dicom_folder, memory="slabs"), AnalysisOptions(), mode="trabecular-cube")
    with pytest.raises(ValueError, match="memory must be"):
        open_scan(dicom_folder, memory="disk")


def test_open_scan_goes_slab_by_slab_when_the_scan_would_not_fit(dicom_folder, monkeypatch):
    import ctbone.io.slabs as slabs

    files = sum(p.stat().st_size for p in dicom_folder.iterdir())
    # room for the files but not for the in-memory path's 16 bytes per voxel
    monkeypatch.setattr(slabs, "available_memory_bytes", lambda: 3 * files)
    assert isinstance(open_scan(dicom_folder), DicomSlabs)
    monkeypatch.setattr(slabs, "available_memory_bytes", lambda: 100 * files)
    assert not isinstance(open_scan(dicom_folder), DicomSlabs)


def test_cli_low_memory_writes_the_same_metrics(dicom_folder, tmp_path):
    import json

    from click.testing import CliRunner

    from ctbone.cli import cli

    runner = CliRunner()
    for name, extra in (("slabs", ["--low-memory"]), ("memory", [])):
        out = runner.invoke(cli, ["analyze", str(dicom_folder), "-o", str(tmp_path / name), "--no-render", "-q", *extra])
        assert out.exit_code == 0, out.output
    slab_run = json.loads((tmp_path / "slabs" / "metrics.json").read_text())
    memory_run = json.loads((tmp_path / "memory" / "metrics.json").read_text())
    assert slab_run["metrics"] == memory_run["metrics"]
    assert slab_run["options"]["memory"] == "slabs"
    assert (tmp_path / "slabs" / "masks").is_dir() and not list(dicom_folder.glob("*.nii*"))


def test_batch_row_passes_the_memory_choice_to_its_reader(tmp_path):
    from ctbone.study.job import Job, run_job

    seen = []

    def read(path, **kwargs):
        seen.append(kwargs)
        raise ScanReadError(f"{path}: stop here")

    for memory, expected in (("slabs", {"memory": "slabs"}), ("auto", {})):
        job = Job(name="a", scan=tmp_path, reference=None, options=AnalysisOptions(memory=memory),
                  outdir=tmp_path / "out", render=False, read_fn=read, analyze_fn=lambda *a, **k: None)
        outcome = run_job(job)
        assert outcome["status"] == "error" and "stop here" in outcome["error"]
        assert seen[-1] == expected


def test_real_femur_by_slabs_equals_in_memory(realdata):
    # a real scan (noise, a real marrow and cortex, a third trochanter) through the slab path, one slice per
    # slab, its MetaImage memory-mapped
    path = realdata / "mouse_femur" / "mouse_femur2.mhd"
    femur, mapped = read_scan(path), open_scan(path, memory="slabs")
    assert np.array_equal(mapped.read(0, femur.shape[0]), femur.array) and mapped.unit == femur.unit
    for overrides in ({}, {"roi_mm": (2.5, 5.1)}):
        opts = AnalysisOptions(**overrides)
        slab_voxels = femur.shape[1] * femur.shape[2]
        _same_segmentation(segment(femur, opts), segment_slabs(mapped, opts, slab_voxels=slab_voxels))


def test_metaimage_by_slabs_equals_in_memory(phantom_with_particles, tmp_path, monkeypatch):
    import SimpleITK as sitk

    import ctbone.io.slabs as slabs_module

    image = sitk.Cast(phantom_with_particles.to_sitk(), sitk.sitkInt16)
    sitk.WriteImage(image, str(tmp_path / "scan.mhd"))
    sitk.WriteImage(image, str(tmp_path / "packed.mhd"), useCompression=True)
    memory = read_scan(tmp_path / "scan.mhd")
    mapped = open_scan(tmp_path / "scan.mhd", memory="slabs")
    assert np.array_equal(mapped.read(0, memory.shape[0]), memory.array)
    assert np.allclose(mapped.origin, memory.origin) and np.allclose(mapped.direction, memory.direction)
    _same_segmentation(segment(memory, AnalysisOptions()), segment_slabs(mapped, AnalysisOptions(), slab_voxels=8 * 64 * 81))
    with pytest.raises(ScanReadError, match="compressed"):
        open_scan(tmp_path / "packed.mhd", memory="slabs")
    monkeypatch.setattr(slabs_module, "available_memory_bytes", lambda: 1_000_000)
    assert isinstance(open_scan(tmp_path / "scan.mhd"), ArraySlabs)
    assert not isinstance(open_scan(tmp_path / "packed.mhd"), ArraySlabs)  # read in memory: it cannot be mapped


def test_scanco_isq_by_slabs_equals_in_memory(phantom_with_particles, tmp_path, monkeypatch):
    from scanco_files import write_isq

    import ctbone.io.slabs as slabs_module

    native = np.rint(0.24 * (1 + phantom_with_particles.array / 1000.0) * 8192).astype(np.int16)
    path = write_isq(tmp_path / "C0000001.ISQ", native, phantom_with_particles.spacing[0] * 1000,
                     calibration=(1603.5, -391.2, 0.24))
    memory = read_scan(path)
    mapped = open_scan(path, memory="slabs")
    assert isinstance(mapped, ArraySlabs) and mapped.meta["scanco_density_slope"] == 1603.5
    assert np.array_equal(mapped.read(0, memory.shape[0]), memory.array)
    options = AnalysisOptions()
    _same_segmentation(segment(memory, options), segment_slabs(mapped, options, slab_voxels=8 * 64 * 81))
    monkeypatch.setattr(slabs_module, "available_memory_bytes", lambda: 1_000_000)
    assert isinstance(open_scan(path), ArraySlabs)  # too big for the memory said to be free: slab by slab


def test_tiff_stack_by_slabs_equals_in_memory(tiff_folder, monkeypatch):
    from ctbone.io.slabs import StackSlabs

    memory = read_scan(tiff_folder, spacing=0.03)
    slabs = open_scan(tiff_folder, spacing=0.03, memory="slabs")
    assert isinstance(slabs, StackSlabs) and slabs.unit == memory.unit and slabs.meta["format"] == "tiff"
    assert np.array_equal(slabs.read(0, slabs.shape[0]), memory.array)
    _same_segmentation(segment(memory, AnalysisOptions()), segment_slabs(slabs, AnalysisOptions(), slab_voxels=10 * 64 * 81))
    import ctbone.io.slabs as slabs_module

    int16_bytes = 2 * int(np.prod(memory.shape))
    monkeypatch.setattr(slabs_module, "available_memory_bytes", lambda: 4 * int16_bytes)  # 8 bytes per voxel
    assert isinstance(open_scan(tiff_folder, spacing=0.03), StackSlabs)


def test_info_tells_how_the_scan_would_be_read(dicom_folder, tiff_folder, monkeypatch):
    import ctbone.io.slabs as slabs_module
    from ctbone.io import format_scan_info, scan_info

    assert scan_info(dicom_folder)["reading"]["mode"] == "in memory"
    monkeypatch.setattr(slabs_module, "available_memory_bytes", lambda: 1_000_000)
    info = scan_info(dicom_folder)
    assert info["reading"]["mode"] == "slab by slab" and info["reading"]["available_gb"] == 0.0
    assert "reading: slab by slab" in format_scan_info(info)
    info = scan_info(tiff_folder, spacing=0.03)  # described from its first page, not read whole
    assert info["reading"]["mode"] == "slab by slab" and info["geometry"]["shape_zyx"] == [67, 64, 81]


@pytest.mark.parametrize("slab_slices", [1, 4])
def test_particles_keep_voxels_only_smoothing_lifts_above_the_threshold(slab_slices):
    from ctbone.segment.smooth import gaussian_smooth

    def smooth(block, yx_box=None):
        return gaussian_smooth(block, sigma_vox=0.8, support_vox=1, yx_box=yx_box)

    image = np.zeros((12, 40, 40), np.float32)
    image[3:9, 5:15, 10:14] = 100
    image[3:9, 5:15, 8:10] = 45    # below the threshold, lifted above it by the bright bone beside it (along x)
    image[3:9, 25:35, 25:30] = 100
    image[1:3, 25:35, 25:30] = 45  # the same along z, in a second region of the slice
    above = smooth(image) > 50
    assert (above & (image < 50)).any()
    whole = cc3d.connected_components(above, connectivity=26)
    stats = cc3d.statistics(whole)
    expected = sorted((int(c), tuple(s.start for s in b), tuple(s.stop for s in b))
                      for c, b in zip(stats["voxel_counts"][1:], stats["bounding_boxes"][1:]))
    found = _particles(ArraySlabs(image, spacing=(1, 1, 1)), lambda b: b, smooth, 50.0, 1, slab_slices)
    got = sorted((int(c), tuple(lo), tuple(hi)) for c, lo, hi in zip(found["count"], found["lo"], found["hi"]))
    assert got == expected


def test_no_bone_error_is_the_in_memory_one(phantom_with_particles):
    vol = phantom_with_particles
    opts = AnalysisOptions(threshold=5000.0)  # fixed: the slab path skips its first pass until it needs the range
    with pytest.raises(SegmentationError) as in_memory:
        segment(vol, opts)
    with pytest.raises(SegmentationError) as by_slabs:
        segment_slabs(_as_slabs(vol), opts, slab_voxels=5 * 64 * 81)
    assert str(by_slabs.value).split(": ", 1)[1] == str(in_memory.value).split(": ", 1)[1]
    assert "image range" in str(by_slabs.value)


def test_info_describes_a_large_metaimage_from_its_header(realdata, monkeypatch):
    import ctbone.io.slabs as slabs_module
    from ctbone.io import scan_info

    monkeypatch.setattr(slabs_module, "available_memory_bytes", lambda: 1_000_000)
    info = scan_info(realdata / "mouse_femur" / "mouse_femur2.mhd")
    assert info["reading"]["mode"] == "slab by slab" and info["geometry"]["shape_zyx"] == [103, 49, 63]
    assert "value_range" not in info  # not read whole


def test_local_batch_workers_each_count_on_their_share_of_memory(dicom_folder, monkeypatch):
    import ctbone.io.slabs as slabs_module

    files = sum(p.stat().st_size for p in dicom_folder.iterdir())
    monkeypatch.setattr(slabs_module, "available_memory_bytes", lambda: 12 * files)  # ~24 bytes per voxel
    assert not isinstance(open_scan(dicom_folder), DicomSlabs)
    assert isinstance(open_scan(dicom_folder, memory_share=0.5), DicomSlabs)  # two workers: 12 bytes each


def test_batch_gives_each_local_worker_its_share(tmp_path, monkeypatch):
    from test_batch_fakes import write_fake_scan

    from ctbone.study import runner

    seen = []

    def fake_processes(jobs, workers):
        seen.extend(job.memory_share for job in jobs)
        return [{"name": job.name, "status": "error", "error": "stop", "seconds": 0.0} for job in jobs]

    lines = ["animal_id,group,scan"]
    for i in range(3):
        write_fake_scan(tmp_path / "scans" / f"A{i}", float(i))
        lines.append(f"A{i},{'ab'[i % 2]},scans/A{i}")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(runner, "run_processes", fake_processes)
    runner.run_batch(tmp_path / "manifest.csv", tmp_path / "out", workers=2, render=False, quiet=True)
    assert seen == [0.5, 0.5, 0.5]
