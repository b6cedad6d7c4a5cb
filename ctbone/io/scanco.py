"""Scanco's own files: ISQ (the scanner's reconstructed volume) and AIM (a volume processed in Scanco's IPL).

Scanners: µCT 35/40/45/50, vivaCT 40/80, XtremeCT. Both formats hold a header, then the voxels uncompressed,
little-endian, x fastest, then y, then z (slice by slice), so they are memory-mapped (read in memory or slab by
slab alike); only IPL's run-length compressed AIM masks are decoded (`decode_run_lengths`).

* **ISQ**: a 512-byte header (``CTDATA-HEADER_V1``) with the voxel counts, the field of view in µm (voxel size
  = field / count), the µ-scaling (gray value = µ × µ-scaling, µ the linear attenuation in 1/cm) and, in the
  extended header's "Calibration" block, the density calibration (mg HA/cm³ = µ × slope + intercept) and µ of
  water; int16 voxels.
* **AIM** (version 020: 32-bit header integers; 030: ``AIMDATA_V030`` and 64-bit integers): a pre-header
  giving the lengths of the image structure, the processing log and the data; the structure gives the data
  type, the position of the volume's first voxel in the original scan, the voxel counts and size; the
  processing log (text lines "key  value") holds the µ-scaling and the density calibration. Uncompressed
  gray-value types are read (int8/uint8/int16/uint16/int32/float32), and the run-length compressed masks IPL
  writes for segmentations (decoded in memory: a mask is one byte a voxel); bit-packed masks are refused.

ctbone keeps the native gray values (unit "raw") and records the calibration as the Scanco DICOM tags are
recorded (``scanco_mu_scaling``, ``scanco_density_slope``, ...), so `calibrate.vendor_calibration` takes the
analysis to mg HA/cm³ as the vendor's software does.

The layouts are the ones ITK's ScancoImageIO (and vtk-dicom's vtkScancoCTReader) decode; ctbone's tests check
them on files written to those layouts, and they were checked against ITK's reader and writer (docs/inputs.md).
Floating-point header fields are VAX floats: 16-bit words in order, each word's two bytes swapped, and an
exponent bias that makes the IEEE reading 4× too large.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ScanReadError

ISQ_MAGIC = b"CTDATA-HEADER_V1"
AIM030_MAGIC = b"AIMDATA_V030"
BLOCK_BYTES = 512
# names from the scanner's OpenVMS file system keep their version: C0004255.ISQ;1
_SCANCO_NAME = re.compile(r"\.(isq|rsq|rad|aim)(;\d+)?$", re.IGNORECASE)
MAX_VOXELS = 6_000_000_000
# AIM data types: the uncompressed ones, memory-mapped
AIM_TYPES = {0x00010001: "i1", 0x00160001: "u1", 0x00020002: "<i2", 0x00170002: "<u2", 0x00030004: "<i4",
             0x001A0004: "<f4"}
# the run-length compressed masks of IPL's segmentations, decoded to signed bytes (IPL's char)
AIM_RUN_LENGTH = {0x00150001: "run-length bits", 0x00080002: "run-length bytes"}
AIM_PACKED_BITS = 0x00060001
# a run-length-bits count meaning "254 voxels, and the same value goes on" (any other count switches value after)
RUN_GOES_ON = 255


@dataclass(frozen=True)
class ScancoHeader:
    """What an ISQ or AIM header says: the voxels' place in the file and the scan's geometry (mm, arrays in
    (z, y, x) order, the origin in (x, y, z) as on `Volume`) and calibration."""

    format: str  # "isq" or "aim"
    shape_zyx: tuple[int, int, int]
    spacing_zyx_mm: tuple[float, float, float]
    data_offset_bytes: int
    dtype: str = "<i2"
    origin_xyz_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mu_scaling: float | None = None
    density_slope: float | None = None  # mg HA/cm³ per µ (1/cm), as the DICOM tag (0029,1004)
    density_intercept: float | None = None
    mu_water: float | None = None
    density_unit: str = ""
    about: dict = field(default_factory=dict)  # patient, measurement, energy, ... (for meta)
    compression: str = ""  # "", or an AIM_RUN_LENGTH name: the data is a compressed stream, not the voxels
    size_field_bytes: int = 4  # a compressed stream starts with its length: 4 bytes in AIM 020, 8 in 030

    def meta(self) -> dict:
        """The Volume meta of this scan: the Scanco fields under the names the DICOM reader gives them."""
        scanco = {"scanco_mu_scaling": self.mu_scaling, "scanco_density_slope": self.density_slope,
                  "scanco_density_intercept": self.density_intercept, "scanco_mu_water": self.mu_water}
        return {"vendor": "SCANCO", "format": self.format, "series_uid": "", "modality": "CT", **self.about,
                **{k: v for k, v in scanco.items() if v is not None}, "unit_reason": self.unit_reason()}

    def unit_reason(self) -> str:
        if self.compression:
            return f"a segmented mask (AIM, {self.compression}): its values are labels, not densities"
        scaling = f"µ × {self.mu_scaling:g}" if self.mu_scaling else "µ × µ-scaling"
        if self.density_slope is None or not self.mu_scaling:  # µ-scaling unknown: values cannot be turned into µ
            return (f"Scanco native values ({scaling}); no usable density calibration in the header. Potential fix: "
                    "--calibration SLOPE,INTERCEPT")
        sign = "-" if self.density_intercept < 0 else "+"
        unit = self.density_unit or "mg HA/ccm"
        return (f"Scanco native values ({scaling}); density calibration in the header ({unit} = "
                f"µ × {self.density_slope:.6g} {sign} {abs(self.density_intercept):.6g})")


def is_scanco(path) -> bool:
    """True for a file named like a Scanco ISQ or AIM (``*.isq``, ``*.AIM;2``, ...; RSQ raw data and RAD scout
    views too, to be refused by name on reading)."""
    path = Path(path)
    return path.is_file() and bool(_SCANCO_NAME.search(path.name))


def scanco_kind(path) -> str:
    """"isq", "aim", "rsq", "rad" by the file's name, "" for other names."""
    match = _SCANCO_NAME.search(Path(path).name)
    return match.group(1).lower() if match else ""


