"""NIfTI / MetaImage / NRRD / TIFF stacks, and the real scans beside the checkout."""

import numpy as np
import pytest
import SimpleITK as sitk

import ctbone
from ctbone.volume import Volume


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
@pytest.mark.parametrize("spacing", [(0.02, 0.02, 0.02), (0.05, 0.02, 0.03)])
def test_sitk_formats_keep_values_and_geometry(tmp_path, suffix, spacing):
    array = np.random.default_rng(1).normal(0, 500, (3, 4, 5)).astype(np.float32)  # (3,4,5) catches swapped axes
    original = Volume(array, spacing=spacing, origin=(1.0, 2.0, 3.0), unit="raw")
    path = tmp_path / f"scan{suffix}"
    sitk.WriteImage(original.to_sitk(), str(path))
    back = ctbone.read_scan(path)
    np.testing.assert_allclose(back.array, array, rtol=1e-6)
    assert back.shape == (3, 4, 5)
    assert back.spacing == pytest.approx(spacing)
    assert back.origin == pytest.approx((1.0, 2.0, 3.0))


def test_folder_holding_one_volume_file_reads_that_volume(tmp_path):
    from ctbone.errors import SeriesError
    from ctbone.io import scan_info

    array = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    folder = tmp_path / "mouse07"
    folder.mkdir()
    sitk.WriteImage(Volume(array, spacing=(0.01,) * 3, unit="raw").to_sitk(), str(folder / "mouse07.mhd"))
    (folder / "notes.txt").write_text("scanned 2026-11-02")
    assert sorted(p.suffix for p in folder.iterdir()) == [".mhd", ".raw", ".txt"]
    np.testing.assert_array_equal(ctbone.read_scan(folder).array, array)
    np.testing.assert_array_equal(ctbone.open_scan(folder).array, array)
    assert scan_info(folder)["chosen"].endswith("mouse07.mhd")
    # two volumes: which one is meant is not guessed, and the error names them
    sitk.WriteImage(Volume(array, spacing=(0.01,) * 3, unit="raw").to_sitk(), str(folder / "other.nrrd"))
    with pytest.raises(SeriesError, match=r"mouse07\.mhd, other\.nrrd"):
        ctbone.read_scan(folder)


def test_tiff_folder_natural_order_and_spacing_option(tmp_path):
    import tifffile

    for i in range(1, 12):  # natural order 1, 2, ..., 10, 11 (a plain sort would give 1, 10, 11, 2, ...)
        tifffile.imwrite(tmp_path / f"slice_{i}.tif", np.full((6, 7), i, np.uint16))
    vol = ctbone.read_scan(tmp_path, spacing=0.0195)
    assert vol.array[:, 0, 0].tolist() == list(range(1, 12))
    assert vol.spacing == pytest.approx((0.0195,) * 3)


def test_tiff_spacing_from_bruker_rec_log(tmp_path):
    import tifffile

    for i in range(3):
        tifffile.imwrite(tmp_path / f"bone_rec{i:04d}.tif", np.zeros((5, 5), np.uint8))
    (tmp_path / "bone_rec.log").write_text("[Reconstruction]\nPixel Size (um)=10.5\nResult Image Width (pixels)=5\n")
    vol = ctbone.read_scan(tmp_path)
    assert vol.spacing == pytest.approx((0.0105,) * 3)
    assert vol.meta["spacing_source"] == "rec.log"


def _nrecon_folder(folder, pages, *, suffix=".bmp", pixel_um=10.5):
    """A folder as Bruker's NRecon writes it: numbered slices, a *_rec.log and a preview picture of another size."""
    from nrecon_folders import write_nrecon_folder

    return write_nrecon_folder(folder, pages, prefix="tibia", suffix=suffix,
                               log=f"[Reconstruction]\nPixel Size (um)={pixel_um}\n",
                               preview=np.full((3, 4), 255, np.uint8))


