"""Scanco ISQ and AIM files: header, voxels, geometry and density calibration, refusals, slab reading, and the
phantom through `ctbone analyze` as an ISQ in mg HA/cm³.

The files are written by `scanco_files` to the layouts `ctbone.io.scanco` documents; ITK's Scanco reader
(itk-ioscanco 1.0.1) read such files with the same voxels, voxel size and calibration (docs/inputs.md)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scanco_files import vax_f_bytes, vax_g_bytes, write_aim, write_isq

import ctbone
from ctbone.calibrate import vendor_calibration
from ctbone.cli import EXIT_FAILED, main
from ctbone.errors import ScanReadError
from ctbone.io.scanco import read_scanco_header, vax_float

CALIBRATION = (365.712, -199.726, 0.4939)  # slope (mg HA/cm3 per 1/cm), intercept, mu of water (1/cm)


@pytest.fixture
def voxels():
    return np.random.default_rng(0).integers(-2813, 32767, size=(6, 5, 4)).astype(np.int16)


def test_vax_g_float_reads_the_vax_layout():
    # 1.0 in VAX G-float: sign 0, exponent 1025 (bias 1024, fraction 0.1b), so the first 16-bit word is 0x4010,
    # stored low byte first; 0.5 has exponent 1024 (0x4000); -2.0 sets the sign and exponent 1026 (0xC020)
    assert vax_float(b"\x10\x40" + bytes(6)) == 1.0
    assert vax_float(b"\x00\x40" + bytes(6)) == 0.5
    assert vax_float(b"\x20\xc0" + bytes(6)) == -2.0
    for value in (365.712, -199.726, 0.4939, 1603.51904):
        assert vax_float(vax_g_bytes(value)) == value


def test_isq_voxels_geometry_and_header(tmp_path, voxels):
    path = write_isq(tmp_path / "C0004255.ISQ", voxels, 10.5, calibration=CALIBRATION)
    volume = ctbone.read_scan(path)
    assert volume.array.dtype == np.float32 and np.array_equal(volume.array, voxels)  # x fastest, then y, then z
    # the voxel size is the field of view (whole µm) over the voxel count: 6 x 10.5 = 63 µm, but 5 x 10.5 is
    # stored as 52 µm (the header's rounding is the file's: ITK reads the same 10.4 µm)
    assert volume.spacing == pytest.approx((0.0105, 0.052 / 5, 0.0105))
    assert volume.unit == "raw"
    assert volume.meta["vendor"] == "SCANCO" and volume.meta["format"] == "isq"
    assert volume.meta["patient_name"] == "MOUSE 07" and volume.meta["measurement_index"] == 4255
    assert (volume.meta["energy_kv"], volume.meta["intensity_ua"]) == (70.0, 114.0)
    assert volume.meta["slice1_position_mm"] == 12.5


@pytest.mark.parametrize("layout", [{}, {"multiheader": False}, {"entry_before": 1}])
def test_density_calibration_of_the_extended_header(tmp_path, voxels, layout):
    volume = ctbone.read_scan(write_isq(tmp_path / "s.isq", voxels, 10.0, calibration=CALIBRATION, **layout))
    meta = volume.meta
    assert (meta["scanco_density_slope"], meta["scanco_density_intercept"], meta["scanco_mu_water"]) == CALIBRATION
    # as for Scanco's DICOM tags: mg HA/cm3 = value / mu_scaling x slope + intercept
    assert vendor_calibration(volume) == pytest.approx((365.712 / 8192, -199.726))
    assert "density calibration in the header" in meta["unit_reason"]


def test_without_calibration_the_values_stay_raw_and_say_how_to_calibrate(tmp_path, voxels):
    volume = ctbone.read_scan(write_isq(tmp_path / "s.isq", voxels, 10.0))
    assert "scanco_density_slope" not in volume.meta and vendor_calibration(volume) is None
    assert "--calibration" in volume.meta["unit_reason"]


def test_openvms_name_and_a_folder_holding_one_isq(tmp_path, voxels):
    (tmp_path / "scan").mkdir()
    write_isq(tmp_path / "scan" / "C0001234.ISQ;1", voxels, 10.0)
    (tmp_path / "scan" / "notes.txt").write_text("left tibia")
    assert np.array_equal(ctbone.read_scan(tmp_path / "scan" / "C0001234.ISQ;1").array, voxels)
    assert np.array_equal(ctbone.read_scan(tmp_path / "scan").array, voxels)  # the folder means its one volume


def test_a_measurement_folder_means_its_isq_beside_raw_data_and_scout_view(tmp_path, voxels):
    folder = tmp_path / "00000456"
    folder.mkdir()
    write_isq(folder / "C0000456.ISQ;1", voxels, 10.0)
    (folder / "C0000456.RSQ;1").write_bytes(bytes(2048))  # the projections
    (folder / "D0000456.RAD;1").write_bytes(bytes(1024))  # the scout view
    assert ctbone.read_scan(folder).meta["source"].endswith("C0000456.ISQ;1")
    write_isq(folder / "C0000457.ISQ;1", voxels, 10.0)  # two scans: the user must choose, and is told which
    with pytest.raises(ScanReadError, match="C0000456.ISQ;1, C0000457.ISQ;1"):
        ctbone.read_scan(folder)


def test_read_slab_by_slab_equals_in_memory(tmp_path, voxels):
    path = write_isq(tmp_path / "s.isq", voxels, 10.0, calibration=CALIBRATION)
    scan = ctbone.open_scan(path, memory="slabs")
    volume = ctbone.read_scan(path)
    assert not isinstance(scan, ctbone.Volume)
    assert np.array_equal(scan.read(2, 5, slice(1, 4), slice(0, 3)), volume.array[2:5, 1:4, 0:3])
    assert scan.spacing == volume.spacing and scan.unit == volume.unit
    assert scan.meta["scanco_density_slope"] == 365.712


def _header_with(path, at: int, value: int):
    data = bytearray(path.read_bytes())
    data[at:at + 4] = value.to_bytes(4, "little", signed=True)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,problem", [
    ("truncate", "truncated copy"),
    ("aim", "corrupt header"),
    ("garbage", "not a Scanco ISQ or AIM file"),
    ("short", "shorter than a Scanco ISQ header"),
    ("rad", r"scout view \(RAD\)"),
    ("dims", "not a plausible scan"),
    ("offset", "outside the file"),
])
def test_bad_isq_is_one_line_naming_the_file(tmp_path, voxels, capsys, damage, problem):
    path = write_isq(tmp_path / "bad.isq", voxels, 10.0)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:-10])
    elif damage == "aim":
        path.write_bytes(b"AIMDATA_V030   \0" + data[16:])
    elif damage == "garbage":
        path.write_bytes(b"\0" * 16 + data[16:])
    elif damage == "short":
        path.write_bytes(data[:100])
    elif damage == "rad":
        _header_with(path, 16, 9)
    elif damage == "dims":
        _header_with(path, 44, 0)
    elif damage == "offset":
        _header_with(path, 508, 2 ** 31 - 1)  # data 1 TB into a file of 1 kB: never allocated
    with pytest.raises(ScanReadError, match=problem):
        ctbone.read_scan(path)
    assert main(["info", str(path)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "bad.isq" in err and problem.replace("\\", "") in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_rsq_raw_data_is_refused(tmp_path, voxels, capsys):
    path = write_isq(tmp_path / "C0001.RSQ", voxels, 10.0)
    with pytest.raises(ScanReadError, match="projections, not reconstructed slices"):
        read_scanco_header(path)
    assert main(["info", str(path)]) == EXIT_FAILED
    assert "projections, not reconstructed slices" in capsys.readouterr().err


def test_info_shows_the_scan_and_its_calibration(tmp_path, voxels, capsys, monkeypatch):
    path = write_isq(tmp_path / "s.isq", voxels, 10.0, calibration=CALIBRATION)
    monkeypatch.setattr(ctbone.io, "read_scan", None)  # described from the header: the voxels are never read
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(isq)" in out and "shape (z, y, x): (6, 5, 4)" in out and "vendor: SCANCO" in out
    assert "density calibration (Scanco): mg HA/cm3 = value / 8192 x 365.712 - 199.726" in out
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["scanco"]["scanco_mu_scaling"] == 8192 and info["reading"]["slabs_possible"] is True


def test_phantom_as_a_scanco_isq_is_measured_in_mg_ha(tmp_path):
    # the end-to-end phantom (tests/test_end_to_end.py) as a Scanco scanner stores it: mu = mu_water (1 + HU/1000),
    # gray = mu x 8192; the header's calibration takes the analysis to mg HA/cm3, which must leave the geometry
    # metrics at the DICOM test's tolerances and put the bone's TMD where the calibration puts it
    from test_end_to_end import _truth_and_metrics, _write_phantom

    _write_phantom(tmp_path)
    hu = ctbone.read_scan(tmp_path / "ph" / "dicom").array
    mu_water, scaling, slope, intercept = 0.24, 8192, 1603.5, -391.2
    gray = np.rint(mu_water * (1 + hu / 1000.0) * scaling).astype(np.int16)
    (tmp_path / "isq").mkdir()
    isq = write_isq(tmp_path / "isq" / "C0000001.ISQ", gray, 30.0, mu_scaling=scaling,
                    calibration=(slope, intercept, mu_water))
    assert main(["analyze", str(isq), "-o", str(tmp_path / "out"), "--no-render", "-q"]) == 0
    truth, row, m = _truth_and_metrics(tmp_path)
    assert (row["input_format"], row["voxel_size_from"], row["image_unit"]) == ("isq", "header", "mgHA/cm3")
    assert m["cortical_defect_count"] == truth["cortical_defect_count"] == 2
    assert m["lytic_volume_mm3"] == pytest.approx(truth["lytic_volume_mm3"], rel=0.05)
    assert 0.0 < m["blastic_volume_mm3"] / truth["blastic_volume_mm3"] - 1 <= 0.25
    assert abs(m["ct_th_mm"] - truth["ct_th_mm"]) <= 0.03
    assert m["tv_mm3"] == pytest.approx(truth["tv_mm3"], rel=0.03)
    with open(tmp_path / "out" / "metrics.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    # the bone's mean density: the cortex at 1400 HU (PhantomSpec.cortical_hu) is 532 mg HA/cm3 by the header's
    # calibration; trabeculae (1000 HU) and partial volume pull the mean down (measured 507)
    cortex_mgha = mu_water * (1 + 1400.0 / 1000.0) * slope + intercept
    assert 0.9 * cortex_mgha <= float(row["tmd"]) <= cortex_mgha


# --- AIM ---------------------------------------------------------------------------------------------------

SCANCO_LOG = {"Patient Name": "MOUSE 11", "Index Measurement": "4301", "Mu_Scaling": "8192",
              "Density: unit": "mg HA/ccm", "Density: slope": "1.60351904E+03", "Density: intercept": "-3.91209015E+02",
              "HU: mu water": "0.24090"}


def test_vax_f_float_reads_the_vax_layout():
    # 1.0 as a VAX F-float: the word 0x4080 (sign 0, exponent 129, bias 128, fraction 0.1b), low byte first
    assert vax_float(b"\x80\x40\x00\x00") == 1.0
    assert vax_float(vax_f_bytes(0.0105)) == pytest.approx(0.0105, rel=1e-7)  # float32 precision


@pytest.mark.parametrize("version", ["020", "030"])
@pytest.mark.parametrize("dtype", ["int16", "uint8", "float32"])
def test_aim_voxels_geometry_and_log(tmp_path, voxels, version, dtype):
    data = (voxels % 200).astype(dtype)
    path = write_aim(tmp_path / "C0004301_GRAY.AIM;1", data, 10.5, version=version, position=(20, 30, 50),
                     log=SCANCO_LOG)
    volume = ctbone.read_scan(path)
    assert np.array_equal(volume.array, data.astype(np.float32)) and volume.unit == "raw"
    assert volume.spacing == pytest.approx((0.0105,) * 3, rel=1e-7)
    # the first voxel where it sat in the scan the AIM was cut from: position x voxel size
    assert volume.origin == pytest.approx((20 * 0.0105, 30 * 0.0105, 50 * 0.0105), rel=1e-6)
    meta = volume.meta
    assert meta["format"] == "aim" and meta["patient_name"] == "MOUSE 11" and meta["measurement_index"] == 4301
    assert (meta["scanco_density_slope"], meta["scanco_density_intercept"]) == (1603.51904, -391.209015)
    assert vendor_calibration(volume) == pytest.approx((1603.51904 / 8192, -391.209015))


def test_aim_with_the_identity_calibration_stays_raw(tmp_path, voxels):
    # ITK's writer fills the log with slope 1, intercept 0, mu-scaling 1: no calibration, not mg HA/cm3 = value
    log = {"Mu_Scaling": "1", "Density: slope": "1", "Density: intercept": "0", "HU: mu water": "0.7033"}
    volume = ctbone.read_scan(write_aim(tmp_path / "s.aim", voxels, 10.0, log=log))
    assert vendor_calibration(volume) is None and "--calibration" in volume.meta["unit_reason"]


def test_aim_calibration_without_mu_scaling_is_not_applied(tmp_path, voxels):
    log = {k: v for k, v in SCANCO_LOG.items() if k != "Mu_Scaling"}
    volume = ctbone.read_scan(write_aim(tmp_path / "s.aim", voxels, 10.0, log=log))
    assert vendor_calibration(volume) is None and "no usable density calibration" in volume.meta["unit_reason"]


@pytest.mark.parametrize("version", ["020", "030"])
def test_aim_read_slab_by_slab_equals_in_memory(tmp_path, voxels, version):
    path = write_aim(tmp_path / "s.aim", voxels, 10.0, version=version, position=(3, 4, 5), log=SCANCO_LOG)
    scan, volume = ctbone.open_scan(path, memory="slabs"), ctbone.read_scan(path)
    assert np.array_equal(scan.read(1, 4), volume.array[1:4])
    assert scan.origin == volume.origin and scan.spacing == volume.spacing


@pytest.mark.parametrize("type_code,problem", [(0x00060001, "bit-packed AIM mask"),
                                               (0x00120003, "not one ctbone reads")])
def test_bit_packed_masks_and_unknown_types_are_refused(tmp_path, voxels, type_code, problem):
    with pytest.raises(ScanReadError, match=problem):
        ctbone.read_scan(write_aim(tmp_path / "seg.aim", voxels, 10.0, type_code=type_code))


def _masks(seed):
    """Masks whose runs cover the run-length cases: runs longer than 254 and 255 voxels, a volume starting
    with the mask's second value (an empty first run), one value only, and a labelled (several-valued) mask."""
    rng = np.random.default_rng(seed)
    long_rows = np.zeros((3, 4, 700), np.int8)
    long_rows[:, :, 254:509] = 127  # a run of exactly 255 voxels, after one of 254
    starts_inside = np.full((2, 3, 5), 127, np.int8)
    starts_inside[1, 2, 4] = 0
    return {"random": (rng.random((7, 9, 11)) < 0.4).astype(np.int8) * np.int8(127), "long rows": long_rows,
            "starts inside": starts_inside, "empty": np.zeros((2, 2, 3), np.int8),
            "labels": rng.integers(-128, 128, (4, 5, 6)).astype(np.int8)}