def vax_float(raw: bytes) -> float:
    """A VAX float as Scanco headers store it: F-float (4 bytes) or G-float (8 bytes), as a Python float."""
    swapped = bytes(raw[i ^ 1] for i in range(len(raw)))  # each 16-bit word's bytes swapped: IEEE big-endian layout
    return float(np.frombuffer(swapped, ">f8" if len(raw) == 8 else ">f4")[0]) / 4.0


def _int(header: bytes, at: int) -> int:
    return int.from_bytes(header[at:at + 4], "little", signed=True)


def _text(header: bytes, at: int, length: int) -> str:
    return header[at:at + length].split(b"\0")[0].decode("latin-1").strip()


def _scout_view(path: Path) -> ScanReadError:
    """The refusal of a RAD scout view, known by its name or by an ISQ header's data type."""
    return ScanReadError(f"{path}: a Scanco scout view (RAD), not a 3-D scan. Potential fix: point to the scan's ISQ "
                         "file.")


def read_scanco_header(path) -> ScancoHeader:
    """Parse an ISQ or AIM header; `ScanReadError` naming the file when it is not one ctbone can read."""
    path = Path(path)
    kind = scanco_kind(path)
    if kind == "rad":
        raise _scout_view(path)
    if kind == "rsq":
        raise ScanReadError(f"{path}: a Scanco raw-data file (RSQ: projections, not reconstructed slices). "
                            "Potential fix: point to the reconstructed ISQ file.")
    with open(path, "rb") as fh:
        head = fh.read(BLOCK_BYTES)
        if head.startswith(ISQ_MAGIC):
            header = _isq_header(path, head, fh)
        elif head.startswith(AIM030_MAGIC) or head[:8] == struct.pack("<2i", 20, 140):
            header = _aim_header(path, head, fh)
        else:
            raise ScanReadError(f"{path}: not a Scanco ISQ or AIM file ({len(head)} bytes, no ISQ or AIM header): "
                                "truncated or another format. Potential fix: export the scan from the Scanco "
                                "software as ISQ or DICOM.")
    counts = header.shape_zyx
    # Python integers: a corrupt count would overflow numpy's int64 product and pass as small
    if (min(counts) < 1 or math.prod(counts) > MAX_VOXELS
            or not all(math.isfinite(s) and s > 0 for s in header.spacing_zyx_mm)):
        raise ScanReadError(f"{path}: the header declares {counts[::-1]} voxels (x, y, z) of "
                            f"{header.spacing_zyx_mm[::-1]} mm, not a plausible scan: corrupt header.")
    return header


