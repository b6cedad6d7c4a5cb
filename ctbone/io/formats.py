"""Non-DICOM volume files: NIfTI, MetaImage, NRRD (via SimpleITK); where a scan path leads (`resolve_scan_path`).

Image stacks (TIFF, BMP, PNG slices) are read in `stacks`."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ..errors import GeometryError, ScanReadError
from ..volume import Volume
from .native_stderr import native_stderr_held
from .units import looks_like_hu

log = logging.getLogger(__name__)

SITK_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")
MAX_VOXELS = 6_000_000_000


def has_suffix(path: Path, suffixes) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def _is_binary(array: np.ndarray) -> bool:
    """True when ``array`` holds exactly two distinct values (a segmented export).

    A strided sample rejects gray images at once; the full check runs slab by slab so
    it never allocates more than one slab's worth of booleans.
    """
    if array.size == 0:
        return False
    sample = array.reshape(-1)[:: max(1, array.size // 65536)] if array.flags.c_contiguous else array.flat[:65536]
    if np.unique(sample).size > 2:
        return False
    lo, hi = array.min(), array.max()
    if lo == hi:
        return False
    slabs = array.reshape((-1,) + array.shape[-2:]) if array.ndim >= 2 else array[None]
    return all(bool(np.all((slab == lo) | (slab == hi))) for slab in slabs)


def _finish(array: np.ndarray, path: Path, spacing, origin, direction, fmt: str, extra: dict | None = None) -> Volume:
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ScanReadError(f"{path}: {bad} voxel(s) are NaN or infinite. Potential fix: replace them (e.g. with the "
                            f"background value) before analysis.")
    unit, meta = file_unit_and_meta(array, path, fmt, extra, is_binary=_is_binary(array))
    return Volume(array, spacing=spacing, origin=origin, direction=direction, unit=unit, meta=meta)


def file_unit_and_meta(unit_sample: np.ndarray, path: Path, fmt: str, extra: dict | None, *, is_binary: bool):
    """(unit, meta) of a scan file without DICOM's tags; ``unit_sample`` holds (at least) the slices
    `hu_sample_slices` names."""
    hu = looks_like_hu(unit_sample)
    meta = {"source": str(path), "format": fmt, "vendor": "", "series_uid": "", "modality": "",
            "is_binary": is_binary,
            "unit_reason": "air near -1000" if hu else "no calibration information in the file", **(extra or {})}
    return ("HU" if hu else "raw"), meta


def _nifti_nonfinite_count(path: Path) -> int:
    """NaN/inf voxels in a float NIfTI file, counted in the raw data: SimpleITK's NIfTI reader turns them into 0."""
    import gzip
    import struct

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        header = f.read(352)
        if len(header) < 348:
            return 0
        endian = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
        datatype = struct.unpack(endian + "h", header[70:72])[0]
        kinds = {16: "f4", 64: "f8"}  # float32, float64; integer types cannot hold NaN
        if datatype not in kinds:
            return 0
        offset = int(struct.unpack(endian + "f", header[108:112])[0])
        f.seek(offset) if opener is open else f.read(max(0, offset - len(header)))
        data = np.frombuffer(f.read(), dtype=endian + kinds[datatype])
    return int((~np.isfinite(data)).sum())


def sitk_reason(exc: RuntimeError, said: list[str]) -> str:
    """The library's own words on a failed read (MetaIO's message when it printed one; ITK's exception's last line
    otherwise, which for MetaImage is a stale "No such file or directory")."""
    text = said[0] if said and said[0] else str(exc).strip().splitlines()[-1]
    return text[:200]


