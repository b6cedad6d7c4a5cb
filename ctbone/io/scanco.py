"""Scanco ISQ files: the scanner's own reconstructed volumes (µCT 35/40/45/50, vivaCT 40/80, XtremeCT).

An ISQ file is a 512-byte header, optional extended header blocks, then the voxels as little-endian int16,
x fastest, then y, then z (slice by slice). The header says the voxel counts, the field of view in µm
(voxel size = field / count), the µ-scaling (gray value = µ × µ-scaling, µ the linear attenuation in 1/cm)
and, in its "Calibration" block, the density calibration (mg HA/cm³ = µ × slope + intercept) and µ of water.
ctbone keeps the native gray values (unit "raw") and records the calibration as the Scanco DICOM tags are
recorded (``scanco_mu_scaling``, ``scanco_density_slope``, ...), so `calibrate.vendor_calibration` takes the
analysis to mg HA/cm³ as the vendor's software does.

The layout is the one ITK's ScancoImageIO and vtk-dicom's vtkScancoCTReader decode (written by D. Gobbi from real
files); ctbone's tests check it on files written to that layout, and it was checked once against ITK's reader on
those files (docs/formats.md). Floating-point header fields are VAX G-floats: the four 16-bit words in order,
each word's two bytes swapped, and an exponent bias that makes the IEEE reading 4× too large.

AIM files (Scanco's processed volumes, often run-length compressed masks) and RAD scout views are not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ScanReadError

ISQ_MAGIC = b"CTDATA-HEADER_V1"
AIM_MAGIC = b"AIMDATA_V030"
HEADER_BYTES = 512
BLOCK_BYTES = 512
# ISQ names from the scanner's OpenVMS file system keep their version: C0004255.ISQ;1
_ISQ_NAME = re.compile(r"\.(isq|rsq)(;\d+)?$", re.IGNORECASE)
_RAD_NAME = re.compile(r"\.rad(;\d+)?$", re.IGNORECASE)
MAX_VOXELS = 6_000_000_000


@dataclass(frozen=True)
class IsqHeader:
    """What an ISQ header says (lengths in mm, the voxel counts in array order)."""

    shape_zyx: tuple[int, int, int]
    spacing_zyx_mm: tuple[float, float, float]
    data_offset_bytes: int
    mu_scaling: int
    patient_name: str
    patient_index: int
    measurement_index: int
    energy_kv: float
    intensity_ua: float
    slice1_position_mm: float
    density_slope: float | None = None  # mg HA/cm³ per µ (1/cm), as the DICOM tag (0029,1004)
    density_intercept: float | None = None
    mu_water: float | None = None
    density_unit: str = ""

    def meta(self) -> dict:
        """The Volume meta of this scan: the Scanco fields under the names the DICOM reader uses."""
        scanco = {"scanco_mu_scaling": self.mu_scaling, "scanco_density_slope": self.density_slope,
                  "scanco_density_intercept": self.density_intercept, "scanco_mu_water": self.mu_water}
        return {"vendor": "SCANCO", "format": "isq", "series_uid": "", "modality": "CT",
                "patient_name": self.patient_name, "patient_index": self.patient_index,
                "measurement_index": self.measurement_index, "energy_kv": self.energy_kv,
                "intensity_ua": self.intensity_ua, "slice1_position_mm": self.slice1_position_mm,
                **{k: v for k, v in scanco.items() if v is not None}}


def is_isq(path) -> bool:
    """True for a file named like a Scanco ISQ (``*.isq``, ``*.ISQ;1``; RSQ raw sinograms are refused on reading)."""
    path = Path(path)
    return path.is_file() and bool(_ISQ_NAME.search(path.name) or _RAD_NAME.search(path.name))


def vax_g_float(raw: bytes) -> float:
    """A VAX G-float (8 bytes as Scanco headers store it) as a Python float."""
    swapped = bytes(raw[i ^ 1] for i in range(8))  # each 16-bit word's bytes swapped -> big-endian IEEE layout
    return float(np.frombuffer(swapped, ">f8")[0]) / 4.0


def _int(header: bytes, at: int) -> int:
    return int.from_bytes(header[at:at + 4], "little", signed=True)


def _text(header: bytes, at: int, length: int) -> str:
    return header[at:at + length].split(b"\0")[0].decode("latin-1").strip()


def read_isq_header(path) -> IsqHeader:
    """Parse an ISQ header; `ScanReadError` naming the file when it is not one ctbone can read."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
        if len(head) < HEADER_BYTES:
            raise ScanReadError(f"{path}: {len(head)} bytes, shorter than a Scanco ISQ header (512 bytes): "
                                "truncated or not an ISQ file.")
        if not head.startswith(ISQ_MAGIC):
            what = ("a Scanco AIM file" if head.startswith(AIM_MAGIC) or (_int(head, 0), _int(head, 4)) == (20, 140)
                    else "not a Scanco ISQ file (no CTDATA-HEADER_V1 header)")
            raise ScanReadError(f"{path}: {what}; ctbone reads Scanco's ISQ volumes, not AIM files. Potential fix: "
                                "export the scan from the Scanco software as ISQ or DICOM.")
        data_type = _int(head, 16)
        counts_xyz = [_int(head, 44 + 4 * i) for i in range(3)]
        field_um_xyz = [_int(head, 56 + 4 * i) for i in range(3)]
        if data_type == 9 or field_um_xyz[2] == 0 or _RAD_NAME.search(path.name):
            raise ScanReadError(f"{path}: a Scanco scout view (RAD), not a 3-D scan. Potential fix: point to the "
                                "scan's ISQ file.")
        if _ISQ_NAME.search(path.name).group(1).lower() == "rsq":
            raise ScanReadError(f"{path}: a Scanco raw-data file (RSQ: projections, not reconstructed slices). "
                                "Potential fix: point to the reconstructed ISQ file.")
        if min(counts_xyz) < 1 or min(field_um_xyz) < 1 or int(np.prod(counts_xyz, dtype=np.int64)) > MAX_VOXELS:
            raise ScanReadError(f"{path}: the ISQ header declares {counts_xyz} voxels over {field_um_xyz} µm, not a "
                                "plausible scan: corrupt header.")
        data_offset = (_int(head, 508) + 1) * BLOCK_BYTES
        extended = fh.read(max(0, data_offset - HEADER_BYTES))
    calibration = _calibration_block(head + extended)
    spacing_xyz = [f / n / 1000.0 for f, n in zip(field_um_xyz, counts_xyz)]
    return IsqHeader(
        shape_zyx=tuple(counts_xyz[::-1]), spacing_zyx_mm=tuple(spacing_xyz[::-1]), data_offset_bytes=data_offset,
        mu_scaling=_int(head, 88), patient_name=_text(head, 128, 40), patient_index=_int(head, 28),
        measurement_index=_int(head, 112), energy_kv=_int(head, 168) / 1000.0, intensity_ua=float(_int(head, 172)),
        slice1_position_mm=_int(head, 76) / 1000.0, **calibration)