def _isq_header(path: Path, head: bytes, fh) -> ScancoHeader:
    if len(head) < BLOCK_BYTES:
        raise ScanReadError(f"{path}: {len(head)} bytes, shorter than a Scanco ISQ header (512 bytes): truncated.")
    counts_xyz = [_int(head, 44 + 4 * i) for i in range(3)]
    field_um_xyz = [_int(head, 56 + 4 * i) for i in range(3)]
    if _int(head, 16) == 9 or field_um_xyz[2] == 0:  # data type 9: a RAD scout view renamed
        raise _scout_view(path)
    data_offset = (_int(head, 508) + 1) * BLOCK_BYTES
    size = path.stat().st_size
    if not BLOCK_BYTES <= data_offset <= size:
        raise ScanReadError(f"{path}: its ISQ header puts the data at byte {data_offset}, outside the file's {size} "
                            "bytes: corrupt header or truncated copy.")
    extended = fh.read(data_offset - BLOCK_BYTES)
    spacing_xyz = [f / n / 1000.0 if n > 0 else 0.0 for f, n in zip(field_um_xyz, counts_xyz)]
    about = {"patient_name": _text(head, 128, 40), "patient_index": _int(head, 28),
             "measurement_index": _int(head, 112), "energy_kv": _int(head, 168) / 1000.0,
             "intensity_ua": float(_int(head, 172)), "slice1_position_mm": _int(head, 76) / 1000.0}
    return ScancoHeader("isq", shape_zyx=tuple(counts_xyz[::-1]), spacing_zyx_mm=tuple(spacing_xyz[::-1]),
                        data_offset_bytes=data_offset, mu_scaling=float(_int(head, 88)), about=about,
                        **_isq_calibration(head + extended))


def _isq_calibration(header: bytes) -> dict:
    """The density calibration of an ISQ's extended header, {} when it has none.

    Blocks after the first: an optional "MultiHeader" block, then a directory of up to four 128-byte entries
    (name at +8, length in blocks at +24) naming the blocks that follow in order; "Calibration" holds the
    density unit at +648 and slope, intercept and µ of water as G-floats at +664, +672 and +688."""
    if len(header) < 4 * BLOCK_BYTES:
        return {}
    directory, block = BLOCK_BYTES, 2
    if header[directory + 8:directory + 24].startswith(b"MultiHeader"):
        directory, block = directory + BLOCK_BYTES, block + 1
    for entry in range(4):
        at = directory + 128 * entry
        name, size = header[at + 8:at + 24], _int(header, at + 24)
        if size < 0 or (block + size) * BLOCK_BYTES > len(header):
            return {}
        if name.startswith(b"Calibration") and size >= 2:
            cal = header[block * BLOCK_BYTES:(block + size) * BLOCK_BYTES]
            slope, intercept, mu_water = (vax_float(cal[i:i + 8]) for i in (664, 672, 688))
            return _calibration(slope, intercept, mu_water, _text(cal, 648, 16))
        block += size
    return {}


def _calibration(slope, intercept, mu_water, unit: str) -> dict:
    """The calibration fields, {} when they hold none (missing, not finite, or the identity some writers put)."""
    if slope is None or intercept is None or not (np.isfinite(slope) and slope > 0 and np.isfinite(intercept)):
        return {}
    if (slope, intercept) == (1.0, 0.0):
        return {}
    mu_water = mu_water if mu_water is not None and np.isfinite(mu_water) and mu_water > 0 else None
    return {"density_slope": slope, "density_intercept": intercept, "mu_water": mu_water, "density_unit": unit}


