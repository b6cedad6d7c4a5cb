"""Despeckle: keep the bone(s) of interest, drop small particles."""

from __future__ import annotations

import logging

import numpy as np

from .distance import within_mm
from .checks import SECOND_BONE_FRACTION
from .labels import label_counts, label_on_box, label_x_centres, lookup

log = logging.getLogger(__name__)


def keep_bone_of_interest(bone: np.ndarray, *, spacing_mm, min_particle_mm3: float, near_mm: float,
                          bone_index: int | None = None, facts: dict | None = None) -> np.ndarray:
    """The largest 26-connected bone particle (or the one ``bone_index`` picks) and the particles close to it.

    Parameters
    ----------
    bone : (Z, Y, X) bool ndarray
    spacing_mm : tuple of 3 float, keyword-only
    min_particle_mm3 : float, keyword-only
        Particles smaller than this (exclusive) are dropped, however close.
    near_mm : float, keyword-only
        Particles within this distance (inclusive) of the largest one are kept (fragments
        of a fractured or perforated cortex, the fibula next to the tibia, woven bone).
    bone_index : int, optional, keyword-only
        Which bone of a scan holding several (both limbs of an in vivo scan): the particles at least
        `SECOND_BONE_FRACTION` of the largest, counted along x by their mean column, 1 = nearest the first
        column. None: the largest.
    facts : dict, optional, keyword-only
        Filled with ``analysed_mm3`` (the particle chosen), ``left_out_mm3`` (the largest particle left out,
        0.0 if none: a second bone as large as the first is another limb or a dense object), ``bones`` (how
        many bone-sized particles the scan holds), ``bones_mm3`` (their volumes, along x) and
        ``analysed_bone`` (the chosen one's number along x).

    Raises
    ------
    ValueError
        ``bone_index`` beyond the bone-sized particles (the message says how many there are).

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
    bones = _bones_along_x(labels, counts)
    if bone_index is None:
        largest = int(np.argmax(counts))
    elif 1 <= bone_index <= bones.size:
        largest = int(bones[bone_index - 1])
    else:
        raise ValueError(f"bone {bone_index} asked for, but the scan holds {bones.size} bone-sized particle(s) "
                         f"(each at least {100 * SECOND_BONE_FRACTION:.0f} % of the largest)")
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
        facts["analysed_mm3"] = float(counts[largest] * voxel_mm3)
        facts["left_out_mm3"] = float(left_out.max() * voxel_mm3) if left_out.size else 0.0
        facts["bones"] = int(bones.size)
        facts["bones_mm3"] = [float(counts[b] * voxel_mm3) for b in bones]  # along x, as --bone counts them
        facts["analysed_bone"] = int(np.flatnonzero(bones == largest)[0]) + 1  # the largest is bone-sized too
    out[box] = lookup(keep, labels)
    return out


def _bones_along_x(labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Labels of the bone-sized particles (at least `SECOND_BONE_FRACTION` of the largest), by mean column."""
    bones = np.flatnonzero(counts >= SECOND_BONE_FRACTION * counts.max())
    bones = bones[bones != 0]
    if bones.size < 2:
        return bones
    centres = label_x_centres(labels, counts.size - 1)[bones]
    return bones[np.argsort(centres, kind="stable")]

