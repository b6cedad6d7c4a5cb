"""The DICOM reader against known arrays written with pydicom: ordering, rescale, series, syntaxes, geometry."""

import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

import ctbone
from ctbone.errors import GeometryError, SeriesError
from ctbone.io import scan_info, write_dicom_series
from ctbone.volume import Volume


def known_volume(shape=(6, 40, 48), spacing=(0.05, 0.02, 0.03), origin=(1.5, -2.0, 10.0), seed=0):
    """Integer HU values (so any stored type holds them exactly) with a per-slice signature."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 2000, size=shape).astype(np.float32)
    array[:, 0, 0] = np.arange(shape[0]) * 100  # slice k carries 100*k in its corner
    return Volume(array, spacing=spacing, origin=origin, unit="HU")


def test_order_by_position_not_by_name_or_instance_number(tmp_path):
    vol = known_volume()
    paths = write_dicom_series(vol, tmp_path, file_names="random", shuffle_seed=3)
    # make InstanceNumber lie (reverse it) and name files against position order
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.InstanceNumber = len(paths) - i
        ds.save_as(p)
        p.rename(tmp_path / f"z{len(paths) - i:03d}.dcm")
    back = ctbone.read_scan(tmp_path)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.spacing == pytest.approx(vol.spacing)
    assert back.origin == pytest.approx(vol.origin)


def test_per_slice_rescale_is_applied(tmp_path):
    vol = known_volume()
    paths = write_dicom_series(vol, tmp_path)
    for i, p in enumerate(paths):  # rewrite each slice with its own slope/intercept
        ds = pydicom.dcmread(p)
        slope, intercept = 0.5 + 0.25 * i, -1024.0 + 10 * i
        stored = np.rint((vol.array[i] - intercept) / slope).astype(np.int16)
        ds.PixelData = stored.tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.save_as(p)
    back = ctbone.read_scan(tmp_path)
    # stored values are rounded: error at most half a slope step
    slopes = 0.5 + 0.25 * np.arange(vol.shape[0])
    assert np.all(np.abs(back.array - vol.array) <= slopes[:, None, None] / 2 + 1e-3)
    assert back.meta["rescale"]["varies_per_slice"]


@pytest.mark.parametrize("dtype,slope,intercept", [
    ("int16", 1.0, 0.0), ("uint16", 1.0, -1024.0), ("uint8", 16.0, -1024.0), ("int32", 0.5, 0.0), ("uint32", 1.0, -2000.0),
])
def test_stored_types_and_signedness(tmp_path, dtype, slope, intercept):
    vol = known_volume()
    write_dicom_series(vol, tmp_path, dtype=dtype, rescale_slope=slope, rescale_intercept=intercept)
    back = ctbone.read_scan(tmp_path)
    # the writer clips to the type's range; compare with what it could store
    info = np.iinfo(dtype)
    expected = np.clip(np.rint((vol.array - intercept) / slope), info.min, info.max) * slope + intercept
    np.testing.assert_allclose(back.array, expected, atol=1e-3)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless, DeflatedExplicitVRLittleEndian])
def test_compressed_syntaxes_decode_to_the_original(tmp_path, syntax):
    vol = known_volume(shape=(4, 64, 64))
    write_dicom_series(vol, tmp_path, transfer_syntax=syntax, shuffle_seed=1, file_names="random")
    back = ctbone.read_scan(tmp_path)
    assert back.meta["transfer_syntax"] == str(syntax)
    np.testing.assert_array_equal(back.array, vol.array)


def test_jpeg_lossless_process14_via_gdcm(tmp_path):
    gdcm = pytest.importorskip("gdcm")
    vol = known_volume(shape=(3, 32, 32))
    paths = write_dicom_series(vol, tmp_path)
    for p in paths:  # transcode with GDCM to JPEG Lossless SV1 (1.2.840.10008.1.2.4.70)
        reader = gdcm.ImageReader()
        reader.SetFileName(str(p))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(p))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
    back = ctbone.read_scan(tmp_path)
    assert back.meta["transfer_syntax"] == "1.2.840.10008.1.2.4.70"
    np.testing.assert_array_equal(back.array, vol.array)


def test_enhanced_multiframe(tmp_path):
    vol = known_volume(shape=(5, 32, 40))
    (path,) = write_dicom_series(vol, tmp_path, multiframe=True, rescale_slope=2.0, rescale_intercept=-1000.0)
    back = ctbone.read_scan(path)  # a single file
    expected = np.rint((vol.array + 1000.0) / 2.0) * 2.0 - 1000.0
    np.testing.assert_allclose(back.array, expected)
    assert back.spacing == pytest.approx(vol.spacing)
    assert back.origin == pytest.approx(vol.origin)
    assert back.meta["enhanced_multiframe"]


def test_single_slice_file_gives_one_slice_volume(tmp_path):
    vol = known_volume(shape=(1, 32, 32))
    (path,) = write_dicom_series(vol, tmp_path)
    back = ctbone.read_scan(path)
    assert back.shape == (1, 32, 32)
    np.testing.assert_array_equal(back.array, vol.array)


def test_largest_series_chosen_and_series_option(tmp_path):
    big, small = known_volume(shape=(8, 32, 32)), known_volume(shape=(3, 32, 32), seed=1)
    write_dicom_series(big, tmp_path / "a", series_uid="1.2.3.4", series_number=2)
    write_dicom_series(small, tmp_path / "b" / "deeper", series_uid="1.2.3.5", series_number=7)
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 10)
    (tmp_path / "scan_rec.log").write_text("[Reconstruction]\n")
    (tmp_path / "notes.txt").write_text("hello")
    assert ctbone.read_scan(tmp_path).shape[0] == 8
    np.testing.assert_array_equal(ctbone.read_scan(tmp_path, series="1.2.3.5").array, small.array)
    np.testing.assert_array_equal(ctbone.read_scan(tmp_path, series=7).array, small.array)
    info = scan_info(tmp_path)
    assert [s["series_uid"] for s in info["series"]] == ["1.2.3.4", "1.2.3.5"]
    assert info["chosen"] == "1.2.3.4"
    assert {s["reason"].split(" ")[0] for s in info["skipped"]} >= {"DICOMDIR", "not"}
    with pytest.raises(SeriesError, match="1.2.3.4"):
        ctbone.read_scan(tmp_path, series="9.9.9")


def test_oblique_orientation_geometry(tmp_path):
    angle = np.deg2rad(30)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    vol = Volume(known_volume().array, spacing=(0.05, 0.02, 0.03), origin=(1, 2, 3), direction=direction, unit="HU")
    write_dicom_series(vol, tmp_path, shuffle_seed=0, file_names="random")
    back = ctbone.read_scan(tmp_path)
    np.testing.assert_allclose(back.direction, direction, atol=1e-6)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-6)
    np.testing.assert_array_equal(back.array, vol.array)
    # the physical position of the last voxel agrees with SimpleITK's reading of the same files
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()
    last = [s - 1 for s in image.GetSize()]
    np.testing.assert_allclose(back.index_to_physical(last[::-1]), image.TransformIndexToPhysicalPoint(last), atol=1e-5)


def test_phantom_round_trip_equals_what_was_written(tmp_path):
    from ctbone.phantoms import PhantomSpec, make_phantom, write_phantom

    spec = PhantomSpec(voxel_mm=0.04, length_mm=1.2, supersample=1)
    write_phantom(spec, tmp_path, seed=2)
    volume, _ = make_phantom(spec, seed=2)
    back = ctbone.read_scan(tmp_path / "dicom")
    assert np.abs(back.array - volume.array).max() <= 0.5 + 1e-3  # int16 storage rounds to the nearest HU
    assert back.unit == "HU"


# --- geometry refusals ------------------------------------------------------------------------------

def _series(tmp_path, shape=(6, 16, 16)):
    return write_dicom_series(known_volume(shape=shape), tmp_path, file_names="instance")


def test_missing_slice_is_refused_naming_positions(tmp_path):
    paths = _series(tmp_path)
    paths[3].unlink()
    with pytest.raises(GeometryError, match=r"1 missing slice\(s\) between 10.1000 and 10.2000 mm"):
        ctbone.read_scan(tmp_path)


def test_a_slice_with_a_corrupt_header_element_is_skipped_and_named(tmp_path, capsys):
    # pydicom parses element values when they are read: an element whose VR bytes were garbled (a bad copy) raised
    # NotImplementedError from deep inside the reader; the file is now skipped with its reason, and the gap it
    # leaves is refused as a missing slice is
    from ctbone.cli import main

    paths = _series(tmp_path)
    data = paths[3].read_bytes()
    at = data.index(b"\x20\x00\x13\x00IS")  # InstanceNumber, explicit VR "IS"
    paths[3].write_bytes(data[:at + 4] + b"I\n" + data[at + 6:])
    with pytest.raises(GeometryError, match=r"1 missing slice\(s\) between 10.1000 and 10.2000 mm"):
        ctbone.read_scan(tmp_path)
    assert main(["info", str(tmp_path), "--verbose"]) == 0
    out = capsys.readouterr().out
    assert f"{paths[3]}: unreadable DICOM header (NotImplementedError" in out and "PROBLEM" in out


def test_duplicate_positions_are_refused(tmp_path):
    paths = _series(tmp_path)
    ds = pydicom.dcmread(paths[2])
    ds.ImagePositionPatient = pydicom.dcmread(paths[1]).ImagePositionPatient
    ds.save_as(paths[2])
    with pytest.raises(GeometryError, match="duplicate slice positions"):
        ctbone.read_scan(tmp_path)


def test_nonuniform_spacing_refused_or_resampled(tmp_path):
    paths = _series(tmp_path)
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.ImagePositionPatient = [1.5, -2.0, 10.0 + 0.05 * i + (0.02 if i >= 3 else 0.0)]
        ds.save_as(p)
    with pytest.raises(GeometryError, match="non-uniform slice spacing") as refused:
        ctbone.read_scan(tmp_path)
    assert "0.07 mm after 10.1000" in str(refused.value)  # names the odd gap and where it is
    assert "--allow-nonuniform" in str(refused.value)  # and the fix
    resampled = ctbone.read_scan(tmp_path, allow_nonuniform=True)
    assert resampled.spacing[0] == pytest.approx(0.05)


def test_mixed_sizes_in_one_series_is_refused_with_the_fix(tmp_path):
    write_dicom_series(known_volume(shape=(4, 16, 16)), tmp_path / "a", series_uid="1.2.9")
    write_dicom_series(known_volume(shape=(3, 20, 20)), tmp_path / "b", series_uid="1.2.9")
    with pytest.raises(SeriesError, match=r"mixes image sizes.*--series"):
        ctbone.read_scan(tmp_path)
    assert ctbone.read_scan(tmp_path, series="1.2.9#2").shape == (3, 20, 20)


# --- binary (segmented) exports ---------------------------------------------------------------------

@pytest.mark.parametrize("low,high,dtype", [(0, 1, "uint8"), (0, 255, "uint8"), (-1000, 3000, "int16")])
def test_binary_dicom_export_is_marked_binary(tmp_path, low, high, dtype):
    rng = np.random.default_rng(0)
    array = np.where(rng.random((5, 16, 16)) > 0.7, high, low).astype(np.float32)
    write_dicom_series(Volume(array, spacing=(0.02,) * 3), tmp_path, dtype=dtype)
    back = ctbone.read_scan(tmp_path)
    assert back.meta["is_binary"] is True


def test_gray_dicom_is_not_binary(tmp_path):
    write_dicom_series(known_volume(), tmp_path)
    assert ctbone.read_scan(tmp_path).meta["is_binary"] is False


def test_three_valued_dicom_is_not_binary(tmp_path):
    array = np.zeros((5, 16, 16), np.float32)
    array[2:, 4:12, 4:12] = 1000
    array[3, 8, 8] = 500  # one voxel of a third value
    write_dicom_series(Volume(array, spacing=(0.02,) * 3), tmp_path)
    assert ctbone.read_scan(tmp_path).meta["is_binary"] is False


def test_noisy_ct_without_rescale_type_is_still_hu(tmp_path):
    # air with 150 HU of noise puts the 0.5th percentile near -1370, outside the percentile rule's window: such a
    # series (no RescaleType, as many exports) was called raw gray; its air peak at -1000 says HU
    rng = np.random.default_rng(2)
    hu = np.full((6, 40, 48), -1000.0) + rng.normal(0, 150, (6, 40, 48))
    hu[:, 10:30, 10:38] = 1200.0
    paths = write_dicom_series(Volume(np.rint(hu).astype(np.float32), spacing=(0.01,) * 3, unit="raw"), tmp_path)
    for p in paths:
        ds = pydicom.dcmread(p)
        if "RescaleType" in ds:
            del ds.RescaleType
        ds.save_as(p)
    assert ctbone.read_scan(tmp_path).unit == "HU"


@pytest.mark.parametrize("stored,noise_hu", [("native", 30), ("HU", 30), ("native", 190), ("HU", 190)])
def test_scanco_export_native_or_hu_with_its_density_tags(tmp_path, stored, noise_hu):
    # Scanco's DICOM export writes native values (mu x mu-scaling: air near 0) or HU (air near -1000), with the
    # same density tags in group 0029 and no RescaleType; the values say which, and the calibration follows
    from ctbone.calibrate import vendor_calibration

    mu_water, scaling, slope, intercept = 0.24, 8192, 1603.5, -391.2
    rng = np.random.default_rng(1)
    # 190 HU of noise is 374 native gray values: native air's 0.5th percentile then falls at -939, inside the
    # HU window of the percentile rule; the air peak (at 0 in native values) tells them apart
    hu = np.full((6, 40, 48), -1000.0) + rng.normal(0, noise_hu, (6, 40, 48))
    hu[:, 10:30, 10:38] = 1200.0  # bone in air
    values = hu if stored == "HU" else mu_water * (1 + hu / 1000.0) * scaling
    paths = write_dicom_series(Volume(np.rint(values).astype(np.float32), spacing=(0.01,) * 3, unit="raw"), tmp_path,
                               manufacturer="SCANCO Medical AG")
    for p in paths:
        ds = pydicom.dcmread(p)
        if "RescaleType" in ds:
            del ds.RescaleType
        ds.private_block(0x0029, "SCANCO calibration", create=True)
        for element, vr, value in ((0x1000, "SL", scaling), (0x1004, "DS", slope), (0x1005, "DS", intercept),
                                   (0x1006, "DS", mu_water)):
            ds.add_new((0x0029, element), vr, value)
        ds.save_as(p)
    volume = ctbone.read_scan(tmp_path)
    assert volume.unit == ("HU" if stored == "HU" else "raw")
    a, b = vendor_calibration(volume)
    # the bone's 1200 HU: mu = 0.24 x 2.2 = 0.528 /cm, so 0.528 x 1603.5 - 391.2 = 455.4 mg HA/cm3 either way
    bone_value = 1200.0 if stored == "HU" else 0.528 * scaling
    assert bone_value * a + b == pytest.approx(455.448, rel=2e-3)
    from ctbone.io import format_scan_info

    text = format_scan_info(scan_info(tmp_path))
    assert ("applied to HU through mu water" in text) == (stored == "HU")
    assert ("mg HA/cm3 = value / 8192 x 1603.5 - 391.2" in text) == (stored == "native")
