"""Issue 8's bad-input corpus: each case a clear one-line error naming the file, exit 1, no traceback."""

import logging

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import ctbone
from ctbone.cli import main
from ctbone.errors import GeometryError, ScanReadError, SeriesError
from ctbone.io import write_dicom_series
from ctbone.volume import Volume


def _vol(shape=(5, 32, 32)):
    return Volume(np.random.default_rng(0).integers(-1000, 1500, shape).astype(np.float32), spacing=(0.05, 0.05, 0.05),
                  unit="HU")


def empty_folder(d):
    d.mkdir()
    return d, ScanReadError, "folder is empty"


def no_dicom(d):
    d.mkdir()
    (d / "readme.txt").write_text("hello")
    (d / "scan_rec.log").write_text("[Reconstruction]")
    return d, SeriesError, "no DICOM image files"


def text_named_dcm(d):
    d.mkdir()
    (d / "slice001.dcm").write_text("this is not a DICOM file at all\n" * 10)
    return d, SeriesError, "no DICOM image files"


def header_only(d):
    paths = write_dicom_series(_vol(), d)
    raw = paths[0].read_bytes()
    cut = raw.index(b"\xe0\x7f\x10\x00")  # the (7FE0,0010) Pixel Data tag
    paths[0].write_bytes(raw[:cut])
    return d, ScanReadError, paths[0].name


def half_pixel_data(d):
    paths = write_dicom_series(_vol(), d)
    raw = paths[2].read_bytes()
    paths[2].write_bytes(raw[: len(raw) - 32 * 32])
    return d, ScanReadError, paths[2].name


def missing_slice(d):
    paths = write_dicom_series(_vol(), d)
    paths[2].unlink()
    return d, GeometryError, "missing slice"


def duplicate_positions(d):
    paths = write_dicom_series(_vol(), d)
    ds = pydicom.dcmread(paths[3])
    ds.ImagePositionPatient = pydicom.dcmread(paths[2]).ImagePositionPatient
    ds.save_as(paths[3])
    return d, GeometryError, "duplicate slice positions"


def mixed_orientations(d):
    write_dicom_series(_vol(), d / "a", series_uid="1.2.77")
    rotated = Volume(_vol().array, spacing=(0.05, 0.05, 0.05), direction=np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]]),
                     unit="HU")
    write_dicom_series(rotated, d / "b", series_uid="1.2.77")
    return d, SeriesError, "mixes image sizes or orientations"


def zero_spacing(d):
    paths = write_dicom_series(_vol(), d)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.PixelSpacing = [0, 0.05]
        ds.save_as(p)
    return d, GeometryError, "PixelSpacing"


def corrupt_compressed(d):
    from pydicom.uid import RLELossless

    paths = write_dicom_series(_vol((3, 32, 32)), d, transfer_syntax=RLELossless)
    ds = pydicom.dcmread(paths[1])
    frame = bytearray(ds.PixelData)
    frame[20:] = b"\xff" * (len(frame) - 20)
    ds.PixelData = bytes(frame)
    ds.save_as(paths[1])
    return d, ScanReadError, paths[1].name


def rle_decoder_panics(d):
    # a literal run longer than the row makes the Rust RLE decoder panic (a pyo3 PanicException, no Exception,
    # with a backtrace printed to the process's stderr)
    from pydicom.uid import RLELossless

    paths = write_dicom_series(_vol((3, 32, 32)), d, transfer_syntax=RLELossless)
    raw = bytearray(paths[1].read_bytes())
    item = raw.find(b"\xfe\xff\x00\xe0", raw.find(b"\xfe\xff\x00\xe0") + 8) + 8  # the first fragment's data
    segment = item + int.from_bytes(raw[item + 4:item + 8], "little")
    raw[segment] = raw[segment + 2] = 127
    paths[1].write_bytes(bytes(raw))
    return d, ScanReadError, "pixel data are truncated or corrupt"


def _edited_mha(d, edit):
    """A MetaImage of `_vol` in ``d``, its bytes passed through ``edit``."""
    d.mkdir()
    path = d / "scan.mha"
    sitk.WriteImage(sitk.GetImageFromArray(_vol().array), str(path))
    path.write_bytes(edit(path.read_bytes()))
    return path


def truncated_mha(d):
    path = _edited_mha(d, lambda data: data[:-1000])  # MetaIO prints its complaint to the process's stderr
    return path, ScanReadError, "data not read completely"