def read_sitk(path: Path) -> Volume:
    """NIfTI / MetaImage / NRRD through SimpleITK, refusing absurd headers before reading the data."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with native_stderr_held(str(path)) as said:
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ScanReadError(f"{path}: cannot read image header ({sitk_reason(exc, said)})") from exc
    size = reader.GetSize()
    if len(size) != 3 and not (len(size) == 2):
        raise ScanReadError(f"{path}: {len(size)}-dimensional image; ctbone reads 2D or 3D scalar images.")
    if math.prod(size) > MAX_VOXELS:  # Python integers: a corrupt header cannot overflow
        raise ScanReadError(f"{path}: header claims {size} voxels, not a plausible scan; refusing to allocate it.")
    spacing = reader.GetSpacing()
    if any(s <= 0 for s in spacing):
        raise GeometryError(f"{path}: spacing {spacing} is not positive. Potential fix: fix the header's spacing.")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        bad = _nifti_nonfinite_count(path)
        if bad:
            raise ScanReadError(f"{path}: {bad} voxel(s) are NaN or infinite. Potential fix: replace them (e.g. with "
                                f"the background value) before analysis.")
    try:
        with native_stderr_held(str(path)) as said:
            image = reader.Execute()
    except RuntimeError as exc:
        raise ScanReadError(f"{path}: cannot read image data ({sitk_reason(exc, said)}); "
                            f"the file may be truncated.") from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ScanReadError(f"{path}: {image.GetNumberOfComponentsPerPixel()}-component pixels; ctbone needs a "
                            f"scalar (gray) image.")
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    return _finish(array, path, tuple(image.GetSpacing())[::-1], tuple(image.GetOrigin()),
                   np.array(image.GetDirection()).reshape(3, 3), "sitk")


# files that sit beside a volume file without being a scan: its data file, and notes a scanner or a user leaves
_VOLUME_COMPANION_SUFFIXES = (".raw", ".zraw", ".raw.gz", ".txt", ".log", ".csv", ".json", ".md")


def is_volume_file(path: Path) -> bool:
    """A one-file volume ctbone reads: NIfTI, MetaImage, NRRD (SimpleITK) or a Scanco ISQ or AIM."""
    from .scanco import scanco_kind

    return path.is_file() and (has_suffix(path, SITK_SUFFIXES) or scanco_kind(path) in ("isq", "aim"))


def _is_companion(path: Path) -> bool:
    """A file beside a volume that is not a scan to read: its data file, notes, a Scanco measurement's raw data
    (RSQ) or scout view (RAD)."""
    from .scanco import scanco_kind

    return has_suffix(path, _VOLUME_COMPANION_SUFFIXES) or scanco_kind(path) in ("rsq", "rad")


def lone_volume_file(path: Path) -> Path | None:
    """The volume file of a folder that holds one NIfTI/MetaImage/NRRD/ISQ volume and nothing but its data file
    and notes (no sub-folders: a DICOM export may hide in them); None for anything else.

    A user pointing at the folder of such a scan (``mouse07/`` holding ``mouse07.mhd`` and ``mouse07.raw``)
    means that volume; a folder with any other file is left to DICOM discovery, which reads files of any name.
    """
    path = Path(path)
    if not path.is_dir():
        return None
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    if any(p.is_dir() for p in entries):
        return None
    volumes = [p for p in entries if is_volume_file(p)]
    others = [p for p in entries if p not in volumes]
    if len(volumes) != 1 or not all(_is_companion(p) for p in others):
        return None
    return volumes[0]


def no_dicom_fix(path: Path) -> str:
    """The suggested fix when a path holds no DICOM images: the volume files a folder does hold, if any, or the
    folder of an image stack when the path is one of its slices."""
    from .stacks import STACK_SUFFIXES, is_image_stack

    path = Path(path)
    if path.is_file() and has_suffix(path, STACK_SUFFIXES) and is_image_stack(path.parent):
        return f"a slice picture is one slice: point to the folder holding the stack ({path.parent})"
    stacks = sorted(p.name for p in path.iterdir() if p.is_dir() and is_image_stack(p)) if path.is_dir() else []
    if stacks:
        return f"point to the image stack it holds ({', '.join(stacks[:3])}{', ...' if len(stacks) > 3 else ''})"
    if path.is_dir() and sum(has_suffix(p, (".jpg", ".jpeg")) for p in path.iterdir()) > 1:
        return ("its slices are JPEG pictures, whose lossy compression alters the gray values: export the "
                "reconstruction as TIFF, BMP or PNG (NRecon's output format) and point to that folder")
    volumes = sorted(p.name for p in path.iterdir() if is_volume_file(p)) if path.is_dir() else []
    if volumes:
        shown = ", ".join(volumes[:3]) + (", ..." if len(volumes) > 3 else "")
        return f"point to one of the volume files it holds ({shown}), or to the folder of the scan's DICOM export"
    return "point to the folder of the scan's DICOM export"


def resolve_scan_path(path, spacing=None) -> Path:
    """The path a reader reads: refused when missing, a folder holding one volume file taken as that file
    (`lone_volume_file`), and a voxel size refused where the scan carries its own (`check_spacing_applies`)."""
    path = Path(path)
    if not path.exists():
        raise ScanReadError(f"{path}: no such file or folder.")
    path = lone_volume_file(path) or path
    check_spacing_applies(path, spacing)
    return path


def check_spacing_applies(path: Path, spacing) -> None:
    """Refuse a voxel size given for a scan that carries its own (anything but an image stack): it would be ignored."""
    from .stacks import is_stack

    if spacing is None:
        return
    path = Path(path)
    if is_stack(path):
        return
    raise ScanReadError(f"{path}: a voxel size (--spacing) is only read for image stacks (TIFF, BMP, PNG slices), "
                        f"which carry none; this scan carries its own and it would be ignored. Potential fix: drop "
                        f"--spacing (ctbone info shows the voxel size the scan declares)")