@pytest.mark.parametrize("suffix", [".bmp", ".png"])
def test_nrecon_picture_stack_is_read_with_its_pixel_size_and_without_its_preview(tmp_path, suffix):
    # NRecon's default output: 8-bit gray pictures (BMP: a gray palette, which SimpleITK would read as RGB)
    rng = np.random.default_rng(0)
    pages = [rng.integers(0, 256, (6, 7), dtype=np.uint8) for _ in range(12)]
    folder = _nrecon_folder(tmp_path / "rec", pages, suffix=suffix)
    vol = ctbone.read_scan(folder)
    np.testing.assert_array_equal(vol.array, np.stack(pages).astype(np.float32))  # natural order, exact values
    assert vol.spacing == pytest.approx((0.0105,) * 3) and vol.meta["spacing_source"] == "rec.log"
    assert vol.meta["format"] == suffix[1:] and vol.meta["files"] == 12 and vol.unit == "raw"
    # the same through the slab reader, and described by `ctbone info`
    slabs = ctbone.open_scan(folder, memory="slabs")
    np.testing.assert_array_equal(slabs.read(0, 12), vol.array)
    from ctbone.errors import ScanReadError
    from ctbone.io import format_scan_info, scan_info

    described = scan_info(folder)
    assert described["geometry"]["shape_zyx"] == [12, 6, 7]
    assert "(0.0105, 0.0105, 0.0105) (from the *_rec.log)" in format_scan_info(described)
    assert (f"slices: 12 files, tibia_rec00000000{suffix} .. tibia_rec00000011{suffix}; left out: "
            f"tibia_rec_spr{suffix}") in format_scan_info(described)
    # the folder above it (an animal's folder holding NRecon's output folder): the fix names the stack
    with pytest.raises(ScanReadError, match=r"point to the image stack it holds \(rec\)"):
        ctbone.read_scan(tmp_path)
    # one slice given instead of its folder: the fix names the folder
    with pytest.raises(ScanReadError, match=r"point to the folder holding the stack"):
        ctbone.read_scan(folder / f"tibia_rec00000003{suffix}")


def test_sixteen_bit_png_and_gray_rgb_pictures_keep_their_values(tmp_path):
    from PIL import Image

    deep = tmp_path / "png16"
    deep.mkdir()
    for i in range(3):
        Image.fromarray(np.full((4, 5), 1000 * (i + 1), np.uint16)).save(deep / f"s{i}.png")
    assert ctbone.read_scan(deep, spacing=0.01).array[:, 0, 0].tolist() == [1000, 2000, 3000]
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    for i in range(3):
        Image.fromarray(np.full((4, 5, 3), 7 * i, np.uint8)).save(rgb / f"s{i}.bmp")
    assert ctbone.read_scan(rgb, spacing=0.01).array[:, 0, 0].tolist() == [0, 7, 14]


def _pictures(folder, names, page):
    """``folder`` (made if missing) holding ``page`` saved under each of ``names``."""
    from PIL import Image

    folder.mkdir(exist_ok=True)
    for name in names:
        Image.fromarray(page).save(folder / name)
    return folder


