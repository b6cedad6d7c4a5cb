"""Standard micro-CT morphometry (Bouxsein et al. 2010 nomenclature) of a `Segmentation`.

Every metric is defined, with its unit and algorithm, in docs/metrics.md.
"""

from __future__ import annotations

import logging

import numpy as np

from ..memory import sparse_zeros
from ..segment.coded import values_where
from ..volume import bounding_box, mask_as_bool
from ._euler import connectivity_density_per_mm3
from ._surface import kept_surface_area_mm2, surface_area_mm2
from .porosity import cortical_porosity_pct
from .thickness import mean_local_thickness_mm

log = logging.getLogger(__name__)

_THRESHOLD_NAME = {"HU": "threshold_hu", "mgHA/cm3": "threshold_mgha_cm3", "raw": "threshold_raw",
                   "mask": "threshold_raw"}
NAN = float("nan")


def standard_morphometry(seg, lesions=None) -> dict:
    """ASBMR standard morphometry over the ROI.

    Parameters
    ----------
    seg : ctbone.segment.Segmentation
    lesions : ctbone.measure.lesions.LesionMeasurement, optional
        Keeps lesions out of Ct.Po (`ctbone.measure.porosity`): lytic regions and defects are not
        pores, the region of blastic outgrowths is not cortex. `ctbone.analyze` passes them.

    Returns
    -------
    dict
        threshold_hu (or threshold_mgha_cm3 / threshold_raw), tv_mm3, bv_mm3, bv_tv_pct, bs_mm2,
        bs_bv_per_mm, tmd, tb_bv_tv_pct, tb_th_mm, tb_sp_mm, tb_n_per_mm, conn_d_per_mm3, ct_th_mm,
        ct_ar_mm2, tt_ar_mm2, ma_ar_mm2, ct_ar_tt_ar_pct, ct_po_pct. NaN where a compartment is empty.

    References
    ----------
    Bouxsein ML et al. J Bone Miner Res 2010;25:1468-86. Hildebrand T, Rüegsegger P. J Microsc
    1997;185:67-75. Odgaard A, Gundersen HJG. Bone 1993;14:173-82.

    Examples
    --------
    >>> from ctbone.phantoms import PhantomSpec, make_phantom
    >>> from ctbone.segment import segment
    >>> spec = PhantomSpec(voxel_mm=0.03, length_mm=1.0, metaphysis_length_mm=0.0)  # shaft only: a 0.18 mm cortex
    >>> vol, truth = make_phantom(spec, seed=0)
    >>> m = standard_morphometry(segment(vol))
    >>> round(m["ct_th_mm"], 2)
    0.19
    """
    spacing = seg.bone.spacing
    v = float(np.prod(spacing))
    bone = mask_as_bool(seg.bone.array)
    # the envelope, marrow, cortex and trabecular masks are made from the segmentation's when needed and let go
    # before Ct.Th, the stage's memory peak (the segmentation holds the envelope and marrow as bits)
    envelope = mask_as_bool(seg.envelope.array)
    marrow = mask_as_bool(seg.marrow.array)
    trab = bone & marrow  # Segmentation.trabecular
    n_slices = bone.shape[0]
    length_mm = n_slices * spacing[0]

    out: dict = {_THRESHOLD_NAME[seg.unit]: float(seg.threshold)}
    tv = np.count_nonzero(envelope) * v
    bv = _count_and(bone, envelope) * v
    out["tv_mm3"] = float(tv)
    out["bv_mm3"] = float(bv)
    out["bv_tv_pct"] = _pct(bv, tv)
    bs = _bone_surface_mm2(seg, bone)
    out["bs_mm2"] = bs
    out["bs_bv_per_mm"] = float(bs / bv) if bv > 0 else NAN
    # a binary image's values are labels, not densities
    has_tmd = bone.any() and not seg.is_binary_input
    out["tmd"] = float(values_where(seg.calibrated_values(), bone).mean()) if has_tmd else NAN

    # trabecular compartment (the VOI is the marrow cavity)
    tb_tv = np.count_nonzero(marrow) * v
    tb_bv = np.count_nonzero(trab) * v
    out["tb_bv_tv_pct"] = _pct(tb_bv, tb_tv)
    if trab.any():
        out["tb_th_mm"] = _mean_thickness(trab, spacing)
        space = marrow & ~bone
        has_space = bool(space.any())
        # the marrow space can be ~100 voxels across in a fine scan: measured on a coarser grid then
        # (mean_local_thickness_mm; about +1 %), where painting its balls at full resolution takes minutes
        out["tb_sp_mm"] = mean_local_thickness_mm(space, spacing_mm=spacing, wall_mm=out["tb_th_mm"])[0] if has_space else NAN
        del space
        out["tb_n_per_mm"] = 1.0 / (out["tb_th_mm"] + out["tb_sp_mm"]) if has_space else NAN
        out["conn_d_per_mm3"] = connectivity_density_per_mm3(trab, spacing_mm=spacing, voi=marrow)
    else:
        out.update(tb_th_mm=NAN, tb_sp_mm=NAN, tb_n_per_mm=NAN, conn_d_per_mm3=NAN)
    del trab

    # cortical compartment (areas are slice means: volume / ROI length)
    cortex = np.logical_not(marrow)
    cortex &= envelope
    marrow_vox = np.count_nonzero(marrow)
    del marrow, envelope  # made again after Ct.Th where needed
    if cortex.any():
        out["ct_th_mm"] = _mean_thickness(cortex, spacing)
        ct_bone = _count_and(cortex, bone)
        out["ct_ar_mm2"] = float(ct_bone * v / length_mm)
        out["tt_ar_mm2"] = float(tv / length_mm)
        out["ma_ar_mm2"] = float(marrow_vox * v / length_mm)
        out["ct_ar_tt_ar_pct"] = _pct(out["ct_ar_mm2"], out["tt_ar_mm2"])
        # the cortex's last use: the outgrowths' region is left out of it here, in place and on its box, rather than
        # in a copy by cortical_porosity_pct (its ``outgrowth``)
        outgrowth = lesions.outgrowth_region if lesions is not None else None
        box = bounding_box(outgrowth.array) if outgrowth is not None else None
        if box is not None:
            cortex[box] &= ~mask_as_bool(outgrowth.array[box])
        out["ct_po_pct"] = cortical_porosity_pct(cortex, bone, mask_as_bool(seg.envelope.array), spacing_mm=spacing,
                                                 lesion=_lesion_union(lesions))
    else:
        out.update(ct_th_mm=NAN, ct_ar_mm2=NAN, tt_ar_mm2=float(tv / length_mm) if tv > 0 else NAN,
                   ma_ar_mm2=NAN, ct_ar_tt_ar_pct=NAN, ct_po_pct=NAN)
    return out


