"""DICOM series: read headers, group into series, order slices, decode pixels, rescale.

The only module of ctbone that imports pydicom. One job per step:
headers (no pixel data) → series groups → choice → slice geometry → decode
into one preallocated float32 array, rescaling slice by slice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DecoderMissingError, GeometryError, ScanReadError, SeriesError
from ..volume import Volume
from .discover import dicom_candidates
from .formats import _is_binary, no_dicom_fix

log = logging.getLogger(__name__)

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
ENHANCED_CT_CLASS = "1.2.840.10008.5.1.4.1.1.2.1"
# refuse volumes above this many voxels before allocating (a corrupt header can claim anything)
MAX_VOXELS = 6_000_000_000
# two slice gaps are "equal" within this fraction of the median gap
SPACING_RTOL = 0.01

_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg", "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg", "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg", "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg", "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",
}


@dataclass
class SliceHeader:
    """What the reader needs from one file, without its pixel data."""

    path: Path
    series_uid: str
    series_number: int | None
    description: str
    modality: str
    rows: int
    cols: int
    orientation: tuple[float, ...] | None
    position: tuple[float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    instance: int | None
    frames: int
    slope: float
    intercept: float
    rescale_type: str
    manufacturer: str
    transfer_syntax: str
    bits_allocated: int
    enhanced: bool
    patient_name: str
    extra: dict = field(default_factory=dict)


@dataclass
class Series:
    """Files of one series (one UID, one orientation, one image size)."""

    key: str
    headers: list[SliceHeader]

    @property
    def first(self) -> SliceHeader:
        return self.headers[0]

    @property
    def n_slices(self) -> int:
        return sum(h.frames for h in self.headers)

    @property
    def n_voxels(self) -> int:
        return self.n_slices * self.first.rows * self.first.cols

    def describe(self) -> dict:
        h = self.first
        return {"key": self.key, "series_uid": h.series_uid, "series_number": h.series_number,
                "description": h.description, "modality": h.modality, "files": len(self.headers),
                "slices": self.n_slices, "rows": h.rows, "columns": h.cols,
                "pixel_spacing_mm": list(h.pixel_spacing) if h.pixel_spacing else None,
                "orientation": list(h.orientation) if h.orientation else None,
                "enhanced_multiframe": h.enhanced, "transfer_syntax": h.transfer_syntax,
                "manufacturer": h.manufacturer}


def _float(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _floats(value, n):
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _functional(ds, index, sequence, keyword):
    """A value from the per-frame functional group ``index`` or else the shared group."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if not items or i >= len(items):
            continue
        seq = items[i].get(sequence)
        if seq and keyword in seq[0]:
            return seq[0].get(keyword)
    return None