def test_bad_picture_stacks_are_refused_naming_the_file(tmp_path):
    from PIL import Image

    from ctbone.errors import GeometryError, ScanReadError

    red = np.zeros((4, 5, 3), np.uint8)
    red[..., 0] = 200
    colour = _pictures(tmp_path / "colour", [f"s{i}.png" for i in range(3)], red)
    with pytest.raises(ScanReadError, match=r"s0\.png: colour picture"):
        ctbone.read_scan(colour, spacing=0.01)
    # no voxel size anywhere: the fix is named
    black = np.zeros((4, 5), np.uint8)
    bare = _pictures(tmp_path / "bare", [f"s{i}.bmp" for i in range(3)], black)
    with pytest.raises(GeometryError, match=r"bare: slice pictures .* carry no voxel size.*--spacing"):
        ctbone.read_scan(bare)
    # JPEG slices (lossy) are not read, and the error says what to export instead
    jpeg = _pictures(tmp_path / "jpeg", [f"s{i}.jpg" for i in range(3)], black)
    with pytest.raises(ScanReadError, match=r"JPEG pictures.*export the reconstruction as TIFF, BMP or PNG"):
        ctbone.read_scan(jpeg)
    # two numbered stacks in one folder: which one is the scan is not guessed
    _pictures(bare, [f"mask{i}.bmp" for i in range(3)], black)
    with pytest.raises(ScanReadError, match=r"more than one stack.*own folder"):
        ctbone.read_scan(bare, spacing=0.01)
    # a slice of another size
    odd = _nrecon_folder(tmp_path / "odd", [np.zeros((6, 7), np.uint8)] * 3)
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(odd / "tibia_rec00000003.bmp")
    with pytest.raises(ScanReadError, match=r"tibia_rec00000003\.bmp: image size \(6, 8\) differs"):
        ctbone.read_scan(odd)


def test_a_stack_with_a_slice_missing_from_its_numbering_is_refused(tmp_path):
    from ctbone.errors import GeometryError

    page = np.zeros((4, 5), np.uint8)
    # NRecon-like names: the animal's number stays, the slice number changes; the 6th slice lost in a copy
    gap = _pictures(tmp_path / "gap", [f"m12_rec{i:08d}.bmp" for i in (0, 1, 2, 3, 4, 6, 7, 8)], page)
    with pytest.raises(GeometryError, match=r"gap: 1 slice file\(s\) missing .*between m12_rec00000004\.bmp and "
                                            r"m12_rec00000006\.bmp.*restore"):
        ctbone.read_scan(gap, spacing=0.01)
    with pytest.raises(GeometryError, match="missing from the numbering"):  # the slab reader checks it too
        from ctbone.io.slabs import open_stack_slabs

        open_stack_slabs(gap, 0.01)
    # a sub-range of the reconstruction, or every other slice throughout, is taken as it is
    for name, numbers in (("range", range(120, 126)), ("even", range(0, 12, 2))):
        folder = _pictures(tmp_path / name, [f"s_{i}.tif" for i in numbers], page)
        assert ctbone.read_scan(folder, spacing=0.01).shape == (6, 4, 5)


def test_every_other_slice_with_the_logs_pixel_size_is_warned_about(tmp_path, caplog):
    # numbered in steps of 2 with the voxel size from the *_rec.log: the slices may be twice as far apart
    import logging

    from PIL import Image

    folder = _nrecon_folder(tmp_path / "every2", [np.zeros((4, 5), np.uint8)] * 3)
    for f in sorted(folder.glob("tibia_rec0*.bmp")):
        f.unlink()
    for i in range(0, 10, 2):
        Image.fromarray(np.zeros((4, 5), np.uint8)).save(folder / f"tibia_rec{i:08d}.bmp")
    with caplog.at_level(logging.WARNING, logger="ctbone"):
        vol = ctbone.read_scan(folder)
    assert vol.shape[0] == 5 and vol.spacing[0] == pytest.approx(0.0105)
    assert "numbered every 2" in caplog.text and "--spacing 0.021,0.0105,0.0105" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ctbone"):
        ctbone.read_scan(folder, spacing=(0.021, 0.0105, 0.0105))  # the voxel size given: nothing to warn
    assert "numbered every" not in caplog.text


def test_info_describes_a_stack_without_a_voxel_size(tmp_path, capsys):
    # `info` is where a user finds out what a folder holds: it describes the stack and names what is missing
    from ctbone.cli import main
    from ctbone.io import scan_info

    bare = _pictures(tmp_path / "bare", [f"s{i:03d}.png" for i in range(5)], np.full((4, 5), 7, np.uint8))
    info = scan_info(bare)
    assert info["geometry"]["shape_zyx"] == [5, 4, 5] and info["geometry"]["spacing_zyx_mm"] is None
    assert "carry no voxel size" in info["problem"] and info["stack"]["files"] == 5
    assert main(["info", str(bare)]) == 0
    out = capsys.readouterr().out
    assert "spacing (z, y, x) mm: unknown" in out and "PROBLEM:" in out and "--spacing" in out
    assert scan_info(bare, spacing=0.02)["problem"] is None


