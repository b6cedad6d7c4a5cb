"""Despeckle: keep the bone(s) of interest, drop small particles."""

from __future__ import annotations

import logging

import numpy as np

from .distance import within_mm
from .labels import label_counts, label_on_box, lookup

log = logging.getLogger(__name__)


def keep_bone_of_interest(bone: np.ndarray, *, spacing_mm, min_particle_mm3: float, near_mm: float,
                          facts: dict | None = None) -> np.ndarray:
    """The largest 26-connected bone particle and the particles close to it.

    Parameters
    ----------
    bone : (Z, Y, X) bool ndarray
    spacing_mm : tuple of 3 float, keyword-only
    min_particle_mm3 : float, keyword-only
        Particles smaller than this (exclusive) are dropped, however close.
    near_mm : float, keyword-only
        Particles within this distance (inclusive) of the largest one are kept (fragments
        of a fractured or perforated cortex, the fibula next to the tibia, woven bone).
    facts : dict, optional, keyword-only
        Filled with ``largest_mm3`` (the largest particle) and ``left_out_mm3`` (the largest particle left
        out, 0.0 if none): a second bone as large as the first is another limb or a dense object.

    Returns
    -------
    (Z, Y, X) bool ndarray
    """
    out = np.zeros(bone.shape, bool)
    labels, n, box = label_on_box(bone)  # the same particles, no label volume of the scan's empty margins
    if box is None:
        return out
    counts = label_counts(labels, n)
    counts[0] = 0
    largest = int(np.argmax(counts))
    voxel_mm3 = float(np.prod(spacing_mm))
    big = np.flatnonzero(counts * voxel_mm3 >= min_particle_mm3)
    keep = np.zeros(counts.size, bool)
    keep[largest] = True
    candidates = big[(big != largest) & (big != 0)]
    if candidates.size:
        near = within_mm(labels == largest, spacing_mm=spacing_mm, radius_mm=near_mm)
        touching = np.zeros(counts.size, bool)
        touching[labels[near]] = True  # a fancy assignment: np.unique sorted the tens of millions of hits
        keep[candidates[touching[candidates]]] = True
    log.debug("despeckle: %d particles, kept %d", counts.size - 1, int(keep.sum()))
    if facts is not None:
        left_out = counts[1:][~keep[1:]]
        facts["largest_mm3"] = float(counts[largest] * voxel_mm3)
        facts["left_out_mm3"] = float(left_out.max() * voxel_mm3) if left_out.size else 0.0
    out[box] = lookup(keep, labels)
    return out

