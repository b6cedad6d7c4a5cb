"""Lytic volume as missing bone mass: partial-volume column sums against intact columns.

See `missing_bone_mm3`; used by `ctbone.measure.lesions`.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import ndimage

from ..parallel import run_in_chunks
from ..segment.coded import codes_and_palette, stored_value, values_where
from ..segment.morphology import erode_cross
from ..volume import bounding_box

# voxels around a lesion over which its partial-volume sums run: the scanner's blur (PSF) must fall
# inside, so that the sum of gray values is conserved
PV_REACH_VOX = 2


def missing_bone_mm3(raw, labels, n, band, avoid, frame, i_bone, voxel_mm3, *, cortex_model=None):
    """Partial-volume bone loss per lytic region (index 1..n), mm³, and the levels (I_bone, I_fill).

    The cortex is cut into columns (one slice x one angle bin, radially across ``band``: the expected
    cortex widened by ``PV_REACH_VOX`` voxels on both sides). A column's bone mass is Σ present,
    present = (I - I_fill) / (I_bone - I_fill) on the *unsmoothed* image, not clipped: the scanner's
    blur conserves that sum, so it does not depend on the threshold or on how the walls and rims of a
    hole were segmented. A lesion's columns (those within ``PV_REACH_VOX`` voxels of its region) are
    compared with intact columns (columns touching ``avoid``, blastic bone, are not intact references):
    first the *same angle bin* in the intact slices below and above the lesion (linear interpolation
    along z between the means of up to three slices on each side, `_expected_along_z`): a shaft's bins
    repeat their voxel pattern from slice to slice, whereas neighbouring bins differ by whole voxels (at
    40 um a bin holds 1-4 voxels of cortex, and interpolating around the bone was off by up to 20 % per
    lesion). Where a lesion reaches the end of the analysed slices, the intact columns beside it in the
    same slice are used: the mass per voxel of modelled cortex is interpolated around the bone (between
    the means of up to three intact columns on each side) and scaled back by the column's share of the
    cortex, smoothed around the bone from the intact columns (`_smooth_around`; an angle bin's share of
    an elliptic cortex changes around the bone, and a lesion that breaches the cortex bends the modelled
    surfaces over it). I_bone = median of the cortex interior, I_fill = median of the regions'
    interiors (tumour, marrow). Falls back to voxel counts
    when there is no contrast.
    """
    # the regions and their reach live on their own box (lesions are small next to the crop); counting
    # there also spares bincount's int64 copy of the whole crop
    box = bounding_box(labels > 0, margin_vox=PV_REACH_VOX)
    counts = np.zeros(n + 1)
    if box is not None:
        in_box = labels[box]
        counts = np.bincount(in_box.ravel(), minlength=n + 1)[: n + 1].astype(float)
        counts[0] += labels.size - in_box.size
    else:
        counts[0] = labels.size
    counts *= voxel_mm3
    if n == 0 or i_bone is None:
        return counts, (i_bone, None)
    inner = erode_cross(labels[box] > 0)
    fill_values = values_where(raw[box], inner) if inner.any() else values_where(raw, labels > 0)
    i_fill = float(np.median(fill_values))
    if i_bone - i_fill <= 0:
        return counts, (i_bone, i_fill)
    cube = np.ones((3, 3, 3), bool)
    # the regions grown by the reach, on the regions' box only (it holds the reach): int32, region numbers
    # are small; a crop-sized copy was the lesion stage's memory peak
    grown = labels[box].astype(np.int32)
    for _ in range(PV_REACH_VOX):
        grown = np.where(grown > 0, grown, ndimage.grey_dilation(grown, footprint=cube))
    nz, nb = raw.shape[0], frame.n_bins
    # per column (slice, bin): bone mass, band / blastic / modelled-cortex voxel counts, owning region
    mass, n_band, n_avoid, n_model = (np.zeros((nz, nb)) for _ in range(4))
    owner = np.zeros((nz, nb), np.int64)
    model_mask = cortex_model if cortex_model is not None else np.zeros(labels.shape, bool)
    run_in_chunks(_column_tables, nz, *codes_and_palette(raw), band, avoid, model_mask, labels[box] > 0, grown,
                  np.array([b.start for b in box], np.int64), frame.bin_index, np.float32(i_fill),
                  np.float32(i_bone - i_fill), mass, n_band, n_avoid, n_model, owner)
    has_band = (n_band > 0) & (n_avoid == 0)
    model = n_model if cortex_model is not None else np.ones((nz, nb))
    along_z = _expected_along_z(mass, (owner == 0) & has_band, owner > 0)
    missing = np.zeros(n + 1)
    for z in np.flatnonzero((owner > 0).any(axis=1)):
        # the same bin in the intact slices above and below first: a straight shaft's bins repeat their
        # voxel pattern slice after slice, where neighbouring bins differ by whole voxels
        expected = along_z[z]
        if not np.isfinite(expected[owner[z] > 0]).all():
            around = _expected_around(mass[z], model[z], (owner[z] == 0) & has_band[z])
            expected = np.where(np.isfinite(expected), expected, around)
        lesion = (owner[z] > 0) & np.isfinite(expected)
        np.add.at(missing, owner[z][lesion], expected[lesion] - mass[z][lesion])
    return np.clip(missing, 0.0, None) * voxel_mm3, (i_bone, i_fill)


@njit(cache=True, nogil=True)
def _column_tables(raw, palette, band, avoid, model, region, grown, origin, bin_index, i_fill, contrast, mass, n_band,
                   n_avoid, n_model, owner, s0, s1):  # pragma: no cover - compiled
    # one pass over the crop (its values palette[raw] when palette is not None), each slice filling its own rows:
    # the bone mass (I - I_fill) / (I_bone - I_fill) in float32 as numpy computes it, summed in float64 in raster
    # order, over band | region; the band, avoid and model voxel counts; the largest grown region label. ``region``
    # and ``grown`` cover the box of the regions' reach starting at ``origin``: nothing of them lies outside it.
    # Slices s0 .. s1 - 1
    nz, ny, nx = raw.shape
    bz, by, bx = grown.shape
    z0, y0, x0 = origin[0], origin[1], origin[2]
    for z in range(s0, s1):
        zin = z0 <= z < z0 + bz
        for y in range(ny):
            yin = zin and y0 <= y < y0 + by
            for x in range(nx):
                b = bin_index[z, y, x]
                inside = yin and x0 <= x < x0 + bx
                in_region = inside and region[z - z0, y - y0, x - x0]
                if band[z, y, x] or in_region:
                    mass[z, b] += np.float64((stored_value(raw, palette, z, y, x) - i_fill) / contrast)
                if band[z, y, x]:
                    n_band[z, b] += 1.0
                if avoid[z, y, x]:
                    n_avoid[z, b] += 1.0
                if model[z, y, x]:
                    n_model[z, b] += 1.0
                if inside:
                    g = grown[z - z0, y - y0, x - x0]
                    if g > owner[z, b]:
                        owner[z, b] = g


def _expected_around(mass, model, good) -> np.ndarray:
    """One slice's intact mass per bin from the intact bins beside it: the mass per voxel of modelled cortex
    interpolated around the bone, times the bin's share of the cortex smoothed from the intact bins (the
    masses themselves without a usable model); NaN everywhere without intact bins."""
    share = _smooth_around(model, good)
    if share is not None and (share > 0).all():
        ratio = _interpolate_around(mass / share, good)
        expected = None if ratio is None else ratio * share
    else:
        expected = _interpolate_around(mass, good)
    return np.full(len(mass), np.nan) if expected is None else expected


def _expected_along_z(mass, good, owned, *, side: int = 3):
    """(Z, B) intact mass interpolated along z, per angle bin, between the means of up to ``side`` good
    slices below and above each owned run; NaN where the run has no good slice on both sides."""
    out = np.full(mass.shape, np.nan)
    for b in np.flatnonzero(owned.any(axis=0)):
        ok = np.flatnonzero(good[:, b])
        if ok.size == 0:
            continue
        for z in np.flatnonzero(owned[:, b]):
            k = int(np.searchsorted(ok, z))
            if k == 0 or k == ok.size:
                continue
            lo, hi = ok[max(0, k - side):k], ok[k:k + side]
            w = (z - ok[k - 1]) / (ok[k] - ok[k - 1])
            out[z, b] = (1 - w) * mass[lo, b].mean() + w * mass[hi, b].mean()
    return out


# Fourier order of a column's share of the modelled cortex around the bone (an ellipse-like section
# needs 2; 3 leaves room for asymmetry without following noise)
SHARE_ORDER = 3


# the good bins must surround the bone: a Fourier series fitted on an arc and evaluated beyond it is an
# extrapolation (on a scan that is no long bone, a fit on 19 clustered bins of 402 reached 10^7 times the data)
MAX_SHARE_GAP_DEG = 180.0


def _smooth_around(values: np.ndarray, good: np.ndarray, *, order: int = SHARE_ORDER):
    """Least-squares Fourier series (in the bin angle) fitted on the ``good`` bins, evaluated at all
    bins; None when too few good bins, when they leave an arc wider than ``MAX_SHARE_GAP_DEG``, or when the
    fit leaves [0, 2 x the largest good value] (no plausible share: the caller interpolates the masses
    instead). The lesion's own bins do not shape it: where a lesion distorts the modelled surfaces, the
    share there comes from the intact cortex around it."""
    nb = len(values)
    idx = np.flatnonzero(good)
    if idx.size < 4 * order + 2 or np.diff(np.r_[idx, idx[0] + nb]).max() * 360.0 / nb > MAX_SHARE_GAP_DEG:
        return None
    theta = 2 * np.pi * np.arange(nb) / nb
    basis = np.column_stack([np.ones(nb)] + [f(k * theta) for k in range(1, order + 1) for f in (np.cos, np.sin)])
    coef, *_ = np.linalg.lstsq(basis[good], values[good].astype(float), rcond=None)
    fitted = basis @ coef
    if fitted.min() < 0.0 or fitted.max() > 2.0 * float(values[good].max()):
        return None
    return fitted


def _interpolate_around(values: np.ndarray, good: np.ndarray, *, side: int = 3):
    """Circular linear interpolation of ``values`` into the bins where ``good`` is False; each gap
    between the means of up to ``side`` good bins on either side. None without good bins."""
    nb = len(values)
    idx = np.flatnonzero(good)
    if len(idx) == 0:
        return None
    out = values.astype(float).copy()
    gaps = np.flatnonzero(~good)
    if len(gaps) == 0:
        return out
    # good bins of a tripled circle, so that gaps across the seam interpolate correctly
    pos = np.concatenate([idx - nb, idx, idx + nb])
    val = np.tile(values[idx].astype(float), 3)
    csum = np.r_[0.0, np.cumsum(val)]
    for g in gaps:
        k = int(np.searchsorted(pos, g))  # pos[k - 1] < g < pos[k]
        left = (csum[k] - csum[max(0, k - side)]) / min(side, k)
        right = (csum[min(len(val), k + side)] - csum[k]) / min(side, len(val) - k)
        w = (g - pos[k - 1]) / (pos[k] - pos[k - 1])
        out[g] = (1 - w) * left + w * right
    return out