def test_a_dicom_export_with_a_preview_picture_stays_dicom(tmp_path):
    # scanner software leaves a preview picture beside the DICOM slices, whose names often carry no extension
    from PIL import Image

    from ctbone.io import write_dicom_series

    vol = Volume(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6), spacing=(0.02,) * 3, unit="HU")
    write_dicom_series(vol, tmp_path)
    for i, file in enumerate(sorted(tmp_path.glob("*.dcm"))):
        file.rename(tmp_path / f"IM{i:04d}")
    for name in ("preview.png", "thumb_0001.bmp", "thumb_0002.bmp"):
        Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / name)
    read = ctbone.read_scan(tmp_path)
    assert read.meta["format"] == "dicom" and read.shape == (4, 5, 6)


def test_rec_log_gives_the_slices_pixel_size_not_the_projections(tmp_path, caplog):
    # NRecon's *_rec.log repeats the acquisition's projection pixel size before its own [Reconstruction]
    # section; a reconstruction resized 2x has slices of twice that size
    from ctbone.io.bruker_log import read_rec_log

    (tmp_path / "m_rec.log").write_text(
        "[System]\r\nScanner=SkyScan1272\r\nCamera Pixel Size (um)=74.800\r\n[Acquisition]\r\n"
        "Image Pixel Size (um)=9.000000\r\nScaled Image Pixel Size (um)=9.000000\r\n[Reconstruction]\r\n"
        "Reconstruction Program=NRecon\r\nResult Image Width (pixels)=500\r\nResult Image Height (pixels)=500\r\n"
        "Pixel Size (um)=18.00000\r\n"
        "Minimum for CS to Image Conversion=0.000000\r\n")
    assert read_rec_log(tmp_path)["pixel_size_mm"] == pytest.approx(0.018)
    # slices of another size than the log describes (resized after the reconstruction?): read, with a warning
    import logging

    from PIL import Image

    for i in range(3):
        Image.fromarray(np.zeros((250, 250), np.uint8)).save(tmp_path / f"m_rec{i:08d}.bmp")
    with caplog.at_level(logging.WARNING, logger="ctbone"):
        vol = ctbone.read_scan(tmp_path)
    assert vol.spacing == pytest.approx((0.018,) * 3)
    assert any("describes 500 x 500 slices" in r.getMessage() and "250 x 250" in r.getMessage() for r in caplog.records)
    # an acquisition log alone: the projections' pixel size is the best there is
    (tmp_path / "m_rec.log").unlink()
    (tmp_path / "m.log").write_text("[Acquisition]\nImage Pixel Size (um)=9.5\n")
    assert read_rec_log(tmp_path)["pixel_size_mm"] == pytest.approx(0.0095)
    (tmp_path / "m.log").write_text("[Reconstruction]\nPixel Size (um)=0\n")
    from ctbone.errors import GeometryError

    with pytest.raises(GeometryError, match=r"m\.log: pixel size 0 um is not positive"):
        ctbone.read_scan(tmp_path)


