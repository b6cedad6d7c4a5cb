"""Scans read slab by slab, for scans larger than memory.

A `ScanSlabs` knows a scan's geometry and provenance without holding its voxels; ``read(z0, z1, ys, xs)``
returns the float32 values of one block, equal to the same block of `read_scan`'s array.

* `ArraySlabs` wraps anything that slices like a numpy array (``np.memmap``, zarr, h5py, dask);
  `open_mhd_slabs` maps a MetaImage's raw file with it.
* `DicomSlabs` reads a DICOM series file by file, `StackSlabs` a folder of one picture per slice (TIFF, BMP, PNG).
* `slabs_if_too_big` and `open_dicom_auto` decide between reading in memory and slab by slab from the
  voxel count and the memory available.

The segmentation's slab path (`ctbone.segment.streamed`) uses them.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import ScanReadError
from ..volume import Volume
from .native_stderr import native_stderr_held
from .stacks import is_image_stack

log = logging.getLogger(__name__)

_READ_THREADS = 2
# what the in-memory analysis peaks at per voxel of a scan whose bone fills the field (15.5 at 512^3, the
# read scan counted in); one whose bone is a small part of the field needs far less (4.8 on the bench's wide
# field), but that is known only once the scan is read. Reading it whole to find out gained nothing: where the
# read fits, the files fit the page cache and the slab path is about as fast (docs/performance.md)
IN_MEMORY_BYTES_PER_VOXEL = 16


class ScanSlabs:
    """A scan's geometry, unit and provenance, and its voxels one block at a time.

    Attributes
    ----------
    shape : (int, int, int)
        (z, y, x) voxels.
    spacing, origin, direction, unit, meta
        As on `ctbone.Volume`.
    """

    def __init__(self, shape, *, spacing, origin=(0.0, 0.0, 0.0), direction=None, unit="raw", meta=None):
        self.shape = tuple(int(n) for n in shape)
        # a one-voxel Volume validates and normalises the geometry the same way a full one would
        probe = Volume(np.zeros((1, 1, 1), np.float32), spacing=spacing, origin=origin,
                       direction=np.eye(3) if direction is None else direction, unit=unit, meta=dict(meta or {}))
        self.spacing, self.origin, self.direction = probe.spacing, probe.origin, probe.direction
        self.unit, self.meta = probe.unit, probe.meta
        self._probe = probe

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def read(self, z0: int, z1: int, ys: slice = slice(None), xs: slice = slice(None)) -> np.ndarray:
        """float32 values of slices ``z0:z1``, rows ``ys``, columns ``xs``."""
        raise NotImplementedError

    def _read_slices(self, z0, z1, ys, xs, fill_slice) -> np.ndarray:
        """A float32 block filled slice by slice by ``fill_slice(z, out_slice)``, two files at a time (file
        reading and numpy copies release the GIL)."""
        out = np.empty((z1 - z0, len(range(self.shape[1])[ys]), len(range(self.shape[2])[xs])), np.float32)
        held = native_stderr_held(str(self.meta.get("source", "")))
        with held, ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            for _ in pool.map(lambda z: fill_slice(z, out[z - z0]), range(z0, z1)):
                pass
        return out

    def unit_sample(self) -> np.ndarray:
        """The slices `looks_like_hu` decides the unit on (`hu_sample_slices`), as the in-memory readers do."""
        from .units import hu_sample_slices

        return np.concatenate([self.read(z, z + 1) for z in hu_sample_slices(self.shape[0])])

    def volume(self, array: np.ndarray, *, y0: int = 0, x0: int = 0, unit: str | None = None,
               meta: dict | None = None) -> Volume:
        """A `Volume` holding ``array`` as the block of this scan that starts at slice 0, row y0, column x0."""
        origin = self._probe.index_to_physical((0, y0, x0))
        return Volume(array, spacing=self.spacing, origin=tuple(origin), direction=self.direction,
                      unit=unit or self.unit, meta=dict(self.meta if meta is None else meta))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(shape={self.shape}, spacing={tuple(round(s, 6) for s in self.spacing)} mm, "
                f"unit={self.unit!r}, source={self.meta.get('source')!r})")


class ArraySlabs(ScanSlabs):
    """`ScanSlabs` over any (z, y, x) array-like that slices like numpy (``np.memmap``, zarr, h5py, dask).

    Examples
    --------
    >>> import numpy as np
    >>> stack = np.memmap("scan.raw", dtype="<i2", mode="r", shape=(2000, 2000, 2000))  # doctest: +SKIP
    >>> scan = ArraySlabs(stack, spacing=(0.01, 0.01, 0.01), unit="HU")               # doctest: +SKIP
    """

    def __init__(self, array, *, spacing, origin=(0.0, 0.0, 0.0), direction=None, unit="raw", meta=None):
        if len(array.shape) != 3:
            raise ValueError(f"ArraySlabs needs a 3D (z, y, x) array, got shape {array.shape}")
        super().__init__(array.shape, spacing=spacing, origin=origin, direction=direction, unit=unit,
                         meta={"source": "array", **(meta or {})})
        self._array = array

    def read(self, z0, z1, ys=slice(None), xs=slice(None)):
        return np.asarray(self._array[z0:z1, ys, xs], dtype=np.float32)


class DicomSlabs(ScanSlabs):
    """A DICOM series of single-frame files with uniform slice spacing, decoded slice by slice.

    Values equal `read_scan`'s: the same decoding and the same float32 rescale (`dicom._rescale_into`).
    """

    def __init__(self, geometry, *, shape, spacing):
        super().__init__(shape, spacing=spacing, origin=tuple(geometry.positions[0]), direction=geometry.direction)
        self._order = geometry.order  # (header, frame) of each slice, in z order

    def read(self, z0, z1, ys=slice(None), xs=slice(None)):
        from .dicom import _frame_rescale, _frames, _rescale_into

        def fill(z: int, out: np.ndarray) -> None:
            header, frame = self._order[z]
            slope, intercept = _frame_rescale(header)[frame]
            _rescale_into(out, _frames(header)[frame][ys, xs], slope, intercept)

        return self._read_slices(z0, z1, ys, xs, fill)


class StackSlabs(ScanSlabs):
    """A folder of one picture per slice (a Bruker SkyScan / NRecon reconstruction: TIFF, BMP, PNG), read picture
    by picture.

    Values equal `read_scan`'s (the same pictures, cast to float32)."""

    def __init__(self, files, *, shape, spacing):
        super().__init__(shape, spacing=spacing)
        self._files = files

    def read(self, z0, z1, ys=slice(None), xs=slice(None)):
        from .stacks import read_stack_page

        def fill(z: int, out: np.ndarray) -> None:
            out[...] = read_stack_page(self._files[z], self.shape[1:])[ys, xs]

        return self._read_slices(z0, z1, ys, xs, fill)


