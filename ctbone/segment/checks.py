"""Is the scan what the long-bone analysis expects? One bone, lying along z, hollow, inside the field of view.

Each check records what it measured in the segmentation's ``info`` and logs a warning naming the scan when
the answer is no; the study report and per_animal.csv's qc_notes read them back (`report.study_outputs`).
The analysis goes on: the numbers may still be what the user wants, and the warning says what to check.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

# bone reaching all four sides of the field of view in more than this fraction of its slices is not a long bone
# lying in the scan but a block cut from inside one
FILLS_VIEW_FRACTION = 0.5
# a shaft (principal axis this many times the next) lying further than this from z is measured along, not across
ELONGATED = 2.0
MAX_TILT_DEG = 45.0


def check_long_bone(bone, spacing, info, source, *, offset_zyx=(0, 0, 0)) -> None:
    """Warnings, and ``info["fills_field_of_view_pct"]`` / ``info["long_axis_tilt_deg"]``, when the bone fills
    the field of view sideways or its shaft does not run along z (slices across it). ``bone`` may be a block
    of the scan starting at ``offset_zyx`` whose sides are the field's wherever the bone could reach them."""
    fraction = side_contact_fraction(bone)
    if fraction > FILLS_VIEW_FRACTION:
        info["fills_field_of_view_pct"] = round(100.0 * fraction, 1)
        log.warning("%s: the bone reaches all four sides of the field of view in %.0f %% of its slices, so it is no "
                    "long bone lying in the scan: its envelope, cortex and lesions mean little. If the scan is a block "
                    "cut from trabecular bone, use --mode trabecular-cube", source, 100.0 * fraction)
        return
    tilt, elongation = long_axis_tilt_deg(bone, spacing, offset_zyx=offset_zyx)
    info["long_axis_tilt_deg"] = round(tilt, 1)
    if tilt > MAX_TILT_DEG and elongation >= ELONGATED:
        info["shaft_across_slices"] = True
        log.warning("%s: the bone's long axis lies %.0f degrees from the slice axis z; ctbone measures a long bone in "
                    "slices across its shaft and its lesion measures were validated up to 40 degrees of tilt (a shaft "
                    "lying along the slices reads no defects at all). Potential fix: reslice the scan so that the "
                    "shaft runs along z (the slice axis)", source, tilt)


# slice areas (Tt.Ar, Ct.Ar, Ma.Ar) of a shaft leaning this far from z read 1/cos - 1 = 1.5 % or more over the
# shaft's cross-sections: noted (the ASBMR areas are perpendicular to the long axis)
AREA_TILT_DEG = 10.0


def check_shaft_tilt(envelope, spacing, info, source) -> None:
    """``info["shaft_tilt_deg"]`` (`shaft_tilt_deg` of the analysed slices), and a warning from
    `AREA_TILT_DEG` on: slice areas are then measurably larger than the shaft's cross-sections."""
    tilt = shaft_tilt_deg(envelope, spacing)
    info["shaft_tilt_deg"] = round(tilt, 1)
    if AREA_TILT_DEG <= tilt <= MAX_TILT_DEG:
        log.warning("%s: the shaft leans %.0f degrees from the slice axis z, so the slice areas Tt.Ar, Ct.Ar and "
                    "Ma.Ar read %.1f %% more than its cross-sections (multiply by cos %.0f deg = %.3f for those). "
                    "Potential fix: align the scan with the shaft before the analysis (vendor software, e.g. "
                    "DataViewer) for guideline areas", source, tilt, area_excess_pct(tilt), tilt,
                    float(np.cos(np.radians(tilt))))


def area_excess_pct(tilt_deg: float) -> float:
    """How much larger (%) a slice through a prism leaning ``tilt_deg`` is than its perpendicular section."""
    return 100.0 * (1.0 / np.cos(np.radians(tilt_deg)) - 1.0)