def read_header(path: Path, forced: bool) -> SliceHeader | str:
    """A `SliceHeader`, or the reason this file is not an image (a string)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=forced)
    except InvalidDicomError as exc:
        return f"not DICOM ({exc})"
    except Exception as exc:  # noqa: BLE001 - truncated or garbage files raise many kinds
        return f"unreadable DICOM header ({type(exc).__name__}: {exc})"
    try:
        return _slice_header(ds, path)
    except Exception as exc:  # noqa: BLE001 - pydicom parses values on access: a corrupt element raises here
        return f"unreadable DICOM header ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"


def _slice_header(ds, path: Path) -> SliceHeader | str:
    """`read_header`'s parsing of a read dataset."""
    sop_class = str(ds.get("SOPClassUID", "") or getattr(ds.get("file_meta", None), "MediaStorageSOPClassUID", ""))
    if sop_class == DICOMDIR_CLASS:
        return "DICOMDIR index, not an image"
    if "Rows" not in ds or "Columns" not in ds:
        if not any(tag.group in (0x0008, 0x0010, 0x0020, 0x0028) for tag in ds.keys()):
            # read with force=True, any file parses into something: no identifying element means no DICOM file
            return "not DICOM (no DICOM elements: a text or other file)"
        return "no image (DICOM without Rows/Columns: a report, structured data or index)"
    enhanced = sop_class == ENHANCED_CT_CLASS or "PerFrameFunctionalGroupsSequence" in ds
    frames = int(_float(ds.get("NumberOfFrames", 1), 1) or 1)
    if enhanced:
        orientation = _floats(_functional(ds, 0, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        spacing = _floats(_functional(ds, 0, "PixelMeasuresSequence", "PixelSpacing"), 2)
        thickness = _float(_functional(ds, 0, "PixelMeasuresSequence", "SliceThickness"))
        position = _floats(_functional(ds, 0, "PlanePositionSequence", "ImagePositionPatient"), 3)
        slope = _float(_functional(ds, 0, "PixelValueTransformationSequence", "RescaleSlope"), 1.0)
        intercept = _float(_functional(ds, 0, "PixelValueTransformationSequence", "RescaleIntercept"), 0.0)
        rescale_type = str(_functional(ds, 0, "PixelValueTransformationSequence", "RescaleType") or "")
    else:
        orientation = _floats(ds.get("ImageOrientationPatient"), 6)
        spacing = _floats(ds.get("PixelSpacing"), 2)
        thickness = _float(ds.get("SliceThickness"))
        position = _floats(ds.get("ImagePositionPatient"), 3)
        slope = _float(ds.get("RescaleSlope"), 1.0)
        intercept = _float(ds.get("RescaleIntercept"), 0.0)
        rescale_type = str(ds.get("RescaleType", "") or "")
    meta = ds.get("file_meta")
    extra = {"signed": int(ds.get("PixelRepresentation", 0) or 0) == 1 if "PixelRepresentation" in ds else None}
    for tag, name in ((0x00291000, "scanco_mu_scaling"), (0x00291004, "scanco_density_slope"),
                      (0x00291005, "scanco_density_intercept"), (0x00291006, "scanco_mu_water")):
        if tag in ds:
            value = ds[tag].value
            if isinstance(value, bytes):
                value = np.frombuffer(value[:8], "<f8")[0] if len(value) >= 8 else None
            extra[name] = _float(value)
    return SliceHeader(
        path=path, series_uid=str(ds.get("SeriesInstanceUID", "") or f"no-uid:{path.parent}"),
        series_number=int(_float(ds.get("SeriesNumber"), 0) or 0) if ds.get("SeriesNumber") is not None else None,
        description=str(ds.get("SeriesDescription", "") or ""), modality=str(ds.get("Modality", "") or ""),
        rows=int(ds.Rows), cols=int(ds.Columns), orientation=orientation, position=position,
        pixel_spacing=spacing, slice_thickness=thickness,
        instance=int(_float(ds.get("InstanceNumber"), 0) or 0) if ds.get("InstanceNumber") is not None else None,
        frames=frames, slope=slope if slope else 1.0, intercept=intercept, rescale_type=rescale_type,
        manufacturer=str(ds.get("Manufacturer", "") or ""),
        transfer_syntax=str(getattr(meta, "TransferSyntaxUID", "") if meta else ""),
        bits_allocated=int(_float(ds.get("BitsAllocated"), 16) or 16), enhanced=enhanced,
        patient_name=str(ds.get("PatientName", "") or ""), extra=extra,
    )


def scan_headers(path: Path):
    """Headers of every DICOM image file under ``path`` and the (file, reason) of every file skipped."""
    candidates, skipped = dicom_candidates(path)
    headers = []
    for file, marked in candidates:
        header = read_header(file, forced=not marked)
        if isinstance(header, str):
            skipped.append((str(file), header))
            log.info("skipped %s: %s", file, header)
        else:
            headers.append(header)
    for file, reason in skipped:
        log.debug("skipped %s: %s", file, reason)
    return headers, skipped


def group_series(headers: list[SliceHeader]) -> list[Series]:
    """Group by SeriesInstanceUID, then by orientation and image size; largest first."""
    by_uid: dict[str, dict[tuple, list[SliceHeader]]] = {}
    for h in headers:
        orient = tuple(np.round(h.orientation, 4)) if h.orientation else None
        # an enhanced multi-frame file is a series of its own even if it shares a UID
        sub = (orient, h.rows, h.cols, str(h.path) if h.enhanced else "")
        by_uid.setdefault(h.series_uid, {}).setdefault(sub, []).append(h)
    series = []
    for uid, subs in by_uid.items():
        ordered = sorted(subs.values(), key=lambda hs: -sum(h.frames for h in hs))
        for i, hs in enumerate(ordered):
            key = uid if len(ordered) == 1 else f"{uid}#{i + 1}"
            series.append(Series(key=key, headers=hs))
    series.sort(key=lambda s: (-(s.n_slices > 1), -s.n_voxels, s.first.series_number or 0, s.key))
    return series


def choose_series(series: list[Series], wanted: str | int | None, path: Path) -> Series:
    """The requested series, or the largest 3D one (refusing a UID that mixes sizes/orientations)."""
    if not series:
        raise SeriesError(f"{path}: no DICOM image files found. Potential fix: point to the folder of the scan's "
                          f"DICOM export (run `ctbone info {path} --verbose` to see what was skipped).")
    choices = ", ".join(f"{s.key} (number {s.first.series_number}, {s.n_slices} slices)" for s in series)
    if wanted is None:
        chosen = series[0]
        siblings = [s for s in series if s.first.series_uid == chosen.first.series_uid and s is not chosen]
        if siblings:
            sizes = ", ".join(f"{s.key}: {s.n_slices} slices of {s.first.rows}x{s.first.cols}"
                              for s in [chosen, *siblings])
            raise SeriesError(f"{path}: series {chosen.first.series_uid} mixes image sizes or orientations ({sizes}). "
                              f"Potential fix: pass --series with one of {', '.join(s.key for s in [chosen, *siblings])}")
        return chosen
    text = str(wanted)
    matches = [s for s in series if text in (s.key, s.first.series_uid)]
    if not matches and text.lstrip("-").isdigit():
        matches = [s for s in series if s.first.series_number == int(text)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SeriesError(f"{path}: no series {text!r}. Potential fix: pass --series with one of: {choices}")
    raise SeriesError(f"{path}: --series {text!r} matches {len(matches)} series. Potential fix: pass the UID: {choices}")


@dataclass
class SliceGeometry:
    positions: np.ndarray     # (n, 3) patient positions in slice order
    order: list               # (header, frame index) in slice order
    spacing_z: float
    direction: np.ndarray
    uniform: bool


def _slice_entries(s: Series) -> list[tuple[SliceHeader, int, tuple | None]]:
    """(header, frame, position) for every 2D slice of the series, frames of enhanced files expanded."""
    entries = []
    for h in s.headers:
        if h.frames > 1 and h.enhanced:
            for i, pos in enumerate(h.extra.get("frame_positions") or [None] * h.frames):
                entries.append((h, i, pos))
        elif h.frames > 1:
            # legacy multi-frame without per-frame positions: stacked along the normal from the first position
            for i in range(h.frames):
                entries.append((h, i, None))
        else:
            entries.append((h, 0, h.position))
    return entries


def slice_geometry(s: Series, path: Path, *, allow_nonuniform: bool = False) -> SliceGeometry:
    """Order slices along the normal and measure their spacing; refuse gaps, duplicates, non-uniformity."""
    h = s.first
    if h.pixel_spacing is None:
        raise GeometryError(f"{h.path}: no PixelSpacing. Potential fix: export the scan with geometry tags.")
    if min(h.pixel_spacing) <= 0:
        raise GeometryError(f"{h.path}: PixelSpacing {list(h.pixel_spacing)} is not positive.")
    orientation = h.orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    row_dir, col_dir = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 0.5:
        raise GeometryError(f"{h.path}: ImageOrientationPatient {list(orientation)} is degenerate.")
    normal /= np.linalg.norm(normal)
    direction = np.column_stack([row_dir, col_dir, normal])
    entries = _slice_entries(s)
    if any(pos is None for _, _, pos in entries):
        return _geometry_without_positions(s, entries, direction, path)
    positions = np.array([pos for _, _, pos in entries], dtype=float)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along, positions = along[order], positions[order]
    entries = [entries[i] for i in order]
    if len(entries) == 1:
        spacing = h.slice_thickness if h.slice_thickness and h.slice_thickness > 0 else 1.0
        return SliceGeometry(positions, [(e[0], e[1]) for e in entries], spacing, direction, True)
    gaps = np.diff(along)
    pixel = min(h.pixel_spacing)
    dup = np.flatnonzero(gaps < 1e-3 * pixel)
    if dup.size:
        where = ", ".join(f"{along[i]:.4f} mm" for i in dup[:5])
        files = ", ".join(entries[i][0].path.name for i in dup[:2])
        raise GeometryError(f"{path}: duplicate slice positions at {where} along the normal (files {files}, ...). "
                            f"Potential fix: remove duplicated files or choose one series with --series.")
    step = float(np.median(gaps))
    off = np.flatnonzero(np.abs(gaps - step) > SPACING_RTOL * step)
    uniform = off.size == 0
    if not uniform:
        multiples = gaps[off] / step
        if np.allclose(multiples, np.round(multiples), atol=0.05) and np.all(np.round(multiples) >= 2):
            where = ", ".join(f"between {along[i]:.4f} and {along[i + 1]:.4f} mm" for i in off[:5])
            missing = int(np.sum(np.round(multiples) - 1))
            raise GeometryError(f"{path}: {missing} missing slice(s) {where} (slice spacing {step:.4g} mm). "
                                f"Potential fix: re-export the complete series.")
        if not allow_nonuniform:
            where = ", ".join(f"{gaps[i]:.4g} mm after {along[i]:.4f}" for i in off[:5])
            raise GeometryError(f"{path}: non-uniform slice spacing (median {step:.4g} mm; {where}). "
                                f"Potential fix: allow resampling onto the median spacing with --allow-nonuniform "
                                f"(read_scan(..., allow_nonuniform=True)).")
    if uniform:  # the mean gap over the whole extent is the most precise estimate
        step = float((along[-1] - along[0]) / (len(along) - 1))
    return SliceGeometry(positions, [(e[0], e[1]) for e in entries], step, direction, uniform)


def _geometry_without_positions(s, entries, direction, path):
    h = s.first
    if len(s.headers) > 1 and any(x.instance is None for x in s.headers):
        raise GeometryError(f"{path}: slices have neither ImagePositionPatient nor InstanceNumber; their order "
                            f"cannot be known.")
    log.warning("%s: no ImagePositionPatient; ordering by InstanceNumber and using SliceThickness", path)
    entries = sorted(entries, key=lambda e: ((e[0].instance or 0), e[1]))
    spacing = h.slice_thickness if h.slice_thickness and h.slice_thickness > 0 else 1.0
    origin = np.array(h.position if h.position else (0.0, 0.0, 0.0))
    positions = origin + np.arange(len(entries))[:, None] * spacing * direction[:, 2]
    return SliceGeometry(positions, [(e[0], e[1]) for e in entries], spacing, direction, True)


_READ_THREADS = 2
_NATIVE_SYNTAXES = {"1.2.840.10008.1.2": "<", "1.2.840.10008.1.2.1": "<", "1.2.840.10008.1.2.2": ">"}


def _native_pixels(header: SliceHeader):
    """Uncompressed pixel data read straight from the file's tail, or None to fall back to pydicom.

    Pixel Data is the last element of an uncompressed image file; its tag and length are checked
    before the bytes are trusted, so any other layout goes through pydicom.
    """
    endian = _NATIVE_SYNTAXES.get(header.transfer_syntax)
    if endian is None or header.bits_allocated not in (8, 16, 32) or header.extra.get("signed") is None:
        return None
    n_bytes = header.rows * header.cols * header.frames * header.bits_allocated // 8
    if n_bytes % 2:
        return None
    raw = header.path.read_bytes()
    start = len(raw) - n_bytes
    tag = b"\xe0\x7f\x10\x00" if endian == "<" else b"\x7f\xe0\x00\x10"
    length = n_bytes.to_bytes(4, "little" if endian == "<" else "big")
    explicit = raw[start - 12:start - 8] == tag and raw[start - 4:start] == length and raw[start - 8:start - 6] in (b"OW", b"OB")
    implicit = header.transfer_syntax == "1.2.840.10008.1.2" and raw[start - 8:start - 4] == tag and raw[start - 4:start] == length
    if start < 132 or not (explicit or implicit):
        return None
    kind = f"{endian}{'i' if header.extra['signed'] else 'u'}{header.bits_allocated // 8}"
    return np.frombuffer(raw, dtype=kind, offset=start)


def _decode(path: Path, transfer_syntax: str):
    """The dataset and its stored pixel array (frames, rows, cols) of one file."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # noqa: BLE001
        raise ScanReadError(f"{path}: cannot read DICOM file ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds:
        raise ScanReadError(f"{path}: DICOM file has no pixel data (header only or truncated). "
                            f"Potential fix: re-export the series; check the copy is complete.")
    try:
        array = ds.pixel_array
    except (RuntimeError, NotImplementedError) as exc:
        message = str(exc)
        package = _DECODER_PACKAGES.get(transfer_syntax)
        if "plugin" in message.lower() and ("missing" in message.lower() or "no" in message.lower()) and package:
            raise DecoderMissingError(f"{path}: pixel data in transfer syntax {transfer_syntax} need a decoder that "
                                      f"is not installed. Potential fix: pip install {package}") from exc
        raise ScanReadError(f"{path}: cannot decode pixel data ({transfer_syntax}): {message.splitlines()[0]}") from exc
    except Exception as exc:  # noqa: BLE001 - corrupt data raise ValueError, EOFError, ...
        raise ScanReadError(f"{path}: pixel data are truncated or corrupt ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from exc
    except BaseException as exc:
        # the Rust decoders (pylibjpeg-rle) panic on corrupt data, and a pyo3 PanicException is no Exception
        if type(exc).__name__ != "PanicException":
            raise
        raise ScanReadError(f"{path}: pixel data are truncated or corrupt (the {transfer_syntax} decoder failed: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    return ds, array


def _check_sizes(s: Series, path: Path) -> None:
    h = s.first
    if s.n_voxels > MAX_VOXELS or h.rows <= 0 or h.cols <= 0:
        raise ScanReadError(f"{h.path}: header claims {s.n_slices} x {h.rows} x {h.cols} voxels, which is not a "
                            f"plausible scan to hold in memory; refusing to allocate it. Potential fix: if the scan "
                            f"is that large, analyse it slab by slab (ctbone analyze --low-memory).")
    _check_file_sizes(s)


def _check_file_sizes(s: Series) -> None:
    """Refuse uncompressed files shorter than their header's pixel data (truncated copies)."""
    h = s.first
    if h.rows <= 0 or h.cols <= 0:
        raise ScanReadError(f"{h.path}: header claims {h.rows} x {h.cols} pixels per slice; the file is corrupt.")
    uncompressed = h.transfer_syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "")
    if uncompressed:
        for x in s.headers:
            need = x.rows * x.cols * x.frames * (x.bits_allocated // 8)
            have = x.path.stat().st_size
            if need > have:
                raise ScanReadError(f"{x.path}: header claims {x.frames} frame(s) of {x.rows}x{x.cols} "
                                    f"{x.bits_allocated}-bit pixels ({need} bytes) but the file has {have} bytes: "
                                    f"truncated or corrupt. Potential fix: copy the file again from the scanner.")


def _attach_frame_data(s: Series) -> None:
    """Per-frame positions and rescale of enhanced multi-frame files (header pass, no pixels)."""
    import pydicom

    for h in s.headers:
        if not (h.enhanced and h.frames > 1) or "frame_positions" in h.extra:
            continue
        try:
            ds = pydicom.dcmread(h.path, stop_before_pixels=True, force=True)
            positions = [_floats(_functional(ds, i, "PlanePositionSequence", "ImagePositionPatient"), 3)
                         for i in range(h.frames)]
            rescale = [(_float(_functional(ds, i, "PixelValueTransformationSequence", "RescaleSlope"), 1.0) or 1.0,
                        _float(_functional(ds, i, "PixelValueTransformationSequence", "RescaleIntercept"), 0.0))
                       for i in range(h.frames)]
        except Exception as exc:  # noqa: BLE001 - read once already: changed or corrupt since
            raise ScanReadError(f"{h.path}: cannot read the frames' positions ({type(exc).__name__}: {exc})") from exc
        h.extra["frame_positions"], h.extra["frame_rescale"] = positions, rescale


def _frames(header: SliceHeader) -> np.ndarray:
    """The stored pixels of one file as (frames, rows, cols), checked against its header."""
    pixels = _native_pixels(header)
    if pixels is None:
        _, pixels = _decode(header.path, header.transfer_syntax)
    if pixels.size != header.frames * header.rows * header.cols:
        raise ScanReadError(f"{header.path}: decoded {pixels.shape} pixels, expected {header.frames} frame(s) of "
                            f"{header.rows}x{header.cols}; the file is corrupt.")
    return pixels.reshape(header.frames, header.rows, header.cols)


def _rescale_into(out: np.ndarray, pixels: np.ndarray, slope: float, intercept: float) -> None:
    """``out[...] = pixels * slope + intercept``: cast to float32, then rescale in float32 (a float64
    detour is 40x slower). The in-memory and the slab-by-slab readers share it, so their values are equal."""
    out[...] = pixels
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)


def _frame_rescale(header: SliceHeader) -> list:
    return header.extra.get("frame_rescale") or [(header.slope, header.intercept)] * header.frames


def read_series(s: Series, path: Path, *, allow_nonuniform: bool = False) -> Volume:
    """Decode a chosen series into one float32 (z, y, x) Volume with per-slice rescale."""
    _check_sizes(s, path)
    _attach_frame_data(s)
    geometry = slice_geometry(s, path, allow_nonuniform=allow_nonuniform)
    h = s.first
    out = np.empty((len(geometry.order), h.rows, h.cols), dtype=np.float32)
    slot = {}
    for z, (header, frame) in enumerate(geometry.order):
        slot.setdefault(header.path, []).append((z, frame))
    slopes, intercepts = np.ones(len(out)), np.zeros(len(out))

    def fill(header: SliceHeader) -> None:
        pixels = _frames(header)
        rescale = _frame_rescale(header)
        for z, frame in slot[header.path]:
            slope, intercept = rescale[frame]
            _rescale_into(out[z], pixels[frame], slope, intercept)
            slopes[z], intercepts[z] = slope, intercept

    # file reading and numpy copies release the GIL: two threads keep both cores busy
    from concurrent.futures import ThreadPoolExecutor

    from .native_stderr import native_stderr_held

    with native_stderr_held(str(path)), ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        for _ in pool.map(fill, s.headers):
            pass
    spacing_z = geometry.spacing_z
    origin = geometry.positions[0]
    if not geometry.uniform:
        out, spacing_z = _resample_uniform(out, geometry.positions @ geometry.direction[:, 2])
        log.warning("%s: non-uniform slice spacing resampled to %.4g mm", path, spacing_z)
    meta = _meta(s, path, slopes, intercepts, out, is_binary=_is_binary(out))
    return Volume(out, spacing=(spacing_z, h.pixel_spacing[0], h.pixel_spacing[1]), origin=tuple(origin),
                  direction=geometry.direction, unit=meta.pop("unit"), meta=meta)


def _resample_uniform(array: np.ndarray, along: np.ndarray):
    """Linear interpolation of slices at ``along`` (mm) onto a uniform grid with the median spacing."""
    step = float(np.median(np.diff(along)))
    n = int(np.floor((along[-1] - along[0]) / step + 1e-6)) + 1
    targets = along[0] + step * np.arange(n)
    out = np.empty((n,) + array.shape[1:], np.float32)
    for i, t in enumerate(targets):
        j = int(np.clip(np.searchsorted(along, t) - 1, 0, len(along) - 2))
        w = (t - along[j]) / (along[j + 1] - along[j])
        out[i] = (1 - w) * array[j] + w * array[j + 1]
    return out, step


def _meta(s: Series, path: Path, slopes, intercepts, unit_sample, *, is_binary: bool) -> dict:
    """The series' provenance; ``unit_sample`` holds (at least) the slices `hu_sample_slices` names."""
    from .units import decide_unit

    h = s.first
    unit, reason = decide_unit(modality=h.modality, rescale_type=h.rescale_type, manufacturer=h.manufacturer,
                               intercepts=intercepts, array=unit_sample, extra=h.extra)
    return {
        "source": str(path), "format": "dicom", "vendor": h.manufacturer, "series_uid": h.series_uid,
        "series_key": s.key, "series_number": h.series_number, "series_description": h.description,
        "modality": h.modality, "patient_name": h.patient_name, "files": len(s.headers),
        "transfer_syntax": h.transfer_syntax, "enhanced_multiframe": h.enhanced,
        "is_binary": is_binary,  # a segmented (two-value) export: thresholding is trivial
        "rescale": {"slope_min": float(slopes.min()), "slope_max": float(slopes.max()),
                    "intercept_min": float(intercepts.min()), "intercept_max": float(intercepts.max()),
                    "varies_per_slice": bool(np.ptp(slopes) > 0 or np.ptp(intercepts) > 0),
                    "rescale_type": h.rescale_type},
        "unit": unit, "unit_reason": reason, **{k: v for k, v in h.extra.items() if k.startswith("scanco")},
    }


def find_series(path: Path, series=None) -> tuple[Series, int]:
    """(the chosen (default: largest 3D) series under ``path``, the number of files skipped); headers only."""
    headers, skipped = scan_headers(path)
    if not headers:
        reasons = "; ".join(sorted({r for _, r in skipped}))[:300]
        raise SeriesError(f"{path}: no DICOM image files found ({len(skipped)} file(s) skipped: {reasons or 'none'}). "
                          f"Potential fix: {no_dicom_fix(path)}.")
    chosen = choose_series(group_series(headers), series, path)
    if chosen.first.modality and chosen.first.modality not in ("CT", "OT"):
        log.warning("%s: modality %s is not CT; values may not be HU", path, chosen.first.modality)
    return chosen, len(skipped)


def read_dicom(path: Path, series=None, *, allow_nonuniform: bool = False, found=None) -> Volume:
    """Read the chosen (default: largest 3D) DICOM series under ``path`` (a folder or a file).

    ``found``: `find_series`'s answer when the caller already has it (its headers are not read again)."""
    chosen, skipped = found or find_series(path, series)
    volume = read_series(chosen, path, allow_nonuniform=allow_nonuniform)
    volume.meta["skipped"] = skipped
    return volume
