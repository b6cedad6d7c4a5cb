"""Within a radius of a mask, on an isotropic grid, by blocks of slices: the transform along z first.

`distance.ring_mm` asks, per voxel, whether the squared distance to the mask lies between two radii. The
separable transform may take its axes in any order: on an isotropic grid the squared distances are whole
numbers, exact whichever way they are summed. Taken along z first, it needs no volume of values: the
distance along z to the nearest mask voxel is found by two sweeps over the slices, and only mask voxels
within the radius count, so a block of slices needs the mask's slices within the radius of it and nothing
else. Each block's values (uint16) are then transformed along y (lower envelopes) and along x, the last
pass, which writes the answer and leaves out the voxels already decided (`distance._last_pass`).

The lower-envelope order (x, y, then z: `distance._squared_vox`) holds a uint16 value for every voxel of
the grid between its passes: 370 MB for the envelope's closing at 512^3 (the crop padded by a 70-voxel ball),
the segment stage's memory peak. By blocks a thread holds one block's values (at most `BLOCK_BYTES`): the
segment stage's peak is 170-200 MB lower, in the same time where freed memory is kept for reuse (the `ctbone`
command: 1.5-2.0 against 1.7 s for that closing) and faster where each volume-sized array costs fresh pages
(2.4-2.6 -> 1.6-1.8 s). The same voxels as the envelopes (exact either way; tests/test_distance.py compares them).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..parallel import run_in_chunks
from .distance import _last_pass, _transform_line

# the values of a block of slices, per thread: the slices within the radius are read again for each block
# (the sweep down), so a block should be large against the radius and small against the cache's reach. 8 MB
# (14 slices of the 512^3 closing's 474 x 592): as fast as 32 or 64 MB, and glibc's malloc, which raises its
# threshold for mapping fresh memory to the largest block freed, keeps 30-40 MB less of the analysis resident
BLOCK_BYTES = 8 << 20


def ring_by_slabs(mask: np.ndarray, *, outer: float, inner: float, decided: float, yx_box) -> np.ndarray:
    """``inner < d² <= outer`` per voxel of the box ``yx_box`` (rows, columns; all slices), d² the squared distance
    in voxels to the nearest ``True`` voxel of ``mask`` (3-D bool, contiguous). ``floor(outer) + 1`` must fit in
    uint16; ``decided`` is the value at or below which the last pass need not be exact (`distance._last_pass`)."""
    ys, xs = yx_box
    nz, ny, nx = mask.shape
    far = float(np.floor(outer) + 1)  # "beyond the radius": the first whole number above it
    reach_z = int(np.floor(np.sqrt(far - 1.0)))  # a mask voxel farther along z than this is beyond the radius
    # at least a quarter of the radius along z, whatever the slices' size: each block re-reads that many slices
    block = max(1, BLOCK_BYTES // max(1, 2 * ny * nx), reach_z // 4)
    out = np.empty((nz, ys.stop - ys.start, xs.stop - xs.start), bool)
    run_in_chunks(_ring_in_blocks, nz, mask, far, reach_z, float(decided), float(outer), float(inner), ys.start,
                  ys.stop, xs.start, xs.stop, int(block), out)
    return out


@njit(cache=True, nogil=True)
def _ring_in_blocks(mask, far, zr, decided, outer, inner, y0, y1, x0, x1, block, out, z0, z1):  # pragma: no cover
    """`ring_by_slabs` on slices z0 .. z1 - 1, a block of at most ``block`` slices at a time; mask voxels more
    than ``zr`` slices away are beyond the radius."""
    nz, ny, nx = mask.shape
    top = np.uint16(far)
    g = np.empty((min(block, z1 - z0), ny, nx), np.uint16)
    before = np.full((ny, nx), -1, np.int64)  # per column: the last mask slice at or before the sweep
    after = np.empty((ny, nx), np.int64)  # per column: the next mask slice at or after the sweep
    n = max(nx, ny)
    line = np.empty(n, np.float64)
    found = np.empty(n, np.float64)
    sites = np.empty(n + 1, np.int64)
    bounds = np.empty(n + 2, np.float64)
    reach = int(np.floor(np.sqrt(decided))) + 1 if decided >= 0 else nx
    swept = max(0, z0 - zr)  # the sweep up carries `before` from block to block
    for b0 in range(z0, z1, block):
        b1 = min(b0 + block, z1)
        # along z, down from the radius past the block: the nearest mask voxel at or after each slice
        after[:, :] = -1
        for z in range(min(nz, b1 + zr) - 1, b0 - 1, -1):
            for y in range(ny):
                for x in range(nx):
                    if mask[z, y, x]:
                        after[y, x] = z
            if z < b1:
                for y in range(ny):
                    for x in range(nx):
                        p = after[y, x]
                        d2 = (p - z) * (p - z)
                        g[z - b0, y, x] = np.uint16(d2) if p >= 0 and d2 < far else top
        # along z, up: the nearest mask voxel at or before, if nearer
        for z in range(swept, b1):
            for y in range(ny):
                for x in range(nx):
                    if mask[z, y, x]:
                        before[y, x] = z
            if z >= b0:
                for y in range(ny):
                    for x in range(nx):
                        p = before[y, x]
                        if p >= 0:
                            d2 = (z - p) * (z - p)
                            if d2 < g[z - b0, y, x]:
                                g[z - b0, y, x] = np.uint16(d2)
        swept = b1
        for k in range(b1 - b0):
            # along y, every column: the rows' pass reads all of them
            for x in range(nx):
                for y in range(ny):
                    line[y] = g[k, y, x]
                if _transform_line(line, ny, 1.0, far, sites, bounds, found):
                    for y in range(ny):
                        if line[y] != 0.0:
                            g[k, y, x] = np.uint16(found[y])
            # along x, the last pass, for the box's rows: the answer, compared as whole numbers in float64
            for y in range(y0, y1):
                for x in range(nx):
                    line[x] = g[k, y, x]
                _last_pass(line, nx, 1.0, far, decided, reach, sites, bounds, found)
                for x in range(x0, x1):
                    v = found[x]
                    out[b0 + k, y - y0, x - x0] = v <= outer and v > inner
