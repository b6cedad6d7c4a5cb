"""Segmentation of a scan read slab by slab, for scans larger than memory (issue 7).

The in-memory `segment` holds the whole scan several times over (calibrated, smoothed, thresholded,
labelled) before it crops to the bone. Here the whole scan is only ever seen one slab of slices at a
time, and only the block of all slices × the rows and columns around the bone of interest is read
into memory; from there on the in-memory code runs unchanged. The results equal the in-memory path's
on a scan that fits (tested): every step before the crop is reproduced exactly —

1. **First pass**: the calibrated range, whether the image is binary, and the automatic threshold from
   the same regular subsample of the flat scan that `auto_threshold` takes. Skipped with a fixed
   threshold when a few slices already show a gray image.
2. **Second pass**: smoothing (slabs overlap by the kernel's half-width, so every smoothed value is the
   whole-scan value), the threshold, and 26-connected particles labelled per slab and joined across
   slab faces (a union of labels that touch across the face); each particle's size and bounding box.
   Only the boxes within the kernel's reach of voxels at or above the threshold are smoothed: smoothing
   is a positive weighted mean, so nothing else can end above it.
3. **The block**: the largest particle and every particle big enough and whose bounding box lies within
   ``max_defect_diameter_mm`` of the largest's — a superset of the particles the despeckle keeps — give
   the rows and columns to read, with the crop margin. The despeckle then runs again on the block;
   since the block holds the largest particle whole, it keeps exactly the particles it keeps on the
   whole scan (a particle the block cuts is only smaller and farther).

Slices are never cropped, so ROIs in mm from the first slice and the automatic growth-plate ROI
mean the same. What must fit in memory is the block: all slices × the bone's rows and columns, about
what the in-memory path holds after its own crop.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..errors import SegmentationError
from ..options import AnalysisOptions
from ..volume import bounding_box
from . import _halo, _smooth, _widened, _within, reaching_threshold_yx
from .threshold import sample_stride, threshold_of_sample

log = logging.getLogger(__name__)

# voxels per slab: ~256 MB of float32 (the smoothing holds two more of the same size)
SLAB_VOXELS = 64_000_000
# a slab whose voxels above the threshold fall in more separate regions than this is smoothed in one box
MAX_REGIONS = 64


def segment_slabs(scan, options: AnalysisOptions | None = None, *, mode: str = "long-bone",
                  slab_voxels: int = SLAB_VOXELS):
    """`ctbone.segment.segment` of a `ScanSlabs`, holding one slab and the bone's block at a time.

    Parameters
    ----------
    scan : ScanSlabs
        E.g. `ctbone.io.open_scan(path, memory="slabs")`.
    options : AnalysisOptions
    mode : "long-bone", keyword-only
        A trabecular cube is the region of interest as a whole: read it in memory.
    slab_voxels : int, keyword-only
        Voxels per slab of the two passes over the scan (whole slices).

    Returns
    -------
    Segmentation
        Equal to ``segment(read_scan(path), options)``; ``info["slab_read"]`` tells what was read.
    """
    from . import _Work, _check_threshold_word, _geometry_of, _long_bone, _no_bone_error, _owned_values

    opts = options or AnalysisOptions()
    source = scan.meta.get("source", "the scan")
    if mode != "long-bone":
        raise SegmentationError(f"{source}: mode {mode!r} takes the whole volume as the region of interest, so it "
                                "is read in memory, not slab by slab. Potential fix: drop --low-memory (crop the "
                                "cube first if it does not fit).")
    if opts.bone is not None:
        raise SegmentationError(f"{source}: choosing a bone (--bone) needs the scan in memory, and it is read slab "
                                "by slab (--low-memory, or too large for the memory available). Potential fix: drop "
                                "--low-memory, or crop the scan to the bone wanted")
    t0 = time.perf_counter()
    calibrate, calibrated = _calibration(scan, opts)
    unit = calibrated.unit
    nz, ny, nx = scan.shape
    slab = max(1, min(nz, slab_voxels // (ny * nx)))
    if isinstance(opts.threshold, str) or not _surely_gray(scan, calibrate):
        lo, hi, binary, sample = _first_pass(scan, calibrate, slab, source)
    else:  # a fixed threshold on a gray image: the first pass has nothing to find (range only for an error)
        lo = hi = sample = None
        binary = False
    scan.meta["is_binary"] = calibrated.meta["is_binary"] = binary
    if binary:
        threshold, method, halo = (lo + hi) / 2, "binary-input", 0
    else:
        if isinstance(opts.threshold, str):
            _check_threshold_word(opts.threshold, source)
            threshold, method = threshold_of_sample(sample, source=source)
        else:
            threshold, method = float(opts.threshold), "fixed"
        halo = _halo(opts)
    del sample

    def smooth(block: np.ndarray, yx_box) -> np.ndarray:
        return _smooth(block, binary, opts, yx_box)  # as the in-memory path smooths

    particles = _particles(scan, calibrate, smooth, threshold, halo, slab)
    if particles["count"].size == 0:
        if lo is None:
            lo, hi, _, _ = _first_pass(scan, calibrate, slab, source)
        raise _no_bone_error(source, threshold, unit, lo, hi)
    log.info("threshold %.4g %s (%s)", threshold, unit, method)
    ys, xs = _rows_and_columns(particles, scan.spacing, scan.shape, opts)
    raw, image = _read_block(scan, calibrate, smooth, calibrated, halo, ys, xs, slab)
    bone = image.array > threshold
    info = {"slab_read": {"slab_slices": int(slab), "particles": int(particles["count"].size),
                          "block_yx": [[ys.start, ys.stop], [xs.start, xs.stop]],
                          "block_fraction": round((ys.stop - ys.start) * (xs.stop - xs.start) / (ny * nx), 4),
                          "seconds": round(time.perf_counter() - t0, 2)}}
    log.info("%s: read slab by slab; block of rows %d:%d, columns %d:%d (%.1f %% of each slice) in %.1f s",
             source, ys.start, ys.stop, xs.start, xs.stop, 100 * info["slab_read"]["block_fraction"],
             info["slab_read"]["seconds"])
    work = _Work(values=_owned_values(raw.array), grid=_geometry_of(raw), smoothed=image.array, bone=bone,
                 scan_geometry=_geometry_of(scan))
    del raw, image, bone
    return _long_bone(work, threshold, method, binary, opts, info, source, offset_yx=(ys.start, xs.start))


def _calibration(scan, opts):
    """(calibrate(block) -> float32 block in the analysis unit, a one-voxel calibrated Volume carrying that
    unit and the calibration's provenance), as `_calibrated` decides it for the whole scan (same checks,
    same float32 arithmetic)."""
    from ..calibrate import apply_calibration
    from . import _calibrated

    probe = _calibrated(scan.volume(np.zeros((1, 1, 1), np.float32)), opts)
    if probe.unit == scan.unit:
        return (lambda block: np.asarray(block, np.float32)), probe
    slope, intercept = probe.meta["calibration"]["slope"], probe.meta["calibration"]["intercept"]

    def calibrate(block):
        return apply_calibration(scan.volume(block), slope=slope, intercept=intercept).array

    return calibrate, probe


def _slabs(nz: int, slab: int, what: str):
    """z ranges of the slabs, with a progress bar on a terminal (a 2000-slice scan takes minutes)."""
    from tqdm import tqdm

    starts = range(0, nz, slab)
    for z0 in tqdm(starts, desc=what, unit="slab", leave=False, disable=None):
        yield z0, min(nz, z0 + slab)


def _surely_gray(scan, calibrate) -> bool:
    """True when the slices `looks_like_hu` samples already hold more than two values (not a binary image)."""
    from ..io.units import hu_sample_slices

    for z in hu_sample_slices(scan.shape[0]):
        values = calibrate(scan.read(z, z + 1)).ravel()
        if np.any((values != values.min()) & (values != values.max())):
            return True
    return False


def _first_pass(scan, calibrate, slab, source):
    """Calibrated min and max, binary or not, and `auto_threshold`'s subsample of the whole scan."""
    nz, ny, nx = scan.shape
    stride = sample_stride(scan.n_voxels, row_length=nx)
    lo, hi = np.inf, -np.inf
    levels: set = set()  # the distinct values seen, while there are at most two
    binary = True
    samples = []
    for z0, z1 in _slabs(nz, slab, "ctbone: range and threshold"):
        block = calibrate(scan.read(z0, z1))
        if not np.isfinite(block).all():
            raise SegmentationError(f"{source}: NaN or infinite voxel values in slices {z0}-{z1 - 1}. Potential "
                                    "fix: replace them (e.g. with the background value) before analysis.")
        flat = block.reshape(-1)
        first = (-z0 * ny * nx) % stride  # the flat scan's multiples of the stride that fall in this slab
        samples.append(flat[first::stride].copy())
        b_lo, b_hi = float(flat.min()), float(flat.max())
        lo, hi = min(lo, b_lo), max(hi, b_hi)
        if binary:
            levels |= {b_lo, b_hi}
            binary = len(levels) <= 2 and bool(np.all((block == np.float32(b_lo)) | (block == np.float32(b_hi))))
    return lo, hi, binary and len(levels) == 2, np.concatenate(samples)