def shaft_tilt_deg(envelope: np.ndarray, spacing_mm) -> float:
    """Angle (degrees) between z and the line fitted to the envelope's slice centroids (mm, least squares).

    The envelope's centroid follows the shaft's axis slice by slice, so this is the lean that biases the
    slice areas, measured on the slices analysed (the ROI), unlike the whole bone's principal axis
    (`long_axis_tilt_deg`), which a femoral head or a short cut shaft pulls aside. Slices holding less than
    half the median envelope area (a bone's tapering end) are left out. 0.0 for fewer than 3 slices.
    """
    envelope = np.asarray(envelope, bool)
    per_row = envelope.sum(axis=2, dtype=np.int64)  # (z, y)
    area = per_row.sum(axis=1)
    held = area > 0
    if np.count_nonzero(held) < 3:
        return 0.0
    used = area >= 0.5 * np.median(area[held])
    if np.count_nonzero(used) < 3:
        return 0.0
    sz, sy, sx = (float(s) for s in spacing_mm)
    y_mm = per_row[used] @ np.arange(envelope.shape[1]) * sy / area[used]
    x_mm = envelope[used].sum(axis=1, dtype=np.int64) @ np.arange(envelope.shape[2]) * sx / area[used]
    z_mm = np.nonzero(used)[0] * sz
    slope_y, slope_x = np.polyfit(z_mm, np.c_[y_mm, x_mm], 1)[0]
    return float(np.degrees(np.arctan(np.hypot(slope_y, slope_x))))


# a cortex thinner than this many voxels (Ct.Th as measured) is under the resolution the lesion measures were
# validated at (docs/accuracy.md): at 40 um voxels the validation phantom's cortex (0.18 mm) measures 4.7-4.9
# voxels and its lesions read right; at 50 um it measures 4.0-4.2 voxels, blastic bone reads +45 %, a 1.2-voxel
# shell shows a false defect and perforations of 100 um radius read 38 % small
MIN_CORTEX_VOXELS = 4.5


def check_cortex_resolution(ct_th_mm: float, spacing, info, source) -> None:
    """``info["cortex_voxels"]`` (Ct.Th over the in-plane voxel size), and a warning under `MIN_CORTEX_VOXELS`."""
    voxel_mm = float(np.mean(np.asarray(spacing, float)[1:]))
    if not (np.isfinite(ct_th_mm) and voxel_mm > 0):
        return
    voxels = ct_th_mm / voxel_mm
    info["cortex_voxels"] = round(voxels, 2)
    if voxels < MIN_CORTEX_VOXELS:
        log.warning("%s: the cortex is %.1f voxels thick (Ct.Th %.3g mm at %.3g mm voxels), under the %.1f the lesion "
                    "measures were validated at: blastic volume reads high, shells under 2 voxels show false "
                    "defects and small perforations read small (docs/accuracy.md, 50 um rows). Read defects in thin "
                    "shells and blastic volumes with care, or compare with a reference scan", source, voxels,
                    ct_th_mm, voxel_mm, MIN_CORTEX_VOXELS)


# a particle left out this large next to the bone analysed (a fraction of it) is a second bone, not debris
SECOND_BONE_FRACTION = 0.5
# a long bone's marrow compartment (marrow space and trabeculae) is a large part of its envelope (about half
# on the phantoms); under this percentage the "bone" is solid: a calibration rod or a dense object taken for it
MIN_MARROW_PCT = 5.0


def check_second_bone(particles: dict, near_mm: float, info, source, *, chosen: int | None = None) -> None:
    """A warning and ``info["left_out_particle_mm3"]`` when a bone-sized particle was left out without the user
    choosing a bone (``chosen``, the option ``bone``: then ``info["bone"]`` and ``info["bones_found"]``)."""
    if chosen is not None:
        info["bone"], info["bones_found"] = int(chosen), int(particles.get("bones", 0))
        return
    largest, left_out = particles.get("analysed_mm3", 0.0), particles.get("left_out_mm3", 0.0)
    if largest <= 0 or left_out < SECOND_BONE_FRACTION * largest:
        return
    info["left_out_particle_mm3"] = round(left_out, 6)
    along_x = ", ".join(f"{i} = {v:.3g} mm3" + (" (analysed)" if i == particles.get("analysed_bone") else "")
                        for i, v in enumerate(particles.get("bones_mm3", []), start=1))
    log.warning("%s: a second bone-sized particle (%.3g mm3, %.0f %% of the bone analysed) lies over %.3g mm from it "
                "and was left out (the other limb, or a calibration rod?): ctbone analyses one bone per scan, by "
                "default the largest. Bones along x: %s. Potential fix: --bone N picks the N-th (1 = nearest the "
                "first column); or give each bone its own scan",
                source, left_out, 100.0 * left_out / largest, near_mm, along_x or "-")