def trabecular_cube_morphometry(volume, *, options=None) -> dict:
    """Morphometry of a cube cut from trabecular bone: the whole volume is the VOI (TV = the cube).

    Parameters
    ----------
    volume : Volume
        Gray or binary image of the cube.
    options : AnalysisOptions, keyword-only
        Threshold, smoothing and calibration are used; ROI and despeckle are not.

    Returns
    -------
    dict
        As `standard_morphometry`; tv_mm3 is the cube, bv_tv_pct = tb_bv_tv_pct, cortical metrics NaN.
    """
    from ..segment import segment

    return standard_morphometry(segment(volume, options, mode="trabecular-cube"))


def _lesion_union(lesions) -> np.ndarray | None:
    """The lytic and defect masks together (Ct.Po leaves them out), or None without lesion masks."""
    masks = lesions.masks if lesions is not None else {}
    lesion = None
    for name in ("lytic", "defects"):
        if name in masks:
            part = mask_as_bool(masks[name].array)
            if lesion is None:  # written on the lesions' boxes: the pages beyond them are never made resident
                lesion = sparse_zeros(part.shape, bool)
            box = bounding_box(part)
            if box is not None:
                lesion[box] |= part[box]
    return lesion


def _bone_surface_mm2(seg, bone: np.ndarray) -> float:
    if not bone.any():
        return 0.0
    if seg.is_binary_input:
        return surface_area_mm2(bone.astype(np.float32), level=0.5, spacing_mm=seg.bone.spacing)
    # the smoothed image at the threshold, limited to the kept bone (despeckled particles stay out)
    from ..segment.morphology import dilate_cross

    # on the bone's box plus 2 voxels (clipped): the dilated bone plus a layer of the outside value wherever the
    # box is not the grid's edge, so the field holds the same values as on the whole grid and marching cubes sees
    # the same surface
    box = bounding_box(bone, margin_vox=2)
    z0 = box[0].start

    def smoothed_planes(lo, hi):  # made slab by slab: the segmentation holds no smoothed crop
        return seg.smoothed_array((slice(z0 + lo, z0 + hi), box[1], box[2]))

    return kept_surface_area_mm2(smoothed_planes, dilate_cross(bone[box]), outside_value=seg.threshold - 1.0,
                                 level=float(seg.threshold), spacing_mm=seg.bone.spacing)


def _count_and(a: np.ndarray, b: np.ndarray) -> int:
    """Number of voxels in both masks, slice by slice (no full-size temporary)."""
    return int(sum(np.count_nonzero(a[z] & b[z]) for z in range(a.shape[0])))


def _mean_thickness(mask: np.ndarray, spacing) -> float:
    # exact, at full resolution; "open": the ROI's cut ends are not walls (a cortex cut by the ROI is not
    # thinner there)
    return mean_local_thickness_mm(mask, spacing_mm=spacing, outside="open", min_vox_across=None)[0]


def _pct(part, whole) -> float:
    return float(100.0 * part / whole) if whole > 0 else NAN