def _particles(scan, calibrate, smooth, threshold, halo, slab) -> dict:
    """Size (voxels) and bounding box of every 26-connected particle of ``smooth(image) > threshold``,
    labelled slab by slab and joined across slab faces."""
    import cc3d
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nz, ny, nx = scan.shape
    counts, boxes, edges = [], [], []
    n_labels = 0
    below = None  # the previous slab's last slice of labels, in global label numbers (None: no bone there)
    for z0, z1 in _slabs(nz, slab, "ctbone: bone particles"):
        rz = _widened(slice(z0, z1), halo, nz)
        raw = calibrate(scan.read(rz.start, rz.stop))
        regions = _reach_above(raw, threshold, halo)
        if not regions:
            below = None
            continue
        ya, yb = min(r[0].start for r in regions), max(r[0].stop for r in regions)
        xa, xb = min(r[1].start for r in regions), max(r[1].stop for r in regions)
        bone = np.zeros((z1 - z0, yb - ya, xb - xa), bool)
        for ys, xs in regions:  # each smoothed with a halo of rows and columns around it: exact values
            ry, rx = _widened(ys, halo, ny), _widened(xs, halo, nx)
            smoothed = smooth(raw[:, ry, rx], (_within(ys, ry), _within(xs, rx)))[_within(slice(z0, z1), rz)]
            bone[:, ys.start - ya:ys.stop - ya, xs.start - xa:xs.stop - xa] |= smoothed > threshold
            del smoothed
        del raw
        labels, n = cc3d.connected_components(bone, connectivity=26, return_N=True)
        del bone
        if n:
            stats = cc3d.statistics(labels)
            counts.append(np.asarray(stats["voxel_counts"][1:], np.int64))
            box = np.array([[b[k].start for k in range(3)] + [b[k].stop for k in range(3)]
                            for b in stats["bounding_boxes"][1:]], np.int64).reshape(-1, 6)
            box += np.array([z0, ya, xa, z0, ya, xa])
            boxes.append(box)
        face = np.zeros((2, ny, nx), np.int64)  # first and last slice of labels, on the whole slice
        face[:, ya:yb, xa:xb] = _numbered(labels[[0, -1]], n_labels)
        if below is not None:
            edges.append(_touching(below, face[0]))
        below = face[1]
        n_labels += n
        del labels
    if n_labels == 0:
        return {"count": np.zeros(0, np.int64)}
    pairs = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0] - 1, pairs[:, 1] - 1)), shape=(n_labels, n_labels))
    _, particle = connected_components(graph, directed=False)
    count = np.bincount(particle, weights=np.concatenate(counts)).astype(np.int64)
    box = np.concatenate(boxes)
    lo = np.full((count.size, 3), np.iinfo(np.int64).max)
    hi = np.full((count.size, 3), -1)
    np.minimum.at(lo, particle, box[:, :3])
    np.maximum.at(hi, particle, box[:, 3:])
    # the particle's first label in raster order: the in-memory labelling's order, for ties in size
    first = np.full(count.size, n_labels)
    np.minimum.at(first, particle, np.arange(n_labels))
    return {"count": count, "lo": lo, "hi": hi, "first": first}