def _calibration_block(header: bytes) -> dict:
    """The density calibration of the extended header, {} when it has none.

    Blocks after the first: an optional "MultiHeader" block, then a directory of up to four 128-byte entries
    (name at +8, length in blocks at +24) naming the blocks that follow in order; "Calibration" holds the
    density unit at +648 and slope, intercept and µ of water as G-floats at +664, +672 and +688."""
    if len(header) < 4 * BLOCK_BYTES:
        return {}
    directory, first = BLOCK_BYTES, 2
    if header[directory + 8:directory + 24].startswith(b"MultiHeader"):
        directory, first = directory + BLOCK_BYTES, first + 1
    block = first
    for entry in range(4):
        at = directory + 128 * entry
        name, size = header[at + 8:at + 24], _int(header, at + 24)
        if size < 0 or (block + size) * BLOCK_BYTES > len(header):
            return {}
        if name.startswith(b"Calibration") and size >= 2:
            cal = header[block * BLOCK_BYTES:(block + size) * BLOCK_BYTES]
            slope, intercept, mu_water = (vax_g_float(cal[i:i + 8]) for i in (664, 672, 688))
            if not (np.isfinite(slope) and slope > 0 and np.isfinite(intercept)):
                return {}
            return {"density_slope": slope, "density_intercept": intercept,
                    "mu_water": mu_water if np.isfinite(mu_water) and mu_water > 0 else None,
                    "density_unit": _text(cal, 648, 16)}
        block += size
    return {}


def isq_voxels(path, header: IsqHeader | None = None) -> np.memmap:
    """The ISQ's voxels as a read-only (z, y, x) int16 memory map; `ScanReadError` when the file is too short."""
    path = Path(path)
    header = header or read_isq_header(path)
    n_bytes = int(np.prod(header.shape_zyx, dtype=np.int64)) * 2
    size = path.stat().st_size
    if size < header.data_offset_bytes + n_bytes:
        raise ScanReadError(f"{path}: the ISQ header declares {header.shape_zyx[::-1]} voxels (x, y, z: {n_bytes} "
                            f"bytes from byte {header.data_offset_bytes}) but the file has {size} bytes: truncated "
                            "copy. Potential fix: copy the file again from the scanner.")
    return np.memmap(path, dtype="<i2", mode="r", offset=header.data_offset_bytes, shape=header.shape_zyx)


def unit_reason(header: IsqHeader) -> str:
    if header.density_slope is None:
        return ("Scanco native values (µ × µ-scaling); no density calibration in the header. Potential fix: "
                "--calibration SLOPE,INTERCEPT")
    return (f"Scanco native values (µ × {header.mu_scaling}); density calibration in the header "
            f"({header.density_unit or 'mg HA/ccm'} = µ × {header.density_slope:.6g} "
            f"{'-' if header.density_intercept < 0 else '+'} {abs(header.density_intercept):.6g})")


def read_isq(path):
    """A Scanco ISQ file as a float32 `Volume` of native gray values, its density calibration in ``meta``."""
    from ..volume import Volume
    from .formats import _is_binary

    path = Path(path)
    header = read_isq_header(path)
    array = np.array(isq_voxels(path, header), dtype=np.float32)
    meta = {"source": str(path), **header.meta(), "is_binary": _is_binary(array), "unit_reason": unit_reason(header)}
    return Volume(array, spacing=header.spacing_zyx_mm, unit="raw", meta=meta)


def open_isq_slabs(path):
    """A Scanco ISQ memory-mapped, read slab by slab (values and geometry equal to `read_isq`'s)."""
    from .slabs import ArraySlabs

    path = Path(path)
    header = read_isq_header(path)
    # is_binary needs every voxel: the slab segmentation's first pass sets it
    meta = {"source": str(path), **header.meta(), "is_binary": False, "unit_reason": unit_reason(header),
            "read": "slab by slab"}
    return ArraySlabs(isq_voxels(path, header), spacing=header.spacing_zyx_mm, unit="raw", meta=meta)
