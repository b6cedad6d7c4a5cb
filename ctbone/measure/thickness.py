"""Local thickness (Hildebrand & Rüegsegger 1997): the diameter of the largest inscribed ball.

Convention (the one BoneJ and ORMIR use without oversampling, see docs/metrics.md):
``D`` is the Euclidean distance, in mm, from a foreground voxel centre to the
nearest background voxel centre; the ball of a centre ``c`` is the set of voxel
centres ``x`` with ``|x - c| < D(c)`` (it never contains a background voxel);
the local thickness of a voxel is ``2 D(c)`` maximised over every ball that
contains it. A plate of ``n`` voxels thus measures ``n`` voxels when ``n`` is
even and ``n + 1`` when it is odd; a ball of radius ``r`` measures about ``2 r``.

Speed without approximation: the squared distance transform is ctbone's own
(`segment.distance`: it skips the lines of background around a thin structure);
a voxel ``p`` paints nothing if the *grid points* of its ball all lie in the ball
of a neighbour ``q = p + e``. That test is exact on the grid
and far stronger than the continuous one (``D(q) >= D(p) + |e|``, which almost
never holds on curved shapes): a table gives, for any radius, the largest squared
distance from ``p + e`` (``e`` one of the 26 neighbour steps) to a grid point of ``p``'s ball, built once per call from
the grid offsets sorted by length. The remaining balls are painted by a compiled
(numba) kernel, row by row, in parallel over z slabs, and each paints only what the ball
of a preceding neighbour (the one reaching farthest past it) does not cover (exact: see `_thickness_paint`), so a large
ball costs a crescent rather than its whole volume.
"""

from __future__ import annotations

import logging

import numpy as np

from ..volume import bounding_box, fold_blocks
from ._thickness_paint import paint_balls, paint_balls_iso
from ._thickness_ridge import INSIDE_RTOL, distance_ridge, ridge_balls

__all__ = ["INSIDE_RTOL", "distance_ridge", "local_thickness", "mean_local_thickness_mm", "squared_distance"]

log = logging.getLogger(__name__)


def local_thickness(mask: np.ndarray, *, spacing_mm=(1.0, 1.0, 1.0), outside: str = "background") -> np.ndarray:
    """Local thickness map of a binary structure, in mm.

    Parameters
    ----------
    mask : (Z, Y, X) array of bool or 0/1
        The structure (bone, cortex, or the marrow space for Tb.Sp).
    spacing_mm : tuple of 3 float, keyword-only
        Voxel size along (z, y, x), mm; anisotropic spacing is honoured exactly.
    outside : {"background", "open"}, keyword-only
        What lies beyond the array: "background" (the structure ends at the array
        edge) or "open" (the edge is not a wall: only background voxels in the array count).

    Returns
    -------
    (Z, Y, X) float32 ndarray
        Diameter (mm) of the largest inscribed ball containing each voxel; 0 outside the mask.

    References
    ----------
    Hildebrand T, Rüegsegger P. A new method for the model-independent assessment of thickness in
    three-dimensional images. J Microsc 1997;185:67-75.

    Examples
    --------
    >>> import numpy as np
    >>> plate = np.zeros((12, 20, 20), bool); plate[4:8] = True      # 4 voxels thick along z
    >>> float(local_thickness(plate, spacing_mm=(0.5, 1, 1))[6, 10, 10])
    2.0
    """
    mask = _check_mask(mask)
    spacing = _check_spacing(spacing_mm)
    thickness, _, box = _thickness_on_box(mask, spacing, outside)
    if box is not None and thickness.shape == mask.shape:
        return thickness
    out = np.zeros(mask.shape, np.float32)
    if box is not None:
        out[box] = thickness
    return out


def _thickness_on_box(mask: np.ndarray, spacing, outside: str, *, as_codes: bool = False):
    """(local thickness on the mask's bounding box plus one voxel, None, that box); (None, None, None) for an
    empty mask. ``as_codes``: on an isotropic grid, (uint16 codes, their float32 values, box) instead, the map
    being ``values[codes]`` (`_local_thickness_dense`).

    The box gives the same distances as the whole array: a background voxel beyond it is never nearer than
    its projection onto the box's margin layer. Means need no map of the whole array (one float32 volume less).
    """
    if outside not in ("background", "open"):
        raise ValueError(f"outside must be 'background' or 'open', got {outside!r}")
    box = bounding_box(mask, margin_vox=1)
    if box is None:
        return None, None, None
    return *_local_thickness_dense(np.ascontiguousarray(mask[box]), spacing, outside, as_codes=as_codes), box


