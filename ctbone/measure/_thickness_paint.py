"""Painting local thickness: each ridge ball raises the map to its diameter where its parent's ball does not
already reach, row by row, in parallel over z slabs (see `ctbone.measure.thickness`)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..parallel import run_in_chunks, thread_count
from ._thickness_ridge import INSIDE_RTOL

def _slabs(nz: int, n_slabs: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(z bounds of the painting's slabs, the order the threads take them in: one slab at a time, `_paint`).

    The balls crowd where the bone is (a long bone's metaphyses, a lesion), so the slabs' work differs many
    times over. Handed out one at a time, a thread that finishes takes the next (runs of 8 slabs left one
    thread painting alone at the end: the 512^3 bench's cortex and trabeculae 1.52-1.56 s against 1.38-1.43 s;
    the slabs with the most balls first, 1.40-1.48 s). Dealt round robin (slabs k, k + T, ... for T threads),
    the threads start apart along the scan.
    """
    n_slabs = max(1, min(nz, n_slabs))
    bounds = np.linspace(0, nz, n_slabs + 1).astype(np.int64)
    threads = thread_count()
    order = np.concatenate([np.arange(k, n_slabs, threads) for k in range(threads)]).astype(np.int64)
    return bounds, order


def _half_widths(max_k2: int) -> np.ndarray:
    """``half[m]`` = the largest integer h with h² < m (m >= 1), i.e. isqrt(m - 1); ``half[0] = -1``."""
    m = np.arange(max_k2 + 1, dtype=np.int64)
    h = np.floor(np.sqrt(np.maximum(m - 1, 0).astype(np.float64))).astype(np.int64)
    h -= h * h > m - 1  # guard the float square root either way
    h += (h + 1) * (h + 1) <= m - 1
    h[0] = -1
    return h

@njit(cache=True, inline="always")
def _row_span(rem, c, step, n):  # pragma: no cover - compiled
    """Integer x range [lo, hi] with ((x - c) * step)² < rem, clipped to [0, n - 1]; lo > hi if empty."""
    if rem <= 0.0:
        return 1, 0
    rx = np.sqrt(rem) / step
    lo = int(np.ceil(c - rx))
    hi = int(np.floor(c + rx))
    if ((lo - c) * step) ** 2 >= rem:
        lo += 1
    if ((hi - c) * step) ** 2 >= rem:
        hi -= 1
    return max(lo, 0), min(hi, n - 1)


@njit(cache=True, inline="always")
def _raise_row_outside(out, z, y, x0, x1, p0, p1, value):  # pragma: no cover - compiled
    # out[z, y, x0..x1] = max(out, value), except on the parent's span p0..p1 (empty when p0 > p1)
    if p0 > p1:
        p0 = x1 + 1
        p1 = x1
    for x in range(x0, min(x1, p0 - 1) + 1):
        if out[z, y, x] < value:
            out[z, y, x] = value
    for x in range(max(x0, p1 + 1), x1 + 1):
        if out[z, y, x] < value:
            out[z, y, x] = value


def paint_balls(out, centres, radii2, parents, parent_r2, spacing) -> None:
    """Raise ``out`` (float32) to each ball's diameter where its parent's ball does not reach (any grid)."""
    if radii2.shape[0] == 0:
        return
    bounds, order = _slabs(out.shape[0])
    # centres are z-sorted: only those within the largest radius (in slices) can reach a slab. Found here, in
    # numpy, as the kernel found them (its own max and searchsorted cost seconds of compiling on first use)
    max_rz = max(0.0, float((np.sqrt(radii2) / spacing[0]).max()))
    first, last = _slab_ranges(centres[:, 0], bounds[:-1] - max_rz - 1.0, bounds[1:] + max_rz + 1.0, "left")
    _paint(_paint_balls, order, out, centres, radii2, parents, parent_r2, spacing, bounds, order, first, last)


def paint_balls_iso(out, centres, k2, parents, parent_k2, values) -> None:
    """`paint_balls` on an isotropic grid, in voxel units, with two parents (see `_paint_balls_iso`)."""
    if k2.shape[0] == 0:
        return
    bounds, order = _slabs(out.shape[0])
    k_max = int(k2.max())
    half = _half_widths(k_max)
    max_rz = int(half[k_max])
    first, last = _slab_ranges(centres[:, 0], bounds[:-1] - max_rz, bounds[1:] + max_rz, "right")
    _paint(_paint_balls_iso, order, out, centres, k2, parents, parent_k2, values, half, bounds, order, first, last)


def _paint(kernel, order, *args) -> None:
    run_in_chunks(kernel, order.shape[0], *args, chunks=order.shape[0])  # one slab a task (see `_slabs`)


