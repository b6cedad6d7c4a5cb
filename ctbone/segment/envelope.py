"""Periosteal envelope: the bone filled, with cortical openings bridged.

A morphological closing with a ball of radius ``bridge_diameter_mm / 2``
(Osteolytica principle: the closing radius must be at least half the widest
hole to bridge), computed with exact Euclidean ball dilations (`distance.within_mm`)
so the ball is round in mm on anisotropic grids, then a slice-wise hole fill across
the long axis (z) so the marrow cavity, open at the cut ends of the shaft, is
inside the envelope.
"""

from __future__ import annotations

import numpy as np

from ..parallel import thread_count
from ..volume import Volume, bounding_box
from .distance import within_mm
from .flood import flood_in_slices
from .morphology import erode_by


def distance_to(mask: np.ndarray, spacing_mm) -> np.ndarray:
    """Euclidean distance in mm from every voxel to the nearest ``True`` voxel (0 on it)."""
    import edt

    return edt.edt(np.ascontiguousarray(~mask), anisotropy=tuple(spacing_mm), black_border=False,
                   parallel=thread_count())


def distance_inside(mask: np.ndarray, spacing_mm) -> np.ndarray:
    """Euclidean distance in mm from every ``True`` voxel to the nearest ``False`` voxel (0 outside)."""
    import edt

    return edt.edt(np.ascontiguousarray(mask), anisotropy=tuple(spacing_mm), black_border=False,
                   parallel=thread_count())


def near_outside(mask: np.ndarray, *, spacing_mm, distance_mm: float) -> np.ndarray:
    """Voxels of ``mask`` within ``distance_mm`` of a voxel outside it (centre to centre; the array's
    edge is not outside): exactly ``mask & (distance_inside(mask) <= distance_mm)``, by an erosion with
    the ball of grid offsets, which for a few voxels is several times faster than a distance transform."""
    half = [int(np.floor(distance_mm / s)) for s in spacing_mm]
    offsets = np.mgrid[tuple(slice(-h, h + 1) for h in half)]
    ball = sum((o * s) ** 2 for o, s in zip(offsets, spacing_mm)) <= distance_mm ** 2
    out = erode_by(mask, ball, border_value=True)
    np.logical_not(out, out=out)
    out &= mask  # in place: one volume-sized array, not three
    return out


def close_mm(mask: np.ndarray, *, spacing_mm, radius_mm: float) -> np.ndarray:
    """Binary closing with a Euclidean ball of ``radius_mm`` (inclusive), border-safe."""
    if radius_mm <= 0:
        return mask.astype(bool, copy=True)
    pad = [int(np.ceil(radius_mm / s)) + 1 for s in spacing_mm]
    padded = np.pad(mask.astype(bool), [(p, p) for p in pad])
    space = within_mm(padded, spacing_mm=spacing_mm, radius_mm=radius_mm)
    del padded  # the padded box is the segment stage's memory peak: one copy at a time
    np.logical_not(space, out=space)  # the space the dilation left
    # the erosion: what is not within the radius of that space; wanted in the unpadded rows and columns
    # only (the padding's slices drop out after)
    inner = tuple(slice(p, -p) for p in pad)
    closed = within_mm(space, spacing_mm=spacing_mm, radius_mm=radius_mm, yx_box=inner[1:])
    del space
    closed = closed[inner[0]]
    return np.logical_not(closed, out=closed)


def open_mm(mask: np.ndarray, *, spacing_mm, radius_mm: float) -> np.ndarray:
    """Binary opening with a Euclidean ball of ``radius_mm`` (inclusive): the union of the balls that fit
    in ``mask``. The array's edge is not outside (the shaft goes on beyond the first and last slices)."""
    if radius_mm <= 0:
        return mask.astype(bool, copy=True)
    core = ~within_mm(~np.asarray(mask, bool), spacing_mm=spacing_mm, radius_mm=radius_mm)
    return within_mm(core, spacing_mm=spacing_mm, radius_mm=radius_mm) & mask


def fill_slices(mask: np.ndarray) -> np.ndarray:
    """Fill holes within each z slice: background not 8-connected, in its slice, to the slice's edge.

    Within a slice only: the marrow cavity of a cut shaft is open along z, so a 3D fill would leave
    it outside the envelope.

    Same result as ``ndimage.binary_fill_holes(mask, structure=<3x3 in-slice>)`` (tested), by a compiled
    flood fill from each slice's edge, in parallel over slices (scipy's iterated dilation took 5 s at 512^3).
    """
    reached = flood_in_slices(~np.asarray(mask, dtype=bool), connectivity=8)
    return np.logical_not(reached, out=reached)


def periosteal_envelope_array(bone: np.ndarray, *, spacing_mm, bridge_diameter_mm: float) -> np.ndarray:
    """Kernel of `periosteal_envelope` on a plain boolean array."""
    closed = close_mm(bone, spacing_mm=spacing_mm, radius_mm=bridge_diameter_mm / 2.0)
    return fill_slices(closed) | bone.astype(bool)