def _local_thickness_dense(mask: np.ndarray, spacing, outside: str, *, as_codes: bool = False):
    """(the local thickness map of ``mask``, float32, None); with ``as_codes`` on an isotropic grid (uint16
    codes, float32 values), the map being ``values[codes]``: each ball paints its squared radius in voxel² (a
    whole number, ordered as the diameters are) into half the memory of the map, the morphometry's peak."""
    if outside == "open" and mask.all():  # no background voxel at all: the array edge is the only wall
        outside = "background"
    # uint16 voxel² on isotropic grids (half the memory at the morphometry's peak), the same mm² values
    dist2, pad, scale = _squared_distance_padded(mask, spacing, outside, compact=True)
    # ridge and parents in the padded array's indices: its layer of background is 0, which no ball contains
    # and no parent has, so they are the unpadded array's, shifted by the pad
    # centres come z-sorted, so each slab of the painting finds its balls fast
    centres, radii2, parents, parent_r2 = ridge_balls(dist2, spacing_mm=spacing, scale=scale)
    del dist2
    if log.isEnabledFor(logging.DEBUG):  # the count is a pass over the mask
        log.debug("local thickness: %d foreground voxels, %d ridge balls", int(mask.sum()), len(radii2))
    if pad:
        centres -= pad
        parents[parents[..., 0] >= 0] -= pad
    voxel = _isotropic_voxel_mm(spacing, float(radii2.max()))
    if voxel is not None:
        # isotropic grid: squared distances are whole multiples of voxel², so the ball's rows come from
        # an integer table (no square root per row) -- same grid points, same values
        k2 = np.rint(radii2 / voxel ** 2).astype(np.int32)
        parent_k2 = np.rint(parent_r2 / voxel ** 2).astype(np.int32)
        values = (2.0 * np.sqrt(radii2)).astype(np.float32)
        del radii2, parent_r2  # the balls' tables are as large as a few crop-sized masks (2.4 M balls at 512^3)
        if as_codes:  # k2 < _MAX_ISO_K2 < 65536; distinct k2, distinct diameters (ordered alike)
            table = np.zeros(int(k2.max()) + 1, np.float32)
            table[k2] = values
            values, out = k2.astype(np.uint16), np.zeros(mask.shape, np.uint16)
        else:
            table, out = None, np.zeros(mask.shape, np.float32)  # made once the distances are gone
        paint_balls_iso(out, centres, k2, parents, parent_k2, values)
    else:
        # anisotropic grids: the first parent only, float32 values
        table, out = None, np.zeros(mask.shape, np.float32)
        paint_balls(out, centres, radii2, np.ascontiguousarray(parents[:, 0]), np.ascontiguousarray(parent_r2[:, 0]),
                    np.asarray(spacing, np.float64))
    np.multiply(out, mask, out=out)  # 0 off the mask (values are >= 0): no inverted copy of the mask
    return out, table


# the integer path is exact while voxel² steps stay far above the float slack (k < 1 / INSIDE_RTOL)
_MAX_ISO_K2 = int(0.5 / INSIDE_RTOL)


def _isotropic_voxel_mm(spacing, max_r2_mm2: float) -> float | None:
    """The voxel size if the grid is isotropic (to 1e-9) and the largest ball fits the integer table, else None."""
    voxel = spacing[0]
    if any(abs(s - voxel) > 1e-9 * voxel for s in spacing):
        return None
    if max_r2_mm2 / voxel ** 2 >= _MAX_ISO_K2:
        return None
    return float(voxel)



def squared_distance(mask: np.ndarray, *, spacing_mm, outside: str = "background") -> np.ndarray:
    """Squared distance (mm²) of every foreground voxel centre to the nearest background voxel centre
    (0 on the background; ``inf`` everywhere if there is none and ``outside`` is "open")."""
    dist2, pad, _ = _squared_distance_padded(mask, spacing_mm, outside)
    return np.ascontiguousarray(dist2[pad:dist2.shape[0] - pad, pad:dist2.shape[1] - pad, pad:dist2.shape[2] - pad])


def _squared_distance_padded(mask: np.ndarray, spacing_mm, outside: str, *, compact: bool = False):
    """(`squared_distance` on the mask padded by ``pad`` voxels, pad, scale): pad 1 for "background", where the
    array's edge is a wall (a layer of background around it), 0 for "open". Local thickness works on the padded
    array as it is: cutting the pad off is a copy as large as the distances, held beside them. ``compact``: the
    values of `segment.distance.squared_distance_compact` (mm² = float32(value) * scale); else mm², scale 1."""
    from ..segment.distance import squared_distance_compact, squared_distance_mm2

    background = ~np.asarray(mask, dtype=bool)
    pad = 1 if outside == "background" else 0
    sites = np.pad(background, 1, constant_values=True) if pad else background
    del background
    if compact:
        values, scale = squared_distance_compact(sites, spacing_mm=spacing_mm)
    else:
        values, scale = squared_distance_mm2(sites, spacing_mm=spacing_mm), np.float32(1.0)
    return values, pad, scale