def _slab_ranges(centre_z, lows, highs, upper_side):
    """Per slab s, the range [first[s], last[s]) of the z-sorted balls whose centre lies between ``lows[s]`` and
    ``highs[s]`` (the slab widened by the largest reach; the upper end searched on ``upper_side``)."""
    first = np.searchsorted(centre_z, lows)
    last = np.searchsorted(centre_z, highs, side=upper_side)
    return first.astype(np.int64), last.astype(np.int64)


@njit(cache=True, nogil=True)
def _paint_balls(out, centres, radii2, parents, parent_r2, spacing, bounds, order, first, last, t0,
                 t1):  # pragma: no cover - compiled
    # Each ball paints only what its parent's ball does not cover: the parent precedes it in the order
    # (larger D, ties by index), so by induction every voxel of the parent's ball ends with a value
    # >= 2 D(parent) >= 2 D(ball) -- skipping it changes nothing, and big balls cost a crescent, not a ball.
    # Slab s paints the balls first[s] .. last[s] - 1 (`paint_balls`).
    nz, ny, nx = out.shape
    for t in range(t0, t1):
        s = order[t]
        s0 = bounds[s]
        s1 = bounds[s + 1]
        if s1 <= s0:
            continue
        for i in range(first[s], last[s]):
            r2 = radii2[i] * (1.0 - INSIDE_RTOL)
            rz = np.sqrt(r2) / spacing[0]
            cz, cy, cx = centres[i, 0], centres[i, 1], centres[i, 2]
            pz, py, px = parents[i, 0], parents[i, 1], parents[i, 2]
            q2 = parent_r2[i] * (1.0 - INSIDE_RTOL)
            a = max(s0, int(np.ceil(cz - rz)))
            b = min(s1 - 1, int(np.floor(cz + rz)))
            value = np.float32(2.0 * np.sqrt(radii2[i]))
            d_yx = np.sqrt(((py - cy) * spacing[1]) ** 2 + ((px - cx) * spacing[2]) ** 2) if pz >= 0 else 0.0
            d_x = abs(px - cx) * spacing[2]
            for z in range(a, b + 1):
                rem_z = r2 - ((z - cz) * spacing[0]) ** 2
                if rem_z <= 0.0:
                    continue
                qrem_z = q2 - ((z - pz) * spacing[0]) ** 2 if pz >= 0 else -1.0
                # the whole plane's disk inside the parent's disk: nothing to paint here
                if qrem_z > 0.0 and np.sqrt(rem_z) + d_yx < np.sqrt(qrem_z):
                    continue
                ry = np.sqrt(rem_z) / spacing[1]
                for y in range(max(0, int(np.ceil(cy - ry))), min(ny - 1, int(np.floor(cy + ry))) + 1):
                    rem_y = rem_z - ((y - cy) * spacing[1]) ** 2
                    qrem_y = qrem_z - ((y - py) * spacing[1]) ** 2 if qrem_z > 0.0 else -1.0
                    # the whole row inside the parent's row: nothing to paint
                    if qrem_y > 0.0 and rem_y > 0.0 and np.sqrt(rem_y) + d_x < np.sqrt(qrem_y):
                        continue
                    x0, x1 = _row_span(rem_y, cx, spacing[2], nx)
                    if x0 > x1:
                        continue
                    if qrem_y > 0.0:
                        p0, p1 = _row_span(qrem_y, px, spacing[2], nx)
                    else:
                        p0, p1 = 1, 0
                    _raise_row_outside(out, z, y, x0, x1, p0, p1, value)


