"""Small geometric measures for lesions: surface patches, Feret diameter, components."""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.spatial import ConvexHull, QhullError

from ..parallel import run_in_chunks
from ..segment.labels import label_on_box
from ..segment.large_components import large_components
from ..segment.morphology import dilate_cross
from ..segment.smooth import gaussian_half_kernel
from ..volume import bounding_box
from ._band_normals import boundary_normals

# faces whose normal is this close to the z axis belong to the cut ends of the shaft, not the periosteum
_END_CAP_NZ = 0.9


class SurfaceNormals:
    """Unit outward normals of a mask's smoothed indicator, at the mask's boundary voxels.

    The boundary voxels are those with a face neighbour outside the mask (within the array): the
    only voxels `surface_area_mm2` asks about. Their normals are central differences of the smoothed
    indicator (scipy's ``gaussian_filter(mode="nearest")``, bit for bit; one-sided at the array's edges,
    as ``np.gradient``), taken once, with the filter computed only in the band the differences read
    (`_band_normals`: no smoothed volume); only the normals are kept, looked up by flat index (a few MB).
    """

    def __init__(self, inside: np.ndarray, *, spacing_mm, sigma_vox: float = 1.5):
        inside = np.asarray(inside, bool)
        self.spacing = tuple(float(s) for s in spacing_mm)
        self.shape = inside.shape
        # flat indices ascending (C order), as np.nonzero gives them
        self._flat, self._normals = boundary_normals(inside, gaussian_half_kernel(sigma_vox), self.spacing)

    def whole_area_mm2(self, inside: np.ndarray) -> float:
        """``surface_area_mm2(inside, inside, ...)`` for the mask these normals were made of, found from its
        boundary voxels (a few % of the crop) instead of six scans of the whole mask: the same faces, in the
        same order, summed the same way."""
        inside = np.asarray(inside, bool)
        if inside.shape != self.shape:
            raise ValueError(f"mask of shape {inside.shape}, the normals' is {self.shape}")
        sz, sy, sx = self.spacing
        face_area = (sy * sx, sz * sx, sz * sy)
        total = 0.0
        for axis in range(3):
            for shift in (1, -1):
                pos = _open_boundary_faces(self._flat, inside, axis, shift)
                if pos.size == 0:
                    continue
                n = self._normals[:, pos]
                keep = np.abs(n[0]) < _END_CAP_NZ
                total += face_area[axis] * float(np.abs(n[axis][keep]).sum())
        return total

    def at(self, index: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """(3, N) unit outward normals, (z, y, x) order, at boundary voxels ``index`` (as from np.nonzero)."""
        flat = np.ravel_multi_index(tuple(np.asarray(i, np.int64) for i in index), self.shape)
        pos = np.minimum(np.searchsorted(self._flat, flat), max(len(self._flat) - 1, 0))
        if len(flat) and (len(self._flat) == 0 or not np.array_equal(self._flat[pos], flat)):
            raise ValueError("surface normals asked at voxels off the mask's boundary")
        return self._normals[:, pos]


@njit(cache=True, inline="always")
def _open_face(src, inside, axis, shift, z, y, x):  # pragma: no cover - compiled
    # src voxel (z, y, x) whose neighbour one step along ``axis`` (direction ``shift``) lies in the array
    # and outside ``inside``
    if not src[z, y, x]:
        return False
    nz, ny, nx = src.shape
    a, b, c = z, y, x
    if axis == 0:
        a += shift
        if a < 0 or a >= nz:
            return False
    elif axis == 1:
        b += shift
        if b < 0 or b >= ny:
            return False
    else:
        c += shift
        if c < 0 or c >= nx:
            return False
    return not inside[a, b, c]


def _open_faces(src, inside, axis, shift):
    """(z, y, x) indices, in C order as np.nonzero, of src voxels with an open face along ``axis`` towards
    ``shift`` (`_open_face`); slices counted, then filled, in parallel, each at its own offset."""
    nz = src.shape[0]
    counts = np.zeros(nz + 1, np.int64)
    run_in_chunks(_count_open_faces, nz, src, inside, axis, shift, counts)
    starts = np.cumsum(counts)
    zs, ys, xs = (np.empty(starts[nz], np.int64) for _ in range(3))
    run_in_chunks(_fill_open_faces, nz, src, inside, axis, shift, starts, zs, ys, xs)
    return zs, ys, xs


@njit(cache=True, nogil=True)
def _count_open_faces(src, inside, axis, shift, counts, z0, z1):  # pragma: no cover - compiled
    # counts[z + 1]: the open faces of slice z, for z0 <= z < z1
    nz, ny, nx = src.shape
    for z in range(z0, z1):
        n = 0
        for y in range(ny):
            for x in range(nx):
                if _open_face(src, inside, axis, shift, z, y, x):
                    n += 1
        counts[z + 1] = n


@njit(cache=True, nogil=True)
def _fill_open_faces(src, inside, axis, shift, starts, zs, ys, xs, z0, z1):  # pragma: no cover - compiled
    # the open faces' indices of slices z0 .. z1 - 1, slice z's from starts[z] on
    nz, ny, nx = src.shape
    for z in range(z0, z1):
        i = starts[z]
        for y in range(ny):
            for x in range(nx):
                if _open_face(src, inside, axis, shift, z, y, x):
                    zs[i] = z
                    ys[i] = y
                    xs[i] = x
                    i += 1


@njit(cache=True)
def _open_boundary_faces(flat, inside, axis, shift):  # pragma: no cover - compiled
    # positions in ``flat`` (boundary voxels, C order) of the voxels with an open face along ``axis`` towards
    # ``shift`` (`_open_face`), in that order
    nz, ny, nx = inside.shape
    out = np.empty(flat.size, np.int64)
    n = 0
    for i in range(flat.size):
        f = flat[i]
        z = f // (ny * nx)
        y = (f // nx) % ny
        x = f % nx
        if _open_face(inside, inside, axis, shift, z, y, x):
            out[n] = i
            n += 1
    return out[:n]


def surface_normals(inside: np.ndarray, *, spacing_mm, sigma_vox: float = 1.5) -> SurfaceNormals:
    """Outward normals of ``inside``'s smoothed indicator (see `SurfaceNormals`)."""
    return SurfaceNormals(inside, spacing_mm=spacing_mm, sigma_vox=sigma_vox)


def surface_area_mm2(inside: np.ndarray, patch: np.ndarray, *, spacing_mm, normals: SurfaceNormals,
                     origin=(0, 0, 0)) -> float:
    """Area of the boundary of ``inside`` on faces of ``patch`` voxels, mm².

    Each face between an inside ``patch`` voxel and an outside voxel counts its face area times
    |n_k| (n = surface normal, k = the face's axis): summed over a surface, Σ|n_k|·|n_k|·A = A, so
    the staircase over-count of oblique surfaces (up to √3) cancels. Works on ``patch``'s bounding
    box plus one voxel (a face's neighbour is always inside it, or beyond the array's edge).
    ``inside`` and ``patch`` may be a box of the normals' grid starting at ``origin``, as long as the
    patch keeps one voxel from the box's edges where these are not the grid's edges (`label_boxes`).
    """
    box = bounding_box(inside & patch, margin_vox=1)
    if box is None:
        return 0.0
    sz, sy, sx = spacing_mm
    face_area = (sy * sx, sz * sx, sz * sy)
    inside_b = np.ascontiguousarray(inside[box], dtype=bool)
    src = inside_b & patch[box]  # a new, contiguous array
    origin = np.array([b.start for b in box]) + np.asarray(origin)
    total = 0.0
    for axis in range(3):
        for shift in (1, -1):
            # the box's own edge is the array's edge there (the margin keeps patch voxels off it
            # elsewhere): beyond the array is not a surface of the bone
            faces = _open_faces(src, inside_b, axis, shift)
            if faces[0].size == 0:
                continue
            n = normals.at(tuple(f + o for f, o in zip(faces, origin)))
            keep = np.abs(n[0]) < _END_CAP_NZ
            total += face_area[axis] * float(np.abs(n[axis][keep]).sum())
    return total


def label_boxes(labels: np.ndarray, n: int, *, margin_vox: int = 1):
    """Per label 1..n, its bounding box grown by ``margin_vox`` (clipped at the array's edges), or None.

    The boxes of ``ndimage.find_objects``, in one compiled pass over the slices in parallel (find_objects
    took 0.11 s a crop-sized label volume at 512^3, on one thread).
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "ub":
        raise TypeError(f"label_boxes needs unsigned integer labels, got {labels.dtype}")
    n = int(n) if n > 0 else int(labels.max(initial=0))  # as find_objects: no count, every label present
    if labels.size == 0:
        return [None] * n
    chunks = np.linspace(0, labels.shape[0], min(labels.shape[0], 64) + 1).astype(np.int64)
    m, big = chunks.size - 1, max(labels.shape)
    lo = np.full((m, n + 1, 3), big, np.int64)
    hi = np.full((m, n + 1, 3), -1, np.int64)
    run_in_chunks(_label_bounds, m, labels, n, chunks, lo, hi)
    lo, hi = lo.min(axis=0), hi.max(axis=0)
    out = []
    for k in range(1, n + 1):
        if hi[k, 0] < 0:
            out.append(None)
            continue
        out.append(tuple(slice(max(0, int(a) - margin_vox), min(size, int(b) + 1 + margin_vox))
                         for a, b, size in zip(lo[k], hi[k], labels.shape)))
    return out


@njit(cache=True, nogil=True)
def _label_bounds(labels, n, chunks, lo, hi, c0, c1):  # pragma: no cover - compiled
    # per z chunk c0 <= c < c1 and label: the lowest and highest (z, y, x) index holding it (``lo`` and ``hi``
    # arrive filled with the largest size and -1). Labels above n are ignored (as find_objects with max_label)
    nz, ny, nx = labels.shape
    for c in range(c0, c1):
        for z in range(chunks[c], chunks[c + 1]):
            for y in range(ny):
                for x in range(nx):
                    v = labels[z, y, x]
                    if v == 0 or v > n:
                        continue
                    if z < lo[c, v, 0]:
                        lo[c, v, 0] = z
                    if z > hi[c, v, 0]:
                        hi[c, v, 0] = z
                    if y < lo[c, v, 1]:
                        lo[c, v, 1] = y
                    if y > hi[c, v, 1]:
                        hi[c, v, 1] = y
                    if x < lo[c, v, 2]:
                        lo[c, v, 2] = x
                    if x > hi[c, v, 2]:
                        hi[c, v, 2] = x


def max_diameter_mm(points_zyx: np.ndarray, *, spacing_mm) -> float:
    """Largest distance between voxel centres (Feret) plus one voxel, mm."""
    if len(points_zyx) == 0:
        return 0.0
    pts = points_zyx * np.asarray(spacing_mm, dtype=float)
    if len(pts) > 4:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except (QhullError, ValueError):
            pass  # flat or degenerate set: use all points
    if len(pts) > 3000:
        pts = pts[:: len(pts) // 3000 + 1]
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(axis=-1)
    return float(np.sqrt(d2.max()) + float(np.mean(spacing_mm)))


def label_dtype(n: int):
    """The smallest unsigned type that holds labels 0..n: label volumes are crop-sized, and lesions are few."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def components(mask: np.ndarray, *, connectivity: int = 26):
    """(labels, n) of a boolean mask (cc3d, 26- or 6-connected).

    Labelled on the mask's bounding box (`label_on_box`): a small lesion mask costs its box only.
    """
    labels_box, n, box = label_on_box(mask, connectivity=connectivity)
    if box is None:
        return np.zeros(mask.shape, np.uint8), 0
    # the crop-sized labels in the smallest type that holds n (cc3d gives 4 bytes a voxel for large masks)
    dtype = label_dtype(n)
    if labels_box.shape == mask.shape:
        return labels_box.astype(dtype, copy=False), n
    labels = np.zeros(mask.shape, dtype)
    labels[box] = labels_box
    return labels, n


def keep_large(mask: np.ndarray, *, min_voxels: float, connectivity: int = 26) -> np.ndarray:
    """Components of ``mask`` with at least ``min_voxels`` voxels (`segment.large_components`).

    What ``cc3d.dust`` keeps, without its working copies: on a noisy mask (the woven-bone candidates
    hold a million specks of soft tissue) dust's ``np.isin`` made an int64 copy of the label image,
    the lesion stage's memory peak. Here: the mask's box labelled in slabs, their counts (compiled) and
    one lookup per slab.
    """
    return large_components(mask, min_voxels=min_voxels, connectivity=connectivity)


def touching(labels: np.ndarray, n: int, region: np.ndarray) -> np.ndarray:
    """Boolean (n + 1,) : label i has a voxel in or face-adjacent to ``region``."""
    hit = np.zeros(n + 1, bool)
    # on the labels' box plus one voxel: a labelled voxel's face neighbours all lie in it
    box = bounding_box(labels > 0, margin_vox=1)
    if box is None:
        return hit
    lab = labels[box]
    near = dilate_cross(region[box])
    hit[lab[near]] = True  # a fancy assignment: no sort of the hits, as np.unique would
    hit[0] = False
    return hit
