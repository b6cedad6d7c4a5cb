"""The median of an image's values under a mask, without gathering them.

``np.median(values[mask])`` copies the masked values (a gather on one thread) and partially sorts the copy
(one thread again): 0.2 s for the 18 M bone voxels of a 512³ crop, and the lesion stage takes four such
medians. Here the values are selected in place by their float32 bit patterns, which order like the numbers
once the sign is folded in: a histogram of the top 16 bits finds the bin holding the middle rank(s), a
second of the low 16 bits within that bin the exact value. Two parallel passes over the crop; the same
value as numpy's (the middle element, or the float32 mean of the two middle ones).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..parallel import run_in_chunks, thread_count
from ..segment.coded import CodedValues

_BINS = 1 << 16


def masked_median(values: np.ndarray, mask: np.ndarray) -> float:
    """``float(np.median(values[mask]))``, computed without the gathered copy; NaN for an empty mask.

    Parameters
    ----------
    values : ndarray or CodedValues
        Image values; float32 and `ctbone.segment.coded.CodedValues` are selected in place, any other type goes
        through numpy.
    mask : bool ndarray
        Same shape as ``values``.
    """
    if isinstance(values, CodedValues):
        return _coded_median(values, np.asarray(mask, bool))
    values, mask = np.asarray(values), np.asarray(mask)
    if values.shape != mask.shape:
        raise ValueError(f"values of shape {values.shape} and mask of shape {mask.shape}")
    if values.dtype != np.float32 or mask.dtype != np.bool_ or values.ndim != 3:
        picked = values[mask.astype(bool, copy=False)]
        return float(np.median(picked)) if picked.size else float("nan")
    keys = values.view(np.uint32)  # same item size: a view, strided crops included (no copy)
    chunks = max(1, min(thread_count(), keys.shape[0]))
    top, n_nan = _histogram(keys, mask, -1, chunks)
    n = int(top.sum())
    if n == 0:
        return float("nan")
    if n_nan:
        return float("nan")  # numpy's median of values holding a NaN
    ranks = ((n - 1) // 2, n // 2)
    low, high = (np.array([_value_of(k)], np.uint32).view(np.float32)[0] for k in _keys_at(keys, mask, top, ranks,
                                                                                           chunks))
    return _middle(low, high, ranks)


def _middle(low, high, ranks) -> float:
    """The median from the values at the two middle ranks, as numpy makes it."""
    if ranks[0] == ranks[1]:
        return float(low)
    # numpy averages the two middle values in float32: (low + high) / 2, each step rounded to float32
    with np.errstate(over="ignore", invalid="ignore"):  # inf (two values near the largest), NaN (-inf, inf): as numpy
        return float((np.float32(low) + np.float32(high)) / np.float32(2))


def _coded_median(values: CodedValues, mask: np.ndarray) -> float:
    """`masked_median` of values held as codes: the masked codes counted, the table walked in the values' order."""
    if values.shape != mask.shape:
        raise ValueError(f"values of shape {values.shape} and mask of shape {mask.shape}")
    codes, palette = values.codes, values.palette
    chunks = max(1, min(thread_count(), codes.shape[0]))
    counts = np.sum(run_in_chunks(_chunk_code_counts, codes.shape[0], codes, mask, palette.size, chunks=chunks), axis=0)
    bits = palette.view(np.uint32)
    nan = ((bits & 0x7F800000) == 0x7F800000) & ((bits & 0x007FFFFF) != 0)
    n = int(counts[~nan].sum())
    if n == 0 or counts[nan].any():  # none, or numpy's median of values holding a NaN
        return float("nan")
    # the codes in the order of their values (`_order_key`'s order: -0 before +0), and the counts summed in it
    keys = np.where(bits & 0x80000000, ~bits, bits | 0x80000000)
    order = np.flatnonzero(~nan)
    order = order[np.argsort(keys[order], kind="stable")]
    cumulative = np.cumsum(counts[order])
    ranks = ((n - 1) // 2, n // 2)
    low, high = (palette[order[np.searchsorted(cumulative, rank, side="right")]] for rank in ranks)
    return _middle(low, high, ranks)


def _keys_at(keys, mask, top, ranks, chunks) -> list[int]:
    """The order keys (see `_order_key`) of the values of ``ranks`` (0-based) among the masked values."""
    cumulative = np.cumsum(top)
    out, lows = [], {}
    for rank in ranks:
        bin_top = int(np.searchsorted(cumulative, rank, side="right"))
        below = int(cumulative[bin_top - 1]) if bin_top else 0
        if bin_top not in lows:  # the two middle ranks share their top bin but for a boundary between them
            lows[bin_top] = np.cumsum(_histogram(keys, mask, bin_top, chunks)[0])
        out.append((bin_top << 16) | int(np.searchsorted(lows[bin_top], rank - below, side="right")))
    return out


@njit(cache=True, inline="always")
def _order_key(bits):  # pragma: no cover - compiled
    # float32 bits -> an unsigned key ordered as the numbers: negatives' bits reversed, positives' sign set
    if bits & np.uint32(0x80000000):
        return ~bits
    return bits | np.uint32(0x80000000)


def _value_of(key: int) -> int:
    """The float32 bits of an order key (the inverse of `_order_key`)."""
    return key & 0x7FFFFFFF if key & 0x80000000 else (~key) & 0xFFFFFFFF


@njit(cache=True, inline="always")
def _is_nan(bits):  # pragma: no cover - compiled
    return (bits & np.uint32(0x7F800000)) == np.uint32(0x7F800000) and (bits & np.uint32(0x007FFFFF)) != 0


def _histogram(keys, mask, top, chunks):
    """(counts of the masked values' order keys: of their top 16 bits when ``top`` < 0, else of the low 16 bits of
    those whose top 16 bits are ``top``; the NaNs among them, counted in neither)."""
    parts = run_in_chunks(_chunk_histogram, keys.shape[0], keys, mask, top, chunks=chunks)
    # in integers: the same whatever the chunks
    return np.sum([hist for hist, _ in parts], axis=0), int(sum(nans for _, nans in parts))


@njit(cache=True, nogil=True)
def _chunk_code_counts(codes, mask, n_codes, z0, z1):  # pragma: no cover - compiled
    # how many masked voxels hold each code, over slices z0 .. z1 - 1
    counts = np.zeros(n_codes, np.int64)
    for z in range(z0, z1):
        for y in range(codes.shape[1]):
            for x in range(codes.shape[2]):
                if mask[z, y, x]:
                    counts[codes[z, y, x]] += 1
    return counts


@njit(cache=True, nogil=True)
def _chunk_histogram(keys, mask, top, z0, z1):  # pragma: no cover - compiled
    # `_histogram`'s counts over slices z0 .. z1 - 1: (counts, NaNs)
    nz, ny, nx = keys.shape
    hist = np.zeros(_BINS, np.int64)
    nans = 0
    for z in range(z0, z1):
        for y in range(ny):
            for x in range(nx):
                if mask[z, y, x]:
                    bits = keys[z, y, x]
                    if _is_nan(bits):
                        nans += 1
                        continue
                    key = _order_key(bits)
                    if top < 0:
                        hist[key >> 16] += 1
                    elif np.int64(key >> 16) == top:
                        hist[key & np.uint32(0xFFFF)] += 1
    return hist, nans
