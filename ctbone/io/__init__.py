"""Reading scans: DICOM series (any export), NIfTI, MetaImage, NRRD, Scanco ISQ / AIM, image stacks (TIFF, BMP,
PNG slices).

`read_scan` is the one entry point; `scan_info` describes a path without
decoding pixels (for ``ctbone info``); `write_dicom_series` writes one.
"""

from __future__ import annotations

from ..errors import ScanReadError
from ..volume import Volume
from .dicom_write import write_dicom_series
from .info import format_scan_info, scan_info


def read_scan(path, series=None, *, spacing=None, allow_nonuniform: bool = False) -> Volume:
    """Read a scan into a `Volume` (float32, (z, y, x), spacing in mm).

    Parameters
    ----------
    path : path
        A folder of DICOM files (any names, any order, sub-folders, other files skipped), a single
        DICOM file (one slice or multi-frame), a NIfTI/MetaImage/NRRD file or a Scanco ISQ / AIM (or a folder
        holding just one, with its data file), or an image stack (a folder of one TIFF, BMP or PNG per slice,
        as Bruker's NRecon writes, or a multi-page TIFF; `ctbone.io.stacks`).
    series : str or int, optional
        DICOM series to read (SeriesInstanceUID, SeriesNumber, or a key from `scan_info`);
        default the largest 3D series.
    spacing : float or (z, y, x) floats, optional
        Voxel size in mm for image stacks (else read from a Bruker ``*_rec.log`` beside them); refused for
        formats that carry their own.
    allow_nonuniform : bool
        Resample a DICOM series with non-uniform slice spacing instead of refusing it.

    Returns
    -------
    Volume
        ``unit`` is "HU", "mgHA/cm3" or "raw"; ``meta`` records source, vendor, series, rescale.

    Raises
    ------
    ScanReadError
        (and its children SeriesError, GeometryError, DecoderMissingError) with a one-line message
        naming the file and the problem.
    """
    from .dicom import read_dicom
    from .formats import SITK_SUFFIXES, has_suffix, read_sitk, resolve_scan_path
    from .scanco import is_scanco, read_scanco
    from .stacks import is_stack, read_stack

    path = resolve_scan_path(path, spacing)  # a folder holding one .mhd/.nrrd/.nii/.isq volume means that volume
    if path.is_file() and has_suffix(path, SITK_SUFFIXES):
        return read_sitk(path)
    if is_scanco(path):
        return read_scanco(path)
    if is_stack(path):
        return read_stack(path, spacing=spacing)
    if path.is_dir() and not any(path.iterdir()):
        raise ScanReadError(f"{path}: folder is empty. Potential fix: point to the folder of the scan's files.")
    return read_dicom(path, series, allow_nonuniform=allow_nonuniform)


MEMORY_CHOICES = ("auto", "load", "slabs")


def open_scan(path, series=None, *, spacing=None, allow_nonuniform: bool = False, memory: str = "auto",
              memory_share: float = 1.0):
    """A scan to analyse: a `Volume` read into memory, or a `ScanSlabs` read slab by slab.

    Parameters
    ----------
    path, series, spacing, allow_nonuniform
        As for `read_scan`.
    memory : {"auto", "load", "slabs"}
        "load": always `read_scan`. "slabs": a DICOM series, an image stack, a MetaImage (.mhd with an
        uncompressed raw file) or a Scanco ISQ / AIM read slab by slab (`ctbone.io.slabs`), for scans larger than
        memory. "auto": slab by slab only when the in-memory path would not fit in the memory available now (about
        `IN_MEMORY_BYTES_PER_VOXEL` bytes per voxel of the scan) and the series allows it.
    memory_share : float
        The fraction of the available memory "auto" may count on (1 / the scans read at once).

    Returns
    -------
    Volume or ScanSlabs
        Either is accepted by `ctbone.analyze`, with equal results.
    """
    from .formats import resolve_scan_path
    from .slabs import open_dicom_auto, open_slabs, slabs_if_too_big
    from .stacks import is_image_stack

    if memory not in MEMORY_CHOICES:
        raise ValueError(f"memory must be one of {MEMORY_CHOICES}, got {memory!r}")
    path = resolve_scan_path(path, spacing)
    if memory == "slabs":
        return open_slabs(path, series, spacing=spacing)
    if memory == "auto":
        scan = slabs_if_too_big(path, spacing=spacing, share=memory_share)
        if scan is not None:
            return scan
        if path.is_dir() and any(path.iterdir()) and not is_image_stack(path):
            return open_dicom_auto(path, series, allow_nonuniform=allow_nonuniform, share=memory_share)
    return read_scan(path, series, spacing=spacing, allow_nonuniform=allow_nonuniform)


__all__ = ["format_scan_info", "open_scan", "read_scan", "scan_info", "write_dicom_series"]
