"""Face-neighbour (6-connected, 4 in 2D) dilation and erosion by array shifts.

Same results as ``scipy.ndimage.binary_dilation`` / ``binary_erosion`` with their default cross
structure and border value 0 (tested), without scipy's per-voxel structure walk: 3-5x faster on
the full-size masks of the lesion and morphometry stages.
"""

from __future__ import annotations

import numpy as np


def _shifts(ndim: int, axis: int):
    """(destination, source) index pairs shifting by +1 and -1 along ``axis``."""
    def at(sl):
        index = [slice(None)] * ndim
        index[axis] = sl
        return tuple(index)

    return ((at(slice(1, None)), at(slice(None, -1))), (at(slice(None, -1)), at(slice(1, None))))


def _count(iterations: int) -> int:
    # scipy reads iterations < 1 as "until nothing changes": not offered here, so refused rather than misread
    if int(iterations) < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    return int(iterations)


def dilate_cross(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``mask`` grown by its face neighbours, ``iterations`` times (``ndimage.binary_dilation(mask, iterations=)``)."""
    out = np.asarray(mask, dtype=bool)
    for _ in range(_count(iterations)):
        mask, out = out, out.copy()
        for axis in range(mask.ndim):
            for dst, src in _shifts(mask.ndim, axis):
                out[dst] |= mask[src]
    return out


def erode_cross(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Voxels of ``mask`` whose face neighbours are all in it, outside the array counting as not, ``iterations``
    times (``ndimage.binary_erosion(mask, iterations=)``)."""
    out = np.asarray(mask, dtype=bool)
    for _ in range(_count(iterations)):
        mask, out = out, out.copy()
        for axis in range(mask.ndim):
            for dst, src in _shifts(mask.ndim, axis):
                out[dst] &= mask[src]
            edge = [slice(None)] * mask.ndim
            for end in (0, -1):
                edge[axis] = end
                out[tuple(edge)] = False
    return out


def erode_by(mask: np.ndarray, structure: np.ndarray, *, border_value: bool = False) -> np.ndarray:
    """``ndimage.binary_erosion(mask, structure, border_value=...)`` for a small point-symmetric
    ``structure`` (odd sizes), as an AND of shifted copies: one pass per structure element."""
    mask = np.asarray(mask, dtype=bool)
    structure = np.asarray(structure, dtype=bool)
    if structure.ndim != mask.ndim or any(n % 2 == 0 for n in structure.shape):
        raise ValueError("erode_by needs a structure of odd size per axis and the mask's dimension")
    if not np.array_equal(structure, structure[(slice(None, None, -1),) * structure.ndim]):
        raise ValueError("erode_by needs a point-symmetric structure")
    out = mask.copy()
    centre = np.array(structure.shape) // 2
    for offset in np.argwhere(structure) - centre:
        if not offset.any():
            continue
        dst, src, beyond = [], [], []
        for o, n in zip(offset, mask.shape):
            o = int(o)
            dst.append(slice(max(0, -o), n - max(0, o)))
            src.append(slice(max(0, o), n - max(0, -o)))
            beyond.append((slice(n - o, n) if o > 0 else slice(0, -o)) if o else None)
        out[tuple(dst)] &= mask[tuple(src)]
        if not border_value:
            # a voxel whose neighbour at ``offset`` lies outside the array meets the border value
            for axis, sl in enumerate(beyond):
                if sl is not None:
                    index = [slice(None)] * mask.ndim
                    index[axis] = sl
                    out[tuple(index)] = False
    return out
