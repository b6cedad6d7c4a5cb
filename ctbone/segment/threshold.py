"""Automatic bone threshold: the bone / soft-tissue split, not the air / tissue one.

In an in vivo or packed ex vivo scan the histogram is dominated by air, soft tissue
and marrow; plain Otsu on everything often splits air from tissue. `auto_threshold`
runs Otsu, then Otsu again on the voxels above; it keeps the second split when the
upper class is itself clearly bimodal (a deep valley between two peaks, the lower
one being soft tissue), and repeats while that holds. On a two-phase image (a
trabecular cube, a bone in air) the first split stands.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

N_BINS = 512
# the upper class is split again only if its histogram valley at the new threshold is below
# this fraction of the smaller of the two peaks around it (a unimodal noisy class has no valley)
VALLEY_RATIO = 0.35
# ... and if the class above the new threshold is a minority of the upper class: bone is rarely
# most of the tissue, while soft tissue usually is
MAX_UPPER_FRACTION = 0.6
MAX_SAMPLES = 4_000_000


def otsu(values: np.ndarray, *, bins: int = N_BINS) -> float:
    """Otsu's threshold of a 1D sample (the bin edge maximising between-class variance)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    hist = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    k = int(np.argmax(between[:-1]))
    return float(edges[k + 1])


def _is_bimodal_split(values: np.ndarray, t: float) -> bool:
    lo, hi = float(values.min()), float(values.max())
    hist, edges = np.histogram(values, bins=128, range=(lo, hi))
    smooth = np.convolve(hist.astype(float), np.ones(5) / 5, mode="same")
    k = int(np.clip(np.searchsorted(edges, t) - 1, 1, len(smooth) - 2))
    left, right = smooth[:k].max(), smooth[k:].max()
    valley = smooth[min(k, int(np.argmax(smooth[:k]))):k + 1 + int(np.argmax(smooth[k:]))].min()
    upper_fraction = float((values > t).mean())
    return valley < VALLEY_RATIO * min(left, right) and upper_fraction < MAX_UPPER_FRACTION


def auto_threshold(image: np.ndarray, *, max_levels: int = 3) -> tuple[float, str]:
    """Threshold between bone and everything else, and the name of the method used.

    Parameters
    ----------
    image : ndarray
        Smoothed image (any unit).
    max_levels : int, keyword-only
        Most Otsu splits tried.

    Returns
    -------
    threshold : float
        In the image unit; bone is ``image > threshold``.
    method : str
        "otsu" (one split) or "otsu-upper-N" (the N-th split of the upper class).
    """
    values = np.asarray(image, np.float32).ravel()
    values = values[np.isfinite(values)]
    if values.size > MAX_SAMPLES:  # a regular subsample: the histogram does not need every voxel
        values = values[:: int(np.ceil(values.size / MAX_SAMPLES))]
    t = otsu(values)
    method = "otsu"
    for level in range(2, max_levels + 1):
        upper = values[values > t]
        if upper.size < 100:
            break
        t2 = otsu(upper)
        if not _is_bimodal_split(upper, t2):
            break
        log.debug("auto threshold: upper class split again at %.4g (was %.4g)", t2, t)
        t, method = t2, f"otsu-upper-{level}"
    return float(t), method