def mhd_without_data_file_line(d):
    path = _edited_mha(d, lambda data: data.replace(b"ElementDataFile", b"ElementDataFilx"))
    return path, ScanReadError, "ElementDataFile required"


def absurd_size(d):
    paths = write_dicom_series(_vol(), d)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.Rows = ds.Columns = 60000
        ds.save_as(p)
    return d, ScanReadError, "header claims"


def nan_nifti(d):
    d.mkdir()
    array = _vol().array.copy()
    array[2, 3, 4] = np.nan
    array[1, 1, 1] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(array), str(d / "scan.nii.gz"))
    return d / "scan.nii.gz", ScanReadError, "NaN or infinite"


def negative_spacing_mha(d):
    path = _edited_mha(d, lambda data: data.replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = 1 -1 1"))
    return path, ScanReadError, "scan.mha"


def tiff_without_spacing(d):
    import tifffile

    d.mkdir()
    for i in range(3):
        tifffile.imwrite(d / f"slice_{i:03d}.tif", np.zeros((8, 8), np.uint8))
    return d, GeometryError, "--spacing"


CASES = [empty_folder, no_dicom, text_named_dcm, header_only, half_pixel_data, missing_slice, duplicate_positions,
         mixed_orientations, zero_spacing, corrupt_compressed, rle_decoder_panics, absurd_size, nan_nifti,
         negative_spacing_mha, truncated_mha, mhd_without_data_file_line, tiff_without_spacing]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_raises_a_clear_error(tmp_path, case):
    path, error, words = case(tmp_path / "scan")
    with pytest.raises(error) as excinfo:
        ctbone.read_scan(path)
    message = str(excinfo.value)
    assert words in message
    assert "\n" not in message
    assert str(tmp_path) in message  # names the file or folder


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_cli_bad_input_one_line_exit_1_no_output(tmp_path, case, capfd):
    # capfd: what native libraries print to the process's stderr counts as much as Python's own lines
    path, _, _ = case(tmp_path / "scan")
    capfd.readouterr()
    out = tmp_path / "out"
    status = main(["analyze", str(path), "-o", str(out), "--no-render"])
    err = capfd.readouterr().err
    assert status == 1
    assert err.startswith("ctbone: error: ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())  # no partial output


def test_single_2d_image_is_read_but_too_thin_to_analyze(tmp_path):
    (path,) = write_dicom_series(_vol((1, 32, 32)), tmp_path / "one")
    assert ctbone.read_scan(path).shape == (1, 32, 32)
    with pytest.raises(ctbone.CtboneError, match="too thin"):
        ctbone.analyze(ctbone.read_scan(path))


def test_non_ct_modality_warns_and_continues(tmp_path, caplog):
    write_dicom_series(_vol(), tmp_path / "mr", modality="MR")
    with caplog.at_level(logging.WARNING, logger="ctbone"):
        volume = ctbone.read_scan(tmp_path / "mr")
    assert volume.shape == (5, 32, 32)
    assert any("modality MR is not CT" in r.getMessage() for r in caplog.records)


def test_native_stderr_is_held_back_in_nested_blocks_and_restored(capfd):
    import os

    from ctbone.io.native_stderr import native_stderr_held

    with native_stderr_held("outer") as outer:
        os.write(2, b"one\n")
        with native_stderr_held("inner") as inner:
            os.write(2, b"two\n")
        os.write(2, b"three\n")
    os.write(2, b"shown\n")
    assert (outer, inner) == (["one three"], ["two"])
    assert capfd.readouterr().err == "shown\n"


def test_a_text_file_named_dcm_is_skipped_as_not_dicom(tmp_path):
    # read with force=True any file parses into some dataset; one with no DICOM element was called "a report,
    # structured data or index"
    from ctbone.io import scan_info

    path, _, _ = text_named_dcm(tmp_path / "scan")
    with pytest.raises(SeriesError):
        scan_info(path)
    from ctbone.io.dicom import scan_headers

    _, skipped = scan_headers(path)
    assert [reason for _, reason in skipped] == ["not DICOM (no DICOM elements: a text or other file)"]


def test_reading_works_in_a_process_without_stderr(tmp_path):
    # a service may run ctbone with descriptor 2 closed: holding back native messages must not stop the read
    import subprocess
    import sys

    sitk.WriteImage(sitk.GetImageFromArray(_vol().array), str(tmp_path / "scan.mha"))
    code = ("import os, sys; os.close(2); sys.stderr = None; import ctbone; "
            f"print(ctbone.read_scan({str(tmp_path / 'scan.mha')!r}).shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "(5, 32, 32)"