@njit(cache=True, inline="always")
def _open_rows(ya, yb, cy, hy, cx, py, px, rem_z, qrem_z):  # pragma: no cover - compiled
    """The rows [lo, hi] of a ball's plane (rows ya .. yb) that a parent does not surely cover: all of them
    when its disk misses the plane (``qrem_z <= 0``). A row is covered when half[qrem_y] >= half[rem_y] +
    |px - cx|, which holds when qrem_y - rem_y >= need (half is monotone; and (h + 1)² <= rem_y + 2h for
    h = half[rem_y] <= hy). With dy = py - cy, qrem_y - rem_y = qrem_z - rem_z - dy² + 2 dy (y - cy): linear
    in y, so the surely covered rows are a half-line of the plane (or all, or none)."""
    if qrem_z <= 0:
        return ya, yb
    need = 0 if px == cx else 2 * hy + 1
    c = need - (qrem_z - rem_z) + (py - cy) * (py - cy)
    if py == cy:
        if c <= 0:
            return 1, 0
        return ya, yb
    if py > cy:
        return ya, min(yb, cy - ((-c) // 2) - 1)  # covered from cy + ceil(c / 2) on
    return max(ya, cy + (-c) // 2 + 1), yb  # covered up to cy + floor(-c / 2)


@njit(cache=True, inline="always")
def _parent_span(qrem_z, y, py, px, half):  # pragma: no cover - compiled
    # a parent's span [p0, p1] on row y (p0 > p1: none)
    if qrem_z > 0:
        qrem_y = qrem_z - (y - py) * (y - py)
        if qrem_y > 0:
            hp = half[qrem_y]
            return px - hp, px + hp
    return 1, 0


@njit(cache=True, inline="always")
def _raise_row_outside2(out, z, y, x0, x1, a0, a1, b0, b1, value):  # pragma: no cover - compiled
    # out[z, y, x0..x1] = max(out, value), except on the spans a0..a1 and b0..b1 (each empty when start > end)
    if a0 > a1:
        a0, a1, b0, b1 = b0, b1, 1, 0
    elif b0 <= b1:
        if b0 < a0:
            a0, a1, b0, b1 = b0, b1, a0, a1
        if b0 <= a1 + 1:  # overlapping or adjoining: one span
            a1 = max(a1, b1)
            b0, b1 = 1, 0
    if b0 > b1:
        _raise_row_outside(out, z, y, x0, x1, a0, a1, value)
        return
    _raise_row_outside(out, z, y, x0, min(x1, b0 - 1), a0, a1, value)
    for x in range(max(x0, b1 + 1), x1 + 1):
        if out[z, y, x] < value:
            out[z, y, x] = value


@njit(cache=True, nogil=True)
def _paint_balls_iso(out, centres, k2, parents, parent_k2, values, half, bounds, order, first, last, t0,
                     t1):  # pragma: no cover - compiled
    # `_paint_balls` on an isotropic grid in voxel units, with two parents (parents (N, 2, 3), parent_k2 (N, 2)):
    # a grid point is in the ball iff its squared offset m < k2 (integers), so the half-width of a row with
    # m_left = k2 - dz² - dy² is half[m_left]. Planes and rows entirely inside either parent's are skipped
    # exactly; the rest paint what neither parent covers.
    nz, ny, nx = out.shape
    for t in range(t0, t1):
        s = order[t]
        s0 = bounds[s]
        s1 = bounds[s + 1]
        if s1 <= s0:
            continue
        for i in range(first[s], last[s]):
            k = k2[i]
            hz = half[k]
            cz, cy, cx = centres[i, 0], centres[i, 1], centres[i, 2]
            a = max(s0, cz - hz)
            b = min(s1 - 1, cz + hz)
            if a > b:
                continue
            pz, py, px = parents[i, 0, 0], parents[i, 0, 1], parents[i, 0, 2]
            qz, qy, qx = parents[i, 1, 0], parents[i, 1, 1], parents[i, 1, 2]
            kp, kq = parent_k2[i, 0], parent_k2[i, 1]
            value = values[i]
            dp_yx = np.sqrt(np.float64((py - cy) ** 2 + (px - cx) ** 2))
            dq_yx = np.sqrt(np.float64((qy - cy) ** 2 + (qx - cx) ** 2))
            for z in range(a, b + 1):
                rem_z = k - (z - cz) * (z - cz)
                prem_z = kp - (z - pz) * (z - pz) if pz >= 0 else -1
                qrem_z = kq - (z - qz) * (z - qz) if qz >= 0 else -1
                # every grid point of this plane's disk (|v|² <= rem_z - 1) lies in a parent's disk
                inner = np.sqrt(np.float64(rem_z - 1)) + 1e-9
                if prem_z > 0 and inner + dp_yx < np.sqrt(np.float64(prem_z)):
                    continue
                if qrem_z > 0 and inner + dq_yx < np.sqrt(np.float64(qrem_z)):
                    continue
                hy = half[rem_z]
                ya = max(0, cy - hy)
                yb = min(ny - 1, cy + hy)
                # rows either parent surely covers, left out without a look
                ya1, yb1 = _open_rows(ya, yb, cy, hy, cx, py, px, rem_z, prem_z)
                ya2, yb2 = _open_rows(ya, yb, cy, hy, cx, qy, qx, rem_z, qrem_z)
                for y in range(max(ya1, ya2), min(yb1, yb2) + 1):
                    rem_y = rem_z - (y - cy) * (y - cy)
                    hx = half[rem_y]
                    x0 = cx - hx
                    x1 = cx + hx
                    p0, p1 = _parent_span(prem_z, y, py, px, half)
                    if p0 <= x0 and x1 <= p1:
                        continue
                    q0, q1 = _parent_span(qrem_z, y, qy, qx, half)
                    if q0 <= x0 and x1 <= q1:
                        continue
                    x0 = max(x0, 0)
                    x1 = min(x1, nx - 1)
                    _raise_row_outside2(out, z, y, x0, x1, p0, p1, q0, q1, value)