def test_a_folder_of_bruker_projections_is_refused_with_where_the_slices_are(tmp_path):
    # the scanner's raw X-ray images (one TIFF per projection, with the acquisition log) are not a scan's slices
    import tifffile

    from ctbone.errors import ScanReadError

    for i in range(4):
        tifffile.imwrite(tmp_path / f"m7~00_{i:04d}.tif", np.zeros((12, 20), np.uint16))
    (tmp_path / "m7~00_.log").write_text("[System]\nScanner=SkyScan1276\n[Acquisition]\nNumber of Files=  4\n"
                                         "Number Of Rows= 12\nNumber Of Columns= 20\nImage Pixel Size (um)=9.0\n")
    rec = tmp_path / "m7_Rec"
    rec.mkdir()
    (rec / "m7_rec.log").write_text("[Reconstruction]\nPixel Size (um)=9.0\n")
    for reader in (ctbone.read_scan, lambda p: ctbone.open_scan(p, memory="slabs")):
        with pytest.raises(ScanReadError, match=r"Bruker projections \(the 12 x 20 X-ray images of m7~00_\.log\).*"
                                                r"m7_Rec holds one"):
            reader(tmp_path)
    # slices of another size beside the same acquisition log (copied along for its pixel size) are read
    other = tmp_path / "slices"
    other.mkdir()
    (other / "m7~00_.log").write_text((tmp_path / "m7~00_.log").read_text())
    for i in range(3):
        tifffile.imwrite(other / f"s{i}.tif", np.zeros((16, 16), np.uint8))
    assert ctbone.read_scan(other).shape == (3, 16, 16)


def test_multipage_tiff(tmp_path):
    import tifffile

    data = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    tifffile.imwrite(tmp_path / "stack.tif", data, photometric="minisblack")
    vol = ctbone.read_scan(tmp_path / "stack.tif", spacing=(0.1, 0.05, 0.05))
    np.testing.assert_array_equal(vol.array, data)
    assert vol.spacing == (0.1, 0.05, 0.05)


@pytest.mark.realdata
def test_real_mouse_femur_mhd(realdata):
    vol = ctbone.read_scan(realdata / "mouse_femur" / "mouse_femur2.mhd")
    assert vol.shape == (103, 49, 63)  # DimSize 63 49 103 is (x, y, z)
    assert vol.spacing == pytest.approx((0.05, 0.05, 0.05))
    assert vol.array.dtype == np.float32
    assert vol.array.min() == 0 and vol.array.max() == 152  # uint8 gray 0-152 (README)
    assert vol.unit == "raw"


@pytest.mark.realdata
def test_real_lhdl_tiff_folder(realdata):
    vol = ctbone.read_scan(realdata / "lhdl_trabecular" / "3155_D_4_bc", spacing=0.0195)
    assert vol.shape == (200, 200, 200)
    assert 0 <= vol.array.min() and vol.array.max() <= 255


@pytest.mark.realdata
def test_real_shrew_big_endian_nrrd_is_binary(realdata):
    vol = ctbone.read_scan(realdata / "shrew_trabecular" / "Shrew.nrrd")
    assert vol.shape == (115, 114, 114)
    assert vol.meta["is_binary"]
    assert set(np.unique(vol.array)) == {0.0, 255.0}
    assert 100 * (vol.array > 128).mean() == pytest.approx(29.35, abs=0.01)  # README: BV/TV 29.35 % by voxel count


def test_a_voxel_size_is_refused_for_a_scan_that_carries_its_own(tmp_path):
    import tifffile

    from ctbone.errors import ScanReadError
    from ctbone.io import scan_info

    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(Volume(np.zeros((5, 6, 7), np.float32), spacing=(0.02,) * 3, unit="raw").to_sitk(), str(path))
    for reader in (ctbone.read_scan, ctbone.open_scan, scan_info):
        with pytest.raises(ScanReadError, match=r"scan\.nii\.gz: a voxel size \(--spacing\) is only read for image stacks"):
            reader(path, spacing=0.01)
    assert ctbone.read_scan(path).spacing == pytest.approx((0.02,) * 3)
    stack = tmp_path / "stack"
    stack.mkdir()
    for i in range(3):
        tifffile.imwrite(stack / f"s{i}.tif", np.zeros((4, 5), np.uint8))
    assert ctbone.open_scan(stack, spacing=0.01).spacing == pytest.approx((0.01,) * 3)