def _reach_above(raw: np.ndarray, threshold: float, halo: int) -> list:
    """(rows, columns) boxes of the slab outside which no voxel can be above ``threshold`` once smoothed.

    A voxel ends above the threshold only within ``halo`` voxels of the rows and columns
    `reaching_threshold_yx` finds: only those boxes need be smoothed. One box per separate region of the slab's
    projection (the bone, a far rod, the other limb), so a wide field of air between them is skipped; one box
    around everything when the regions are many (noise)."""
    from scipy import ndimage

    near = reaching_threshold_yx(raw, threshold)
    if not near.any():
        return []
    if halo:
        near = ndimage.binary_dilation(near, np.ones((2 * halo + 1,) * 2, bool))
    labels, n = ndimage.label(near, np.ones((3, 3), bool))
    return [bounding_box(near)] if n > MAX_REGIONS else ndimage.find_objects(labels)


def _numbered(labels: np.ndarray, offset: int) -> np.ndarray:
    """A slice of a slab's labels in the scan's label numbers (the slab's own plus ``offset``)."""
    return np.where(labels > 0, labels.astype(np.int64) + offset, 0)


def _touching(below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Pairs (label below, label above) of 26-neighbours across a slab face (two adjacent slices)."""
    ny, nx = below.shape
    pairs = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            a = below[max(0, -dy):ny - max(0, dy), max(0, -dx):nx - max(0, dx)]
            b = above[max(0, dy):ny - max(0, -dy), max(0, dx):nx - max(0, -dx)]
            both = (a > 0) & (b > 0)
            if both.any():
                pairs.append(np.stack([a[both], b[both]], axis=1))
    if not pairs:
        return np.zeros((0, 2), np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


def _rows_and_columns(particles, spacing_mm, shape, opts) -> tuple[slice, slice]:
    """Rows and columns around every particle the despeckle could keep, with the crop margin."""
    from . import CROP_MARGIN_VOX

    count, lo, hi = particles["count"], particles["lo"], particles["hi"]
    biggest = count.max()
    largest = int(np.flatnonzero(count == biggest)[np.argmin(particles["first"][count == biggest])])
    # voxel gap between each particle's box and the largest's, per axis: a lower bound of their distance
    gap = np.maximum(0, np.maximum(lo - hi[largest], lo[largest] - hi) + 1)
    gap_mm = np.sqrt(((gap * np.asarray(spacing_mm)) ** 2).sum(axis=1))
    big = count * float(np.prod(spacing_mm)) >= opts.min_particle_mm3
    kept = big & (gap_mm <= opts.max_defect_diameter_mm)
    kept[largest] = True
    return tuple(_widened(slice(int(lo[kept, a].min()), int(hi[kept, a].max())), CROP_MARGIN_VOX, shape[a])
                 for a in (1, 2))


def _read_block(scan, calibrate, smooth, calibrated, halo, ys, xs, slab):
    """The calibrated and smoothed images of all slices × rows ``ys`` × columns ``xs``; smoothed with
    ``halo`` extra rows and columns around them, so every value equals the whole scan's."""
    nz, ny, nx = scan.shape
    hy, hx = _widened(ys, halo, ny), _widened(xs, halo, nx)
    block = np.empty((nz, hy.stop - hy.start, hx.stop - hx.start), np.float32)
    for z0, z1 in _slabs(nz, max(slab, slab * ny * nx // block[0].size), "ctbone: bone block"):
        block[z0:z1] = calibrate(scan.read(z0, z1, hy, hx))
    inner = (slice(None), _within(ys, hy), _within(xs, hx))
    smoothed = smooth(block, inner[1:])
    raw = np.ascontiguousarray(block[inner])
    del block
    raw_volume = scan.volume(raw, y0=ys.start, x0=xs.start, unit=calibrated.unit, meta=calibrated.meta)
    return raw_volume, raw_volume.with_array(smoothed)
