"""Image stacks: a folder of one picture per slice (TIFF, BMP, PNG), or one multi-page TIFF.

Bruker SkyScan's reconstruction (NRecon) writes such folders: ``<name>_rec00000123.bmp`` (8-bit, its
default), ``.png`` or 16-bit ``.tif``, one per slice, beside ``<name>_rec.log`` (which holds the pixel size)
and a preview picture of the reconstruction (``<name>_rec_spr.bmp``). The slices are the largest group of
pictures named alike (digits aside), read in natural name order; a lone picture named otherwise (the
preview) is left out, two stacks in one folder are refused. Pictures carry no voxel size: it comes from
``--spacing`` or the ``*_rec.log`` (`bruker_log`). TIFF is read with tifffile, BMP and PNG with Pillow
(SimpleITK reads NRecon's grayscale-palette BMP as three colour channels).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ..errors import GeometryError, ScanReadError, VoxelSizeMissingError
from ..volume import Volume
from .bruker_log import check_not_projections, read_rec_log, rec_log_meta
from .formats import _finish, has_suffix

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
PICTURE_SUFFIXES = (".bmp", ".png")
STACK_SUFFIXES = TIFF_SUFFIXES + PICTURE_SUFFIXES


def is_image_stack(path: Path) -> bool:
    """A folder of slice pictures (TIFF, BMP, PNG) and no DICOM files: read as an image stack.

    A DICOM export often holds a preview picture beside its slices, whose names may carry no extension: any
    other file that is DICOM (.dcm, or the DICM marker) makes the folder DICOM, and one BMP/PNG alone is a
    preview, not a scan (one multi-page TIFF is a stack)."""
    from .discover import has_dicom_marker

    path = Path(path)
    if not path.is_dir():
        return False
    files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    pictures = [p for p in files if has_suffix(p, STACK_SUFFIXES)]
    if not pictures or (len(pictures) == 1 and not has_suffix(pictures[0], TIFF_SUFFIXES)):
        return False
    others = [p for p in files if not has_suffix(p, STACK_SUFFIXES)]
    return not any(p.suffix.lower() == ".dcm" or has_dicom_marker(p) for p in others)


def is_stack_file(path: Path) -> bool:
    """One (multi-page) TIFF file: a stack of its own."""
    path = Path(path)
    return path.is_file() and has_suffix(path, TIFF_SUFFIXES)


def is_stack(path: Path) -> bool:
    """An image stack, as a folder of slice pictures (`is_image_stack`) or one multi-page TIFF (`is_stack_file`)."""
    return is_stack_file(path) or is_image_stack(path)


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _name_pattern(path: Path) -> str:
    """The file name with its digits left out: the slices of one stack share it."""
    return re.sub(r"\d+", "#", path.name.lower())


def stack_files(path: Path) -> list[Path]:
    """The slice files of a stack, in natural name order: the folder's largest group of pictures named alike
    (a lone picture named otherwise, such as NRecon's preview, left out), or the one multi-page TIFF file."""
    slices, left_out = stack_listing(path)
    if left_out:
        log.info("%s: %d slices named like %s; left out: %s", path, len(slices), slices[0].name, ", ".join(left_out))
    return slices


def stack_listing(path: Path) -> tuple[list[Path], list[str]]:
    """(`stack_files`, the names of the pictures left out)."""
    path = Path(path)
    if not path.is_dir():
        return [path], []
    pictures = sorted((p for p in path.iterdir() if p.is_file() and has_suffix(p, STACK_SUFFIXES)), key=_natural_key)
    groups: dict[str, list[Path]] = {}
    for p in pictures:
        groups.setdefault(_name_pattern(p), []).append(p)
    if len(groups) <= 1 or max(len(g) for g in groups.values()) == 1:
        return pictures, []  # one naming pattern, or names without one: every picture is a slice
    ranked = sorted(groups.values(), key=len, reverse=True)
    slices, others = ranked[0], ranked[1:]
    rivals = [g for g in others if len(g) > 1]
    if rivals:
        raise ScanReadError(f"{path}: holds more than one stack of pictures ({len(slices)} named like "
                            f"{slices[0].name}, {len(rivals[0])} like {rivals[0][0].name}). Potential fix: move "
                            f"each stack to its own folder")
    return slices, [g[0].name for g in others]


def stack_format(files: list[Path]) -> str:
    """"tiff", "bmp" or "png": the meta ``format`` of a stack of these files."""
    suffix = files[0].suffix.lower().lstrip(".")
    return "tiff" if suffix in ("tif", "tiff") else suffix


def _spacing3(spacing, path: Path):
    if spacing is None:
        return None
    values = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(v) for v in spacing)
    if len(values) != 3 or any(v <= 0 for v in values):
        raise GeometryError(f"{path}: spacing {spacing} must be one or three positive mm values.")
    return values