def open_stack_slabs(path: Path, spacing=None) -> StackSlabs:
    """A folder of one picture per slice as a `StackSlabs` (voxel size from ``spacing`` or a *_rec.log)."""
    from .formats import file_unit_and_meta
    from .stacks import stack_files, stack_format, stack_header

    path = Path(path)
    files = stack_files(path)
    if len(files) < 2:
        raise ScanReadError(f"{path}: a single (multi-page) TIFF file cannot be read slab by slab. Potential fix: "
                            f"drop --low-memory, or export one picture per slice.")
    first, spacing3, extra = stack_header(path, files, spacing)
    scan = StackSlabs(files, shape=(len(files),) + first.shape, spacing=spacing3)
    # is_binary needs every voxel: the slab segmentation's first pass sets it
    scan.unit, meta = file_unit_and_meta(scan.unit_sample(), path, stack_format(files), extra, is_binary=False)
    scan.meta = {**meta, "read": "slab by slab"}
    return scan


def open_dicom_slabs(path: Path, series=None, *, found=None) -> DicomSlabs:
    """The chosen DICOM series under ``path`` as a `DicomSlabs` (headers only; pixels on demand).

    ``found``: `dicom.find_series`'s answer when the caller already has it.

    Raises
    ------
    ScanReadError
        As `read_scan` does, and for what slab reading does not cover: multi-frame files and
        non-uniform slice spacing (both need the whole series at once).
    """
    from .dicom import _check_file_sizes, _meta, find_series, slice_geometry

    path = Path(path)
    chosen, skipped = found or find_series(path, series)
    if any(h.frames > 1 for h in chosen.headers):
        raise ScanReadError(f"{path}: multi-frame DICOM files cannot be read slab by slab. Potential fix: read the "
                            f"scan in memory (drop --low-memory), or export one file per slice.")
    _check_file_sizes(chosen)
    geometry = slice_geometry(chosen, path)
    h = chosen.first
    shape = (len(geometry.order), h.rows, h.cols)
    spacing = (geometry.spacing_z, h.pixel_spacing[0], h.pixel_spacing[1])
    slopes = np.array([x.slope for x, _ in geometry.order], float)
    intercepts = np.array([x.intercept for x, _ in geometry.order], float)
    scan = DicomSlabs(geometry, shape=shape, spacing=spacing)
    # is_binary needs every voxel: the slab segmentation's first pass sets it
    meta = _meta(chosen, path, slopes, intercepts, scan.unit_sample(), is_binary=False)
    scan.unit = meta.pop("unit")
    scan.meta = {**meta, "skipped": skipped, "read": "slab by slab"}
    return scan