def _aim_header(path: Path, head: bytes, fh) -> ScancoHeader:
    v030 = head.startswith(AIM030_MAGIC)
    start, int_format = (16, "<5q") if v030 else (0, "<5i")
    if len(head) < start + struct.calcsize(int_format):
        raise ScanReadError(f"{path}: {len(head)} bytes, shorter than a Scanco AIM header: truncated.")
    pre_len, struct_len, log_len, data_len, _ = struct.unpack_from(int_format, head, start)
    size = path.stat().st_size
    if (pre_len != struct.calcsize(int_format) or struct_len < (224 if v030 else 140) or log_len < 0
            or start + pre_len + struct_len + log_len > size):
        raise ScanReadError(f"{path}: its AIM pre-header declares lengths {pre_len}, {struct_len}, {log_len} that "
                            f"do not fit the file's {size} bytes: corrupt header or truncated copy.")
    fh.seek(0)
    header = fh.read(start + pre_len + struct_len + log_len)
    at = start + pre_len  # the image structure
    if v030:  # version, id, reference, type (4 bytes each), then 64-bit triplets; voxel size in 1e-6 mm
        data_type = _int(header, at + 12)
        position, counts = (struct.unpack_from("<3q", header, at + o) for o in (16, 40))
        spacing_xyz = [v * 1e-6 for v in struct.unpack_from("<3q", header, at + 184)]
    else:  # version, log, data, id, reference, type (4 bytes each), then 32-bit triplets; F-float voxel size
        data_type = _int(header, at + 20)
        position, counts = (struct.unpack_from("<3i", header, at + o) for o in (24, 36))
        spacing_xyz = [vax_float(header[at + 108 + 4 * i:at + 112 + 4 * i]) for i in range(3)]
    if data_type == AIM_PACKED_BITS:
        raise ScanReadError(f"{path}: a bit-packed AIM mask (type 0x00060001), which ctbone does not read: no "
                            "description of its bit layout could be checked. Potential fix: save the mask from IPL "
                            "uncompressed or run-length compressed, or point to the scan's ISQ or gray-value AIM.")
    if data_type not in AIM_TYPES and data_type not in AIM_RUN_LENGTH:
        raise ScanReadError(f"{path}: AIM data type 0x{data_type & 0xFFFFFFFF:08x} is not one ctbone reads "
                            "(int8/uint8/int16/uint16/int32/float32, run-length masks). Potential fix: export the scan "
                            "as ISQ or DICOM.")
    compression = AIM_RUN_LENGTH.get(data_type, "")
    dtype = "i1" if compression else AIM_TYPES[data_type]
    n_bytes = math.prod(counts) * np.dtype(dtype).itemsize
    # (more is let be: the voxels are read from where the header puts them; a compressed stream is checked on decoding)
    if not compression and 0 < data_len < n_bytes:
        raise ScanReadError(f"{path}: its AIM header declares {data_len} bytes of data for {list(counts)} voxels of "
                            f"{np.dtype(dtype).itemsize} bytes: corrupt header.")
    log = _aim_log(header[at + struct_len:at + struct_len + log_len])
    about = {"patient_name": log.get("Patient Name", ""), "patient_index": _log_int(log, "Index Patient"),
             "measurement_index": _log_int(log, "Index Measurement"),
             "energy_kv": (_log_number(log, "Energy [V]") or 0.0) / 1000.0,
             "intensity_ua": _log_number(log, "Intensity [uA]"), "position_voxels_xyz": list(position)}
    # a mask's log keeps the gray scan's calibration, but its values are labels: none applies to them
    calibration = {} if compression else _calibration(
        _log_number(log, "Density: slope"), _log_number(log, "Density: intercept"), _log_number(log, "HU: mu water"),
        log.get("Density: unit", ""))
    return ScancoHeader("aim", shape_zyx=tuple(counts[::-1]), spacing_zyx_mm=tuple(spacing_xyz[::-1]),
                        data_offset_bytes=at + struct_len + log_len, dtype=dtype,
                        # the volume's first voxel where it sat in the scan it was cut from
                        origin_xyz_mm=tuple(float(p * s) for p, s in zip(position, spacing_xyz)),
                        mu_scaling=None if compression else _log_number(log, "Mu_Scaling"), about=about,
                        compression=compression, size_field_bytes=8 if v030 else 4, **calibration)


def _aim_log(text: bytes) -> dict[str, str]:
    """The processing log's "key  value" lines (key and value apart by two or more spaces; "!" starts a comment)."""
    entries = {}
    for line in text.split(b"\0")[0].decode("latin-1").splitlines():
        key, sep, value = line.partition("  ")
        if sep and key.strip() and not line.startswith("!"):
            entries.setdefault(key.strip(), value.strip())
    return entries


def _log_number(log: dict, key: str) -> float | None:
    try:
        return float(log[key].split()[0])
    except (KeyError, IndexError, ValueError):
        return None


def _log_int(log: dict, key: str) -> int | None:
    number = _log_number(log, key)
    return None if number is None else int(number)


def scanco_voxels(path, header: ScancoHeader | None = None) -> np.ndarray:
    """The file's voxels, (z, y, x): a read-only memory map, or for a run-length compressed AIM the decoded
    int8 array; `ScanReadError` when the file is too short or its stream does not hold the voxels."""
    path = Path(path)
    header = header or read_scanco_header(path)
    if header.compression:
        return decode_run_lengths(_compressed_stream(path, header), header.compression,
                                  math.prod(header.shape_zyx), path).reshape(header.shape_zyx)
    n_bytes = math.prod(header.shape_zyx) * np.dtype(header.dtype).itemsize
    size = path.stat().st_size
    if size < header.data_offset_bytes + n_bytes:
        raise ScanReadError(f"{path}: the {header.format.upper()} header declares {header.shape_zyx[::-1]} voxels "
                            f"(x, y, z: {n_bytes} bytes from byte {header.data_offset_bytes}) but the file has {size} "
                            "bytes: truncated copy. Potential fix: copy the file again from the scanner.")
    return np.memmap(path, dtype=header.dtype, mode="r", offset=header.data_offset_bytes, shape=header.shape_zyx)