def check_marrow(envelope, marrow, info, source) -> None:
    """A warning and ``info["marrow_pct_of_envelope"]`` when the envelope holds next to no marrow compartment."""
    total = int(np.count_nonzero(envelope))
    pct = 100.0 * np.count_nonzero(marrow) / total if total else 0.0
    info["marrow_pct_of_envelope"] = round(pct, 2)
    if pct < MIN_MARROW_PCT:
        log.warning("%s: the segmented bone holds no marrow cavity (%.1f %% of its envelope), which a long bone has: a "
                    "solid dense object (a calibration rod, metal) may have been taken for it, or the threshold is too "
                    "low. Potential fix: check the snapshot; crop the object out or pass --threshold", source, pct)


def side_contact_fraction(bone: np.ndarray) -> float:
    """Fraction of the slices holding bone in which it reaches all four sides of the field of view (the
    first and last rows and columns): ~0 for a long bone scanned whole, ~1 for a block cut from inside
    a bone (a trabecular VOI), which the long-bone analysis (envelope, cortex) does not fit."""
    bone = np.asarray(bone, bool)
    held = bone.any(axis=(1, 2))
    if not held.any():
        return 0.0
    # the four faces only: first and last row, first and last column of each slice
    sides = bone[:, 0, :].any(axis=1) & bone[:, -1, :].any(axis=1)
    sides &= bone[:, :, 0].any(axis=1) & bone[:, :, -1].any(axis=1)
    return float(sides[held].mean())


# principal-axis fits use about this many bone voxels (a regular subsample: the axis of millions is the same)
AXIS_SAMPLE_VOXELS = 1_000_000


def long_axis_tilt_deg(bone: np.ndarray, spacing_mm, *, offset_zyx=(0, 0, 0)) -> tuple[float, float]:
    """(angle in degrees between the bone's principal axis and z, elongation) of a bone mask.

    The principal axis is the eigenvector of the largest eigenvalue of the covariance of the bone voxels'
    positions (mm); the elongation is that eigenvalue over the next one: a shaft is elongated (5-10 on the
    phantoms and the real femur), while a short metaphyseal piece, wider than long, has two comparable
    transverse eigenvalues (elongation near 1), so its axis says nothing. (0.0, 1.0) for fewer than 3 voxels.
    A short shaft cut across by the first and last slices is a sheared cylinder whose voxels lean further than
    its axis (a 2.3 mm piece of a 1.9 mm wide shaft leaning 15 degrees reads 18): a coarse angle, enough to
    tell a shaft leaning in the holder from one lying across the slices. The subsample is every ``step``-th
    voxel of the scan's grid, so a block of it starting at ``offset_zyx`` gives the whole scan's answer.
    """
    bone = np.asarray(bone, bool)
    n = int(np.count_nonzero(bone))
    if n < 3:
        return 0.0, 1.0
    step = max(1, int(np.ceil((n / AXIS_SAMPLE_VOXELS) ** (1.0 / 3.0))))
    first = [(-int(o)) % step for o in offset_zyx]  # the block's first index on the scan's every-step grid
    sub = bone[first[0]::step, first[1]::step, first[2]::step]
    # scan indices (integers), then mm: the same numbers from the scan or from a block of it
    points = (np.argwhere(sub) * step + np.add(first, offset_zyx)).astype(np.float64) * np.asarray(spacing_mm, float)
    if len(points) < 3:
        return 0.0, 1.0
    points -= points.mean(axis=0)
    values, vectors = np.linalg.eigh(points.T @ points / len(points))
    tilt = float(np.degrees(np.arccos(min(1.0, abs(float(vectors[0, -1]))))))
    elongation = float(values[-1] / values[-2]) if values[-2] > 0 else float("inf")
    return tilt, elongation