# a slice whose envelope holds less non-bone space than this fraction of the stack's median did not close
OPEN_SPACE_FRACTION = 0.25


def open_envelope_slices(envelope: np.ndarray, bone: np.ndarray) -> np.ndarray:
    """(Z,) bool: slices where the envelope did not close around the marrow, between slices where it did.

    An opening the ball does not bridge (wider than the bridge, or narrower in a thin cortex: the ball dips
    into it from outside and from the marrow) leaves the closed bone open in its slices, so their slice fill
    finds no cavity: the envelope there is little more than the bone, and the marrow of those slices is lost to
    TV and the compartments. Such a slice holds under ``OPEN_SPACE_FRACTION`` of the median non-bone space
    of the slices that hold any; only runs with closed slices on both sides are reported (at the ends of
    the stack the bone may simply stop).
    """
    space, median = _nonbone_space(envelope, bone)
    if median is None:
        return np.zeros(space.shape, bool)
    low = space < OPEN_SPACE_FRACTION * median
    closed = np.flatnonzero(~low)
    if closed.size == 0:
        return np.zeros(space.shape, bool)
    inner = np.zeros(space.shape, bool)
    inner[closed[0]:closed[-1] + 1] = True
    return low & inner


def _nonbone_space(envelope: np.ndarray, bone: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(non-bone voxels of the envelope per slice, their median over the slices holding any; None if none do)."""
    space = (np.asarray(envelope, bool) & ~np.asarray(bone, bool)).sum(axis=(1, 2))
    held = space[space > 0]
    return space, (float(np.median(held)) if held.size else None)


def bridge_open_slices(envelope: np.ndarray, bone: np.ndarray, open_slices: np.ndarray, *,
                       spacing_mm) -> tuple[np.ndarray, np.ndarray]:
    """(``envelope`` bridged, (Z,) bool of the slices bridged) where runs of open slices lost their marrow.

    In each run of ``open_slices`` (interior runs, `open_envelope_slices`) the outline is interpolated between
    the closed slices on both sides (the signed distances to their outlines, weighted by distance along z), so
    the periosteal surface continues across the opening as it runs on either side. A slice takes it only when
    what it adds within the slice's own bone's convex hull is marrow-sized (at least half the median non-bone
    space of the stack): the marrow an opening let out lies inside the broken ring, while a stretch of bone
    that merely narrows, or whose marrow is small, would only gain a rim outside its bone.
    """
    out = np.array(envelope, dtype=bool, copy=True)
    bridged = np.zeros(out.shape[0], bool)
    _, median = _nonbone_space(out, bone)
    if median is None:
        return out, bridged
    marrow_vox = 0.5 * median
    yx = tuple(spacing_mm[1:])
    for a, b in slice_runs(open_slices):
        below, above = _signed_distance_2d(out[a - 1], yx), _signed_distance_2d(out[b], yx)
        for k in range(a, b):
            t = (k - (a - 1)) / (b - (a - 1))
            add = ((1.0 - t) * below + t * above > 0) & ~out[k]
            if np.count_nonzero(add & _convex_hull_2d(bone[k])) >= marrow_vox:
                out[k] |= add
                bridged[k] = True
    return out, bridged


def _convex_hull_2d(mask: np.ndarray) -> np.ndarray:
    """Convex hull of a 2-D mask (all False when empty), computed on its bounding box."""
    from skimage.morphology import convex_hull_image

    out = np.zeros(mask.shape, bool)
    box = bounding_box(mask[None], margin_vox=0)
    if box is not None:
        ys, xs = box[1], box[2]
        out[ys, xs] = convex_hull_image(mask[ys, xs])
    return out


def slice_runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.r_[0, np.asarray(flags, np.int8), 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _signed_distance_2d(mask: np.ndarray, spacing_yx) -> np.ndarray:
    """Signed distance (mm) to the outline of a 2-D mask: positive inside, negative outside."""
    mask = np.asarray(mask, dtype=bool)
    return np.where(mask, distance_inside(mask, spacing_yx), -distance_to(mask, spacing_yx))


def periosteal_envelope(bone: Volume, *, bridge_diameter_mm: float = 0.6) -> Volume:
    """The bone's periosteal envelope with openings up to ``bridge_diameter_mm`` bridged.

    Parameters
    ----------
    bone : Volume
        Bone mask (unit "mask").
    bridge_diameter_mm : float
        Widest opening (perforation) that the envelope must span, mm.

    Returns
    -------
    Volume
        uint8 mask: bone, marrow cavity, pores and bridged openings.
    """
    envelope = periosteal_envelope_array(
        bone.array.astype(bool), spacing_mm=bone.spacing, bridge_diameter_mm=bridge_diameter_mm
    )
    return bone.with_array(envelope.astype(np.uint8), unit="mask")