@pytest.mark.parametrize("version", ["020", "030"])
@pytest.mark.parametrize("compression", ["run-length bits", "run-length bytes"])
def test_run_length_compressed_masks_are_decoded(tmp_path, version, compression):
    for name, mask in _masks(int(version)).items():
        if compression == "run-length bits" and len(np.unique(mask)) > 2:
            continue  # a bit mask holds two values
        path = write_aim(tmp_path / "seg.aim", mask, 10.0, version=version, position=(3, 4, 5), log=SCANCO_LOG,
                         compression=compression)
        volume = ctbone.read_scan(path)
        assert np.array_equal(volume.array, mask.astype(np.float32)), name
        assert volume.origin == pytest.approx((0.03, 0.04, 0.05)) and volume.spacing == pytest.approx((0.01,) * 3)
        # the log's calibration belongs to the gray scan the mask was made from: not applied to labels
        assert volume.unit == "raw" and "scanco_density_slope" not in volume.meta, name
        assert "segmented mask" in volume.meta["unit_reason"]
        scan = ctbone.open_scan(path, memory="slabs")
        assert np.array_equal(scan.read(0, mask.shape[0]), volume.array), name


@pytest.mark.parametrize("version", ["020", "030"])
def test_a_cut_or_short_run_length_stream_is_one_line(tmp_path, version, capsys):
    mask = _masks(0)["random"]
    path = write_aim(tmp_path / "seg.aim", mask, 10.0, version=version, compression="run-length bytes")
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # cut: the stream's length field says more than the file holds
    with pytest.raises(ScanReadError, match="truncated copy"):
        ctbone.read_scan(path)
    # runs for fewer voxels than the header's counts (a stream with its tail pairs zeroed)
    path.write_bytes(data[:-4] + bytes(4))
    with pytest.raises(ScanReadError, match=r"hold \d+ voxels, the header 693"):
        ctbone.read_scan(path)
    assert main(["info", str(path)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seg.aim" in err


def test_a_compressed_mask_measures_as_the_same_mask_uncompressed(tmp_path):
    from ctbone.phantoms import PhantomSpec, make_phantom

    volume, _ = make_phantom(PhantomSpec(voxel_mm=0.03, length_mm=1.5, metaphysis_length_mm=0, noise_hu=0), seed=0)
    mask = (volume.array > 1000).astype(np.int8) * np.int8(127)  # IPL's segmented bone: 127 on 0
    spacing_um = volume.spacing[0] * 1000
    plain = ctbone.read_scan(write_aim(tmp_path / "plain.aim", mask.astype(np.uint8), spacing_um))
    packed = ctbone.read_scan(write_aim(tmp_path / "seg.aim", mask, spacing_um, compression="run-length bits"))
    assert packed.meta["is_binary"] and np.array_equal(packed.array, plain.array)
    metrics, expected = (ctbone.analyze(v, render=False).metrics for v in (packed, plain))
    assert metrics.keys() == expected.keys()
    for name, value in metrics.items():
        assert value == expected[name] or (value != value and expected[name] != expected[name]), name
    assert np.isnan(metrics["tmd"])  # a mask's values are labels: no density
    assert metrics["bv_mm3"] == pytest.approx(np.count_nonzero(mask) * np.prod(volume.spacing), rel=0.02)


def test_info_says_a_compressed_aim_is_a_mask(tmp_path, capsys):
    path = write_aim(tmp_path / "seg.aim", _masks(0)["random"], 10.0, log=SCANCO_LOG, compression="run-length bits")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "segmented mask (AIM, run-length bits)" in out and "density calibration" not in out


def test_aim_with_a_corrupt_pre_header_or_cut_short(tmp_path, voxels):
    path = write_aim(tmp_path / "s.aim", voxels, 10.0, version="020")
    data = path.read_bytes()
    path.write_bytes(data[:-1])
    with pytest.raises(ScanReadError, match="truncated copy"):
        ctbone.read_scan(path)
    path.write_bytes(data[:4] + (7).to_bytes(4, "little") + data[8:])  # the image structure 7 bytes long
    with pytest.raises(ScanReadError, match="not a Scanco ISQ or AIM file"):
        ctbone.read_scan(path)
    path.write_bytes(data[:12] + (99).to_bytes(4, "little") + data[16:])  # 99 bytes of data declared
    with pytest.raises(ScanReadError, match="corrupt header"):
        ctbone.read_scan(path)
    path.write_bytes(data[:8] + (2 ** 31 - 1).to_bytes(4, "little") + data[12:])  # a 2 GB log in a 1 kB file
    with pytest.raises(ScanReadError, match="do not fit the file"):
        ctbone.read_scan(path)


def test_corrupt_counts_or_voxel_size_are_one_line_errors(tmp_path, voxels):
    # counts whose product overflows a 64-bit integer (it would wrap to a small number), and a NaN voxel size
    path = write_isq(tmp_path / "big.isq", voxels, 10.0)
    for i in range(3):
        _header_with(path, 44 + 4 * i, 2 ** 21 + 1)
    with pytest.raises(ScanReadError, match="not a plausible scan"):
        ctbone.read_scan(path)
    aim = write_aim(tmp_path / "nan.aim", voxels, 10.0, version="020")
    data = bytearray(aim.read_bytes())
    data[20 + 108:20 + 112] = b"\xff\x7f\xff\xff"  # the x voxel size: a VAX bit pattern that reads as NaN
    aim.write_bytes(bytes(data))
    with pytest.raises(ScanReadError, match="not a plausible scan"):
        ctbone.read_scan(aim)