_MET_TYPES = {"MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2", "MET_UINT": "u4",
              "MET_INT": "i4", "MET_ULONG_LONG": "u8", "MET_LONG_LONG": "i8", "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}


def _mhd_header(path: Path) -> dict:
    fields = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def mhd_voxels(path: Path) -> int:
    """Voxel count of a MetaImage header (0 when it does not say)."""
    try:
        return math.prod(int(v) for v in _mhd_header(path).get("DimSize", "0").split())
    except ValueError:
        return 0


def open_mhd_slabs(path: Path) -> ArraySlabs:
    """A MetaImage (.mhd + uncompressed raw data file) memory-mapped, read slab by slab.

    Geometry comes from SimpleITK's reading of the header, as in `read_scan`; the values are the raw
    file's, cast to float32 (equal to `read_scan`'s)."""
    import SimpleITK as sitk

    from .formats import sitk_reason, file_unit_and_meta

    path = Path(path)
    header = _mhd_header(path)
    dims = [int(v) for v in header.get("DimSize", "").split()] if header.get("DimSize") else []
    kind = _MET_TYPES.get(header.get("ElementType", ""))
    data_name = header.get("ElementDataFile", "")
    problem = None
    if len(dims) != 3 or int(header.get("NDims", "3")) != 3:
        problem = f"DimSize {dims} is not 3D"
    elif header.get("CompressedData", "False").lower() == "true":
        problem = "its data are compressed"
    elif int(header.get("ElementNumberOfChannels", "1")) != 1:
        problem = "its pixels have several channels"
    elif kind is None:
        problem = f"ElementType {header.get('ElementType')!r} is not a plain number type"
    elif data_name in ("", "LOCAL", "LIST") or " " in data_name or "%" in data_name:
        problem = f"ElementDataFile {data_name!r} is not one separate raw file"
    if problem:
        raise ScanReadError(f"{path}: this MetaImage cannot be read slab by slab: {problem}. Potential fix: drop "
                            f"--low-memory, or save it as one uncompressed .raw file beside the .mhd.")
    msb = (header.get("BinaryDataByteOrderMSB") or header.get("ElementByteOrderMSB") or "False").lower() == "true"
    dtype = np.dtype(kind).newbyteorder(">" if msb else "<")
    data = path.parent / data_name
    shape = tuple(dims[::-1])
    n_bytes = math.prod(shape) * dtype.itemsize  # Python integers: a corrupt DimSize cannot overflow
    size = data.stat().st_size if data.is_file() else -1
    offset = int(header.get("HeaderSize", "0"))
    offset = size - n_bytes if offset == -1 else offset
    if size < offset + n_bytes or offset < 0:
        raise ScanReadError(f"{data}: the header claims {n_bytes} bytes of data but the file has "
                            f"{max(size, 0)} bytes: missing, truncated or corrupt.")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with native_stderr_held(str(path)) as said:
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ScanReadError(f"{path}: cannot read image header ({sitk_reason(exc, said)})") from exc
    array = np.memmap(data, dtype=dtype, mode="r", offset=offset, shape=shape)
    scan = ArraySlabs(array, spacing=tuple(reader.GetSpacing())[::-1], origin=tuple(reader.GetOrigin()),
                      direction=np.array(reader.GetDirection()).reshape(3, 3))
    # is_binary needs every voxel: the slab segmentation's first pass sets it
    scan.unit, meta = file_unit_and_meta(scan.unit_sample(), path, "sitk", None, is_binary=False)
    scan.meta = {**meta, "read": "slab by slab"}
    return scan


def open_slabs(path: Path, series=None, *, spacing=None) -> ScanSlabs:
    """A folder holding a DICOM series or an image stack, or a MetaImage (.mhd) or Scanco ISQ / AIM, read slab by
    slab."""
    from .scanco import is_scanco, open_scanco_slabs

    path = Path(path)
    if is_mhd(path):
        return open_mhd_slabs(path)
    if is_scanco(path):
        return open_scanco_slabs(path)
    if path.is_file() or not path.exists():
        raise ScanReadError(f"{path}: only a folder holding a DICOM series or an image stack (one file per slice), a "
                            f"MetaImage (.mhd) or a Scanco ISQ or AIM can be read slab by slab. Potential fix: drop "
                            f"--low-memory, or export the scan slice by slice.")
    if is_image_stack(path):
        return open_stack_slabs(path, spacing)
    return open_dicom_slabs(path, series)


def is_mhd(path: Path) -> bool:
    return Path(path).is_file() and Path(path).name.lower().endswith(".mhd")


def slabs_if_too_big(path: Path, *, spacing=None, share: float = 1.0) -> ScanSlabs | None:
    """An image stack (one file per slice), a MetaImage or a Scanco ISQ / AIM that would not fit in ``share`` of the
    memory available, as its `ScanSlabs`; None for anything else (it is read in memory). Only a header or a first
    picture is read. DICOM series are decided in `open_dicom_auto`, which reads their headers once for either path."""
    from .scanco import is_scanco, open_scanco_slabs, read_scanco_header
    from .stacks import read_stack_page, stack_files

    path = Path(path)
    if is_image_stack(path):
        files = stack_files(path)
        if len(files) > 1 and not fits_in_memory(len(files) * read_stack_page(files[0]).size, share=share):
            return open_stack_slabs(path, spacing)
    elif is_mhd(path) and not fits_in_memory(mhd_voxels(path), share=share):
        try:
            return open_mhd_slabs(path)
        except ScanReadError:  # e.g. compressed: the in-memory reader reads it, or says what is wrong
            return None
    elif is_scanco(path):
        try:
            header = read_scanco_header(path)
            if not fits_in_memory(math.prod(header.shape_zyx), share=share):
                return open_scanco_slabs(path, header)
        except ScanReadError:  # the in-memory reader says what is wrong
            return None
    return None


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation now, or None where unknown: Linux ``MemAvailable``, plus the
    freed memory this process keeps for reuse (a batch worker's previous scan; `ctbone.memory`), which
    the system does not count as available."""
    from ..memory import kept_free_bytes

    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 + kept_free_bytes()
    except OSError:
        return None
    return None


def fits_in_memory(n_voxels: int, *, share: float = 1.0) -> bool:
    """Whether the in-memory path's ~`IN_MEMORY_BYTES_PER_VOXEL` bytes per voxel fit in ``share`` of the
    memory available now (True where that is unknown)."""
    available = available_memory_bytes()
    return available is None or n_voxels * IN_MEMORY_BYTES_PER_VOXEL <= share * available


def open_dicom_auto(path: Path, series=None, *, allow_nonuniform: bool = False, share: float = 1.0):
    """`open_scan(memory="auto")` for a DICOM folder: the chosen series' voxels are counted from its headers
    (read once, for either path), then it is read in memory if they fit in ``share`` of the memory available,
    else slab by slab where the series allows it (single-frame files, uniform spacing)."""
    from .dicom import find_series, read_dicom

    found = find_series(path, series)
    if not fits_in_memory(found[0].n_voxels, share=share):
        try:
            return open_dicom_slabs(path, series, found=found)
        except ScanReadError:  # multi-frame or non-uniform: the in-memory reader reads it, or says what is wrong
            pass
    return read_dicom(path, series, allow_nonuniform=allow_nonuniform, found=found)