def stack_header(path: Path, files: list[Path], spacing=None) -> tuple[np.ndarray, tuple, dict]:
    """(first slice, voxel size (z, y, x) mm, the stack's meta) before its slices are read, in memory or slab by
    slab: projections refused, the voxel size from ``spacing`` or the Bruker log (read once), what the log says."""
    step = check_slice_numbers(path, files)
    first = read_stack_page(files[0])  # its size checks the log's; a missing voxel size is said before the read
    check_not_projections(path, first.shape)
    found = read_rec_log(path if path.is_dir() else path.parent)
    spacing3, source = stack_spacing(path, spacing, found, page_shape=first.shape)
    if step > 1 and source == "rec.log":
        log.warning("%s: the slice files are numbered every %d (%s, %s, ...): if only every %d-th slice was saved, "
                    "the slices are %d x %.4g mm apart, not %.4g. Potential fix: --spacing Z,Y,X (e.g. --spacing "
                    "%.4g,%.4g,%.4g)", path, step, files[0].name, files[1].name, step, step, spacing3[0],
                    spacing3[0], step * spacing3[0], spacing3[1], spacing3[2])
    return first, spacing3, {"spacing_source": source, "files": len(files), **rec_log_meta(found)}


def check_slice_numbers(path: Path, files: list[Path]) -> int:
    """The step of the slice numbers (1 when not known); refuses a stack whose slice numbers skip some (a file
    lost in a copy): every slice after the gap would be placed a slice too close to those before it, as a DICOM
    series with a missing slice would (refused too).

    The slice number is the one number in the names that changes from file to file (NRecon's
    ``<name>_rec00000123.bmp``); names with none, or with several changing, are not checked. A stack numbered
    in steps of k throughout is taken as it is (`stack_header` warns when its voxel size came from a log)."""
    if len(files) < 3:
        return 1
    runs = [re.findall(r"\d+", f.name) for f in files]
    if len({len(r) for r in runs}) != 1:
        return 1
    changing = [i for i in range(len(runs[0])) if len({int(r[i]) for r in runs}) > 1]
    if len(changing) != 1:
        return 1
    numbers = np.array([int(r[changing[0]]) for r in runs])
    steps = np.diff(numbers)
    step = int(steps.min())
    if step <= 0:
        return 1
    if np.all(steps == step):
        return step
    gaps = np.flatnonzero(steps != step)
    missing = int(sum(steps[g] // step - 1 for g in gaps))
    where = ", ".join(f"between {files[g].name} and {files[g + 1].name}" for g in gaps[:3])
    raise GeometryError(f"{path}: {missing} slice file(s) missing from the numbering ({where}); the slices after a gap "
                        "would be placed too close to those before it. Potential fix: restore the missing file(s), or "
                        "analyse the slices on each side of the gap as separate scans.")


def stack_spacing(path: Path, spacing, found: dict | None, page_shape=None) -> tuple[tuple[float, float, float], str]:
    """(voxel size (z, y, x) mm, where it came from) of an image stack: ``spacing``, else ``found``, what
    `read_rec_log` read of the Bruker log beside it.

    A log describing slices of another size than ``page_shape`` (resized or from another reconstruction) is
    still read, with a warning: its pixel size holds only if the pictures were cropped, not resized."""
    spacing3 = _spacing3(spacing, path)
    if spacing3 is not None:
        return spacing3, "given"  # --spacing, or the manifest's spacing_mm
    if found is None:
        raise VoxelSizeMissingError(f"{path}: slice pictures (TIFF, BMP, PNG) carry no voxel size. Potential fix: "
                                    f"pass --spacing MM (e.g. --spacing 0.0105), or keep the scanner's *_rec.log "
                                    f"beside the stack.")
    if not found["pixel_size_mm"] > 0:
        raise GeometryError(f"{found['file']}: pixel size {found['pixel_size_mm'] * 1000:g} um is not positive. "
                            f"Potential fix: pass --spacing MM")
    logged = (found["height"], found["width"])
    if page_shape is not None and None not in logged and tuple(page_shape) != logged:
        log.warning("%s: %s describes %d x %d slices of %.4g mm, these are %d x %d: if they were resized after the "
                    "reconstruction (DataViewer, CTAn), that pixel size is wrong. Potential fix: --spacing MM (the "
                    "manifest's spacing_mm)", path, found["file"].name, logged[1], logged[0], found["pixel_size_mm"],
                    page_shape[1], page_shape[0])
    return (found["pixel_size_mm"],) * 3, "rec.log"


def read_stack_page(file: Path, shape=None) -> np.ndarray:
    """One slice of a stack (a TIFF's first page, or a BMP/PNG picture), checked against the stack's ``shape``."""
    page = _read_tiff_page(file) if has_suffix(file, TIFF_SUFFIXES) else _read_picture(file)
    if page.ndim != 2:
        raise ScanReadError(f"{file}: image of shape {page.shape}; ctbone needs gray 2D slices.")
    if shape is not None and page.shape != tuple(shape):
        raise ScanReadError(f"{file}: image size {page.shape} differs from the stack's {tuple(shape)}.")
    return page


def _read_tiff_page(file: Path) -> np.ndarray:
    import tifffile

    try:
        return tifffile.imread(file, key=0)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds on corrupt files
        raise ScanReadError(f"{file}: cannot read TIFF ({type(exc).__name__}: {exc})") from exc


def _read_picture(file: Path) -> np.ndarray:
    """A BMP/PNG slice as its gray values: palette pictures through a gray palette, gray stored as RGB accepted."""
    from PIL import Image

    try:
        with Image.open(file) as picture:
            picture.load()
            mode = picture.mode
            if mode == "P":
                palette = np.asarray(picture.getpalette() or [], np.uint8).reshape(-1, 3)
                if not (palette[:, 0] == palette[:, 1]).all() or not (palette[:, 1] == palette[:, 2]).all():
                    raise ScanReadError(f"{file}: colour palette picture; ctbone needs gray slices.")
                return palette[np.asarray(picture), 0]
            array = np.asarray(picture)
    except ScanReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on corrupt files
        raise ScanReadError(f"{file}: cannot read picture ({type(exc).__name__}: {exc})") from exc
    if array.ndim == 3:  # RGB(A) or gray + alpha: accepted only when the colour channels are equal
        colour = array[..., :3] if array.shape[-1] >= 3 else array[..., :1]
        if (colour != colour[..., :1]).any():
            raise ScanReadError(f"{file}: colour picture ({mode}); ctbone needs gray slices.")
        array = colour[..., 0]
    return array


def read_stack(path: Path, spacing=None) -> Volume:
    """An image stack: a folder of one picture per slice (natural name order) or one multi-page TIFF."""
    files = stack_files(path)
    first, spacing3, extra = stack_header(path, files, spacing)
    if len(files) == 1 and has_suffix(files[0], TIFF_SUFFIXES):
        array = _read_multipage_tiff(files[0])
    else:
        array = np.empty((len(files),) + first.shape, np.float32)
        array[0] = first
        for i, file in enumerate(files[1:], start=1):
            array[i] = read_stack_page(file, first.shape)
    return _finish(array, path, spacing3, (0.0, 0.0, 0.0), np.eye(3), stack_format(files), extra)


def _read_multipage_tiff(file: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(file) as tif:
            first = tif.pages[0].asarray()
            if first.ndim != 2:
                raise ScanReadError(f"{file}: TIFF pages of shape {first.shape}; ctbone needs gray 2D pages.")
            array = np.empty((len(tif.pages),) + first.shape, np.float32)
            for i, page in enumerate(tif.pages):
                array[i] = page.asarray()
    except ScanReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds on corrupt files
        raise ScanReadError(f"{file}: cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    return array