def _check_mask(mask) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"local thickness needs a 3D (z, y, x) mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def _check_spacing(spacing_mm) -> tuple[float, float, float]:
    spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing_mm, float), (3,)))
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_mm must be 3 positive mm values (z, y, x), got {spacing_mm}")
    return spacing


# a structure estimated at more than this many voxels across is measured on a grid coarsened so it
# stays at least this wide (the marrow space of a finely scanned bone: Tb.Sp); see mean_local_thickness_mm
COARSE_MIN_VOX_ACROSS = 32
# ... and keeps the thinnest walls between its parts (trabeculae, for the marrow space) this many coarse voxels
# thick, or they would vanish in the block average and merge the spaces they separate
COARSE_MIN_VOX_WALL = 3


def mean_local_thickness_mm(mask: np.ndarray, *, spacing_mm, outside: str = "open", wall_mm: float | None = None,
                            min_vox_across: int | None = COARSE_MIN_VOX_ACROSS) -> tuple[float, int]:
    """Mean local thickness (mm) of a structure, on a coarser grid when it is many voxels across.

    Painting costs about the cube of the ball radius, so a wide structure (the marrow space at 4 µm:
    ~90 voxels across) dominates the run time while its thickness needs no such resolution. When
    4 × the mean distance to the background (a lower estimate of the thickness: a slab's mean distance
    is T/4, a rod's T/6) exceeds ``2 * min_vox_across`` voxels, the mask is block-averaged by the
    largest factor f keeping it ``min_vox_across`` coarse voxels across (a block is in the structure
    when at least half of it is), measured there, and spread back to the fine voxels (voxels of the
    fine mask left out by the blocks take their neighbours' value). ``wall_mm``, the thickness of the
    thinnest walls separating the structure's parts (Tb.Th for the marrow space), caps f so those walls
    stay ``COARSE_MIN_VOX_WALL`` coarse voxels thick. Measured on the 512³ bench phantom's marrow space
    (f = 2): +0.7 % vs the exact full-resolution mean, 2.5 s instead of 40 s; tests/test_thickness.py
    bounds it at 3 %. ``min_vox_across=None`` always measures at full resolution.

    Returns
    -------
    mean_mm : float
        NaN for an empty mask.
    factor : int
        The coarsening factor used (1 = full resolution).
    """
    mask = _check_mask(mask)
    spacing = _check_spacing(spacing_mm)
    if not mask.any():
        return float("nan"), 1
    factor = 1 if min_vox_across is None else _coarsening_factor(mask, spacing, min_vox_across)
    if wall_mm is not None and np.isfinite(wall_mm):
        factor = max(1, min(factor, int(wall_mm / (COARSE_MIN_VOX_WALL * max(spacing)))))
    if factor == 1:
        # the mask's voxels all lie in the box, in the same order: the same values summed the same way
        thickness, table, box = _thickness_on_box(mask, spacing, outside, as_codes=True)
        values = thickness[mask[box]]
        del thickness
        return float((values if table is None else table[values]).mean()), 1
    from scipy import ndimage

    f = factor
    pad = [(0, (-n) % f) for n in mask.shape]
    padded = (np.pad(mask, pad) if any(p for _, p in pad) else mask).view(np.uint8)
    # fine voxels of the structure in each f³ block: the block is in the coarse structure when at least half.
    # Counted in bytes while a block's count fits one (f <= 6; the first fold was an int32 volume half the
    # mask's size at f = 2, the morphometry's peak), then widened on the coarse grid
    counts = fold_blocks(padded, f, np.add, np.uint8 if f ** 3 <= 255 else np.int32).astype(np.int32)
    del padded
    coarse = 2 * counts >= f ** 3
    thickness = local_thickness(coarse, spacing_mm=tuple(s * f for s in spacing), outside=outside)
    # blocks holding a few fine voxels but under half: their neighbours' thickness
    thickness = np.where(coarse, thickness, ndimage.grey_dilation(thickness, size=3))
    # each fine voxel takes its block's value: the mean weighs blocks by their fine voxels
    return float((thickness.astype(np.float64) * counts).sum() / counts.sum()), f


def _coarsening_factor(mask: np.ndarray, spacing, min_vox_across: int) -> int:
    """The largest f with (estimated thickness in voxels) / f >= min_vox_across; 1 if none (or anisotropic)."""
    if max(spacing) > 1.5 * min(spacing):
        return 1
    # the estimate on a 4x-subsampled grid costs 1/64 of an EDT at full resolution
    import edt

    sub = np.ascontiguousarray(mask[::4, ::4, ::4])
    if not sub.any():
        return 1
    dist = edt.edt(sub, anisotropy=tuple(4 * s for s in spacing), black_border=False)
    across_vox = 4.0 * float(dist[sub].mean()) / min(spacing)
    return max(1, int(across_vox // min_vox_across))