def _compressed_stream(path: Path, header: ScancoHeader) -> bytes:
    """A compressed AIM's data after its length field (the length counts the field itself)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(header.data_offset_bytes)
        field_bytes = fh.read(header.size_field_bytes)
        if len(field_bytes) < header.size_field_bytes:
            raise ScanReadError(f"{path}: the compressed AIM ends before its data: truncated copy. Potential fix: "
                                "copy the file again.")
        length = int.from_bytes(field_bytes, "little")
        if length < header.size_field_bytes or header.data_offset_bytes + length > size:
            raise ScanReadError(f"{path}: its compressed data declares {length} bytes from byte "
                                f"{header.data_offset_bytes} but the file has {size}: truncated copy or corrupt "
                                "header. Potential fix: copy the file again.")
        return fh.read(length - header.size_field_bytes)


def decode_run_lengths(stream: bytes, compression: str, n_voxels: int, source="the AIM") -> np.ndarray:
    """The first ``n_voxels`` voxels (flat int8, IPL's signed char) of a run-length compressed AIM stream.

    * "run-length bytes": (count, value) byte pairs, each ``count`` voxels of ``value``.
    * "run-length bits": two values, then one byte per run: ``count`` voxels of the current value, after which
      the other value takes over, except after a count of 255, which stands for 254 voxels of the value that
      then goes on (so a run of any length, and a run of 0 to start with the second value, can be written).

    The layouts are those ITK's ScancoImageIO decodes (checked against it, docs/inputs.md). A stream holding
    fewer voxels is refused; runs past ``n_voxels`` are ignored, as ITK does.
    """
    data = np.frombuffer(stream, np.uint8)
    if compression == "run-length bytes":
        pairs = data[: data.size // 2 * 2].reshape(-1, 2)
        counts, values = pairs[:, 0], pairs[:, 1].view(np.int8)
    elif compression == "run-length bits":
        if data.size < 2:
            raise ScanReadError(f"{source}: its run-length data is {data.size} bytes long, without the mask's two "
                                "values: corrupt file.")
        pair, runs = data[:2].view(np.int8), data[2:]
        # whether an odd number of switches came before each run: the second value then (a byte a run)
        second = np.concatenate(([False], np.logical_xor.accumulate(runs[:-1] != RUN_GOES_ON)))
        counts = np.where(runs == RUN_GOES_ON, np.uint8(RUN_GOES_ON - 1), runs)
        values = np.where(second, pair[1], pair[0])
    else:
        raise ValueError(f"unknown AIM compression {compression!r}")
    total = int(counts.sum(dtype=np.int64))
    if total < n_voxels:
        raise ScanReadError(f"{source}: its {compression} hold {total} voxels, the header {n_voxels}: truncated or "
                            "corrupt file. Potential fix: copy the file again, or save the mask from IPL again.")
    return np.repeat(values, counts)[:n_voxels]


def read_scanco(path):
    """A Scanco ISQ or AIM file as a float32 `Volume` of native gray values, its density calibration in ``meta``."""
    from ..volume import Volume
    from .formats import _is_binary

    path = Path(path)
    header = read_scanco_header(path)
    array = np.array(scanco_voxels(path, header), dtype=np.float32)
    return Volume(array, spacing=header.spacing_zyx_mm, origin=header.origin_xyz_mm, unit="raw",
                  meta={"source": str(path), **header.meta(), "is_binary": _is_binary(array)})


def open_scanco_slabs(path, header: ScancoHeader | None = None):
    """A Scanco ISQ or AIM memory-mapped, read slab by slab (values and geometry equal to `read_scanco`'s);
    ``header``: its `read_scanco_header`, when the caller has it already."""
    from .slabs import ArraySlabs

    path = Path(path)
    header = header or read_scanco_header(path)
    # is_binary needs every voxel: the slab segmentation's first pass sets it
    meta = {"source": str(path), **header.meta(), "is_binary": False, "read": "slab by slab"}
    return ArraySlabs(scanco_voxels(path, header), spacing=header.spacing_zyx_mm, origin=header.origin_xyz_mm,
                      unit="raw", meta=meta)
