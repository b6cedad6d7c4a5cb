"""Bone destruction without a reference scan: cortical defects, lytic and blastic lesions.

The bone is described in a polar frame around its axis (`lesions_polar`):
the periosteal radius R(z, angle) of the bridged envelope and the endosteal
radius (outermost marrow-space voxel) per angle bin. Smooth models of both,
fitted with lesion outliers excluded, give the *expected* intact cortex:

* blastic  = bone outside the expected periosteal surface (outgrowths);
* lytic    = non-bone inside the expected cortex (eaten from either side);
* defects  = lytic channels that pass through the whole expected cortex,
  found as in Peters et al. (cortical breaks): bone dilated by one voxel to
  close sub-resolution gaps, keep non-bone components of the shell touching
  both the outside and the marrow, grow them back by one voxel, keep those of
  at least ``min_defect_area_mm2`` on the expected periosteal surface whose
  region of missing bone shows on the gray values at least `MIN_MISSING_FRACTION`
  of what the opening removes (an opening with the bone still there is not one).

Lytic and blastic regions use a tolerance of 1.5 voxels (partial volume and
the staircase of the surface) to find their cores, drop cores smaller than
``min_lesion_mm3``, then grow back into the tolerance band so the volume is
not biased low by the band.

References
----------
Peters M et al., An automated algorithm for the detection of cortical interruptions on HR-pQCT images,
J Bone Miner Res 2019; Zhao M ... Manske SL, Bone 2022 (Bone Analysis Modules).
Evans HR et al., Osteolytica, 2015 (bridged envelope, surface area missing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import SegmentationError
from ..memory import sparse_zeros
from ..segment.coded import values_where
from ..segment.distance import ring_mm, within_mm
from ..segment.flood import flood_in_slices
from ..segment.labels import label_counts, label_on_box, lookup
from ..segment.large_components import largest_component
from ..segment.morphology import dilate_cross
from ..volume import Volume, bounding_box, mask_as_bool
from .lesions_geometry import (components, keep_large, label_boxes, label_dtype, max_diameter_mm, surface_area_mm2,
                               surface_normals, touching)
from .lesions_lytic import PV_REACH_VOX, missing_bone_mm3
from .lesions_polar import CortexShell, largest_gap, polar_frame, robust_surface_model
from .masked_median import masked_median

log = logging.getLogger(__name__)

# tolerance band around modelled surfaces, in voxels: half a voxel of partial volume on each side plus
# the half-voxel staircase of a digital surface
TOLERANCE_VOX = 1.5
DENSITY_METRIC = {"HU": "blastic_mean_density_hu", "mgHA/cm3": "blastic_mean_density_mgha_cm3",
                  "raw": "blastic_mean_density_raw", "mask": "blastic_mean_density_raw"}
# how far (mm) an outgrowth may stand out of the bone threshold's envelope and still be measured
OUTGROWTH_REACH_MM = 0.3
# a slice is analysed when its largest bone section holds this fraction of its envelope area
MAIN_SECTION_FRACTION = 0.75
# a cortical defect's region of missing bone must show, on the gray values, at least this fraction of the bone
# its opening removes through the modelled cortex (area x thickness). Measured on the validation phantoms
# (10-50 um, perforations of radius 75-250 um, breaching cavities): 0.89-10; the opening a threshold reads in
# the thin shell at a healthy femur's third trochanter: 0.0
MIN_MISSING_FRACTION = 0.25
# slices of smoothed values made at a time where only a few voxels of a large box are read
DENSITY_SLAB = 32


@dataclass
class LesionMeasurement:
    """What `measure_lesions` returns.

    Attributes
    ----------
    metrics : dict
        cortical_defect_count, cortical_defect_area_mm2, largest_defect_area_mm2, cortical_defect_pct,
        lytic_volume_mm3, blastic_volume_mm3, blastic_mean_density_<unit> (None without blastic bone, and on
        binary input, whose values are labels).
    lesions : list of dict
        One row per lesion with `ctbone.result.LESION_COLUMNS`. A perforation appears twice, on purpose: as a
        "defect" (its opening: area on the periosteal surface, voxel volume of the channel) and inside
        a "lytic" region (the bone it removed, partial-volume corrected); do not sum volumes across kinds.
    masks : dict of Volume
        "defects", "lytic", "blastic": uint8 masks on the segmentation grid.
    info : dict
        Provenance: the periosteal surface area (mm², denominator of cortical_defect_pct), tolerances,
        angle bins, dense-bone level, modelled cortical thickness, the plain voxel-count lytic volume,
        dense outgrowths left out of blastic, slices analysed.
    outgrowth_region : Volume or None
        uint8 mask: outward from the modelled periosteal surface less its tolerance, in the columns
        (slice x angle bin) that hold blastic bone, widened by the tolerance. Where woven bone grows, not
        cortex: Ct.Po leaves it out (`ctbone.measure.porosity`).
    cortex_model : dict or None
        The modelled intact cortex, for pictures (`ctbone.report.qc_slices`): "start_zyx" (where the lesion
        stage's crop starts on the segmentation grid), "centres_yx_mm" ((Z, 2), the frame's slice centres, mm
        from that crop's first voxel), "periosteal_mm" and "endosteal_mm" ((Z, n_bins) radii, NaN where not
        modelled), "analysed" ((Z,) bool: the slices the lesions were measured in); bin k spans the angles
        atan2(y, x) from 2πk/n − π.
    """

    metrics: dict[str, Any]
    lesions: list[dict[str, Any]]
    masks: dict[str, Volume]
    info: dict[str, Any] = field(default_factory=dict)
    outgrowth_region: Volume | None = None
    cortex_model: dict[str, Any] | None = None


def measure_lesions(seg, options) -> LesionMeasurement:
    """Cortical defects, lytic and blastic lesions of a segmented long bone.

    Parameters
    ----------
    seg : ctbone.segment.Segmentation
        Uses ``smoothed_array``, ``calibrated_values``, ``bone`` and ``envelope`` (bridged periosteal envelope);
        all on one grid, the bone's long axis along z.
    options : AnalysisOptions
        ``min_defect_area_mm2`` (inclusive), ``min_lesion_mm3`` (inclusive).

    Returns
    -------
    LesionMeasurement

    Examples
    --------
    >>> from ctbone.phantoms import PhantomSpec, make_phantom
    >>> from ctbone.measure.lesions_standin import standin_segmentation
    >>> from ctbone.options import AnalysisOptions
    >>> spec = PhantomSpec(voxel_mm=0.03, length_mm=1.2, metaphysis_length_mm=0, noise_hu=0,
    ...                    lesions=({"kind": "perforation", "z_mm": 0.6, "radius_mm": 0.12},))
    >>> vol, truth = make_phantom(spec, seed=0)
    >>> res = measure_lesions(standin_segmentation(vol), AnalysisOptions())
    >>> res.metrics["cortical_defect_count"], truth["cortical_defect_count"]
    (1, 1)
    """
    if getattr(seg, "mode", "long-bone") == "trabecular-cube":
        return _not_measured(seg, "a trabecular cube has no cortex or periosteal surface")
    bone_full = _mask(seg.bone, "bone")
    env_full = _mask(seg.envelope, "envelope") | bone_full
    if not bone_full.any():
        raise SegmentationError(f"{_source(seg)}: no bone voxels to measure lesions on. "
                                "Potential fix: check the threshold and the ROI")
    spacing = seg.bone.spacing
    s = float(np.mean(spacing[1:]))
    tol = TOLERANCE_VOX * s
    voxel_mm3 = float(np.prod(spacing))
    min_lesion_vox = max(options.min_lesion_mm3 / voxel_mm3, 1.0)

    # the crop must hold outgrowths that the bone threshold left out of the envelope (woven bone)
    margin_vox = int(np.ceil(TOLERANCE_VOX)) + 3 + int(np.ceil(OUTGROWTH_REACH_MM / s))
    crop = seg.bone.bounding_slices(env_full, margin_vox=margin_vox)
    bone, env = bone_full[crop], env_full[crop]
    density = seg.calibrated_values(crop)  # a view: of the float32 crop, or of its codes (CodedValues)

    # the polar model needs one bone section per slice: keep each slice's main section, and analyse only
    # slices where it holds >= MAIN_SECTION_FRACTION of the envelope (not the femoral head and neck, not
    # a separate fibula: their bone is left out rather than mistaken for outgrowths)
    env, analysable = _main_sections(env)
    del env_full  # _main_sections made the crop's own envelope
    if not analysable.any():
        raise SegmentationError(f"{_source(seg)}: no slice shows a single bone section (two bones side by side, such "
                                "as both limbs in one scan, are two); the lesion model needs a long-bone shaft. "
                                "Potential fix: restrict the ROI (--roi-mm) to the shaft, or give each bone its own scan")
    frame = polar_frame(env, spacing_mm=spacing)
    # periosteal model, fitted to the surface of the *lamellar* bone: a broad woven cap is as smooth as
    # the bone itself and cannot be told from it by shape in one slice, but it is under-mineralised
    # (Roudier 2008), so the dense bone's outline runs under it. Outgrowths (above) and bridged dips
    # (below) are both excluded; the dense outline is moved out by its median offset to the envelope.
    r_env = frame.radius_per_bin(env, reduce="max")

    def smoothed_on(box):  # the smoothed values on a box of the crop, made there: the segmentation holds none
        return seg.smoothed_array(box, within=crop)

    dense_level, dense_env, woven_level, tissue, woven_or_more = _density_levels(smoothed_on, bone, env,
                                                                                 seg.threshold, spacing)
    r_dense = frame.radius_per_bin(dense_env, reduce="max")
    del dense_env
    offset_mm = float(np.nanmedian(r_env - r_dense)) if np.isfinite(r_env - r_dense).any() else 0.0
    r_out = robust_surface_model(r_dense + offset_mm, tolerance_mm=tol, exclude="both")
    # the model is the outermost envelope voxel centre per bin: the periosteal surface. Voxels with
    # r <= surface hold the true envelope to -0.4 / -0.8 / -1.1 / -1.3 / -2.1 % at 10 / 20 / 25 / 30 /
    # 40 um (intact phantoms, noise 60 HU). Bone beyond it is outgrowth (blastic).
    surface_t = _nan_to(r_out, -1.0).astype(np.float32)  # (Z, bins) tables, compared through frame.between
    # the cortex *shell* where defects are searched and lytic cores found stops half a voxel inside:
    # partial volume rounds the rims of openings at the surface, which would widen every opening
    out_t = surface_t - 0.5 * s

    # endosteal model: the outermost marrow-space voxel per bin; cavities and channels push it out
    # from the modelled envelope, not the segmented one: an opening wider than the bridge leaves the
    # segmented envelope open in a few slices; one voxel inside it, so that a perforation cannot
    # join the marrow to the soft tissue hugging the bone
    marrow_space = _largest(frame.between(upper=out_t - s, within=~bone))
    r_mar = frame.radius_per_bin(marrow_space, reduce="max")
    del marrow_space  # working arrays go as soon as they are used: the lesion stage holds the analysis' peak
    r_in = robust_surface_model(r_mar, tolerance_mm=tol, exclude="both", lower_start=True)
    in_t = _nan_to(r_in, np.inf).astype(np.float32) + 0.5 * s
    # the shell (in_t < r <= out_t, analysed slices) and the expected envelope (r <= out_t) are made where they
    # are read: held, they were two crop-sized masks under every step of the stage's memory peak
    cortex = CortexShell(frame, in_t, out_t, analysable)

    expected = cortex.expected()
    normals = surface_normals(expected, spacing_mm=spacing)
    periosteal_mm2 = normals.whole_area_mm2(expected)
    del expected

    in_slices = analysable[:, None, None]
    # cortical defects only where the bone is a tube: a slice whose cortex is open, for longer along the
    # bone than the largest opening the envelope bridges, is a bone end (epiphysis, femoral head and
    # neck), not a perforation
    covered = frame.bins_holding(cortex.shell(within=dilate_cross(bone)))
    arc_gap_mm = largest_gap(covered) * 2 * np.pi * np.nan_to_num(np.nanmedian(r_out, axis=1)) / frame.n_bins
    tube = analysable & _tube_slices(bone, env, arc_gap_mm, max_opening_mm=options.max_defect_diameter_mm,
                                     slice_mm=spacing[0])
    blastic, dense_outgrowth_mm3 = _blastic_bone(
        woven_or_more, smoothed_on, bone, env, frame, surface_t, in_slices, dense_level=dense_level,
        woven_level=woven_level, tissue=tissue, threshold=seg.threshold, tol=tol, min_voxels=min_lesion_vox,
        spacing=spacing)
    del woven_or_more  # made into the outgrowths' search region there, and gone with it
    defect_labels, defect_areas = _cortical_defects(bone, cortex, tube, env, normals, spacing,
                                                    options.min_defect_area_mm2)
    del env  # the crop's own envelope: not needed past the defects, and the stage's peak is still ahead
    # lytic cores keep clear of both modelled surfaces, by at most a quarter of the cortex so that a
    # 4-voxel cortex (180 um at 40 um) still has a core; full-thickness defects are cores by definition
    thickness_mm = float(np.nanmedian(r_out - r_in)) if np.isfinite(r_out - r_in).any() else 0.0
    core_tol = min(tol, 0.25 * thickness_mm)
    open_shell = cortex.shell(within=np.logical_not(bone))  # the shell's non-bone space: where lytic cores grow
    lytic_core = frame.between(in_t + core_tol, out_t - core_tol, within=open_shell)
    np.logical_or(lytic_core, defect_labels, out=lytic_core)
    lytic = _grow_back(lytic_core, open_shell, min_lesion_vox, tol + s, spacing)
    del lytic_core, open_shell

    lytic_labels, n_lytic = components(lytic)
    # the loss is measured on gray values (partial-volume sums): each column of the cortex (slice x angle
    # bin) holds a bone mass; the lesion's columns are compared with their intact neighbours
    lamellar = cortex.shell(within=bone)
    interior = frame.between(in_t + s, out_t - s, within=lamellar)
    if interior.any():
        lamellar = interior
    del interior
    i_bone = masked_median(density, lamellar) if lamellar.any() else None
    del lamellar  # before the band is made: the stage's memory peak is here
    reach = PV_REACH_VOX * s
    band = frame.between(in_t - reach, out_t + reach)
    band &= in_slices
    band[blastic] = False
    lytic_pv_mm3, levels = missing_bone_mm3(density, lytic_labels, n_lytic, band, blastic, frame, i_bone, voxel_mm3,
                                             cortex_model=cortex.shell())
    del band
    defect_labels, defect_areas, unsupported = _with_missing_bone(defect_labels, defect_areas, lytic_labels,
                                                                  lytic_pv_mm3, thickness_mm)
    # a region whose gray values show less bone missing than min_lesion_mm3 is a dip of the thresholded
    # surface, not a loss of bone: dropped (lytic_volume_mm3 counts regions >= min_lesion_mm3), unless it
    # holds a cortical defect
    keep = lytic_pv_mm3 >= options.min_lesion_mm3
    keep[np.unique(lytic_labels[defect_labels > 0])] = True
    keep[0] = False
    lytic = lookup(keep, lytic_labels)
    lytic_pv_mm3 = np.r_[0.0, lytic_pv_mm3[keep]]
    n_lytic = int(keep.sum())
    # the kept regions renumbered 1..n, the dropped ones 0, in the smallest type (cumsum gives int64: the table
    # is cast, not the volume)
    lytic_labels = lookup((np.cumsum(keep) * keep).astype(label_dtype(n_lytic)), lytic_labels)

    # one row per lesion, each worked on its own box (a full-crop pass per lesion adds up at 512^3)
    rows = []
    offset = _starts(crop)
    has_density = not getattr(seg, "is_binary_input", False)  # a binary image's values are labels
    row_density = density if has_density else None
    for k, (area, box) in enumerate(zip(defect_areas, label_boxes(defect_labels, len(defect_areas))), start=1):
        rows.append(_row(seg, defect_labels[box] == k, box, "defect", area, row_density, offset, spacing))
    for k, box in enumerate(label_boxes(lytic_labels, n_lytic), start=1):
        part = lytic_labels[box] == k
        area = surface_area_mm2(cortex.on_box(box).expected(), part, spacing_mm=spacing, normals=normals,
                                origin=_starts(box))
        rows.append(_row(seg, part, box, "lytic", area, row_density, offset, spacing, volume_mm3=lytic_pv_mm3[k]))
    labels, n = components(blastic)
    for k, box in enumerate(label_boxes(labels, n, margin_vox=2), start=1):  # 2: the footprint reaches 1 out
        part = labels[box] == k
        expected = cortex.on_box(box).expected()
        foot = expected & dilate_cross(part)
        area = surface_area_mm2(expected, foot, spacing_mm=spacing, normals=normals, origin=_starts(box))
        rows.append(_row(seg, part, box, "blastic", area, row_density, offset, spacing))
    for i, row in enumerate(rows, start=1):
        row["id"] = i
    del labels, lytic_labels  # crop-sized label volumes, done with

    # where the woven bone grows: its spaces are not the cortex's pores (Ct.Po leaves this region out).
    # The columns holding blastic bone, widened by the tolerance (the cap's thin margins), from the
    # modelled surface less the tolerance (the partial volume of the cap's spaces on the cortex). Made
    # here, past the partial-volume sums: one crop-sized mask less at the stage's memory peak
    has_blastic = np.isfinite(frame.radius_per_bin(blastic, reduce="max"))
    arc_mm = 2 * np.pi * float(np.nanmedian(r_out)) / frame.n_bins if np.isfinite(r_out).any() else s
    reach = (2 * int(np.ceil(tol / spacing[0])) + 1, 2 * int(np.ceil(tol / max(arc_mm, 1e-9))) + 1)
    has_blastic = ndimage.maximum_filter(has_blastic, size=reach, mode=("nearest", "wrap"))
    outgrowth = frame.between(lower=np.where(has_blastic, surface_t - np.float32(tol), np.float32(np.inf)))
    outgrowth &= in_slices

    # the crop-sized working arrays go before the full-size output masks are made (the stage's memory peak)
    n_bins, centres = frame.n_bins, frame.centres_yx_mm
    del normals, frame, cortex

    areas = [float(a) for a in defect_areas]
    metrics = {
        "cortical_defect_count": len(areas),
        "cortical_defect_area_mm2": float(sum(areas)),
        "largest_defect_area_mm2": float(max(areas, default=0.0)),
        "cortical_defect_pct": 100.0 * float(sum(areas)) / periosteal_mm2 if periosteal_mm2 > 0 else 0.0,
        "lytic_volume_mm3": float(lytic_pv_mm3[1:].sum()),
        "blastic_volume_mm3": float(blastic.sum()) * voxel_mm3,
        DENSITY_METRIC[seg.unit]: float(values_where(density, blastic).mean()) if blastic.any() and has_density
        else None,
    }
    def on_scan_grid(mask):
        # written on the mask's own box: a lesion mask is mostly empty, and the zeros' pages never written
        # are never made resident
        full = sparse_zeros(seg.bone.shape, np.uint8)
        box = bounding_box(mask)
        if box is not None:
            full[crop][box] = mask[box]
        return seg.bone.with_array(full, unit="mask")

    masks = {name: on_scan_grid(mask)
             for name, mask in (("defects", defect_labels > 0), ("lytic", lytic), ("blastic", blastic))}
    outgrowth_region = on_scan_grid(outgrowth)
    del outgrowth
    info = {
        "periosteal_surface_mm2": periosteal_mm2,
        "slices_analysed": int(analysable.sum()),
        "slices_defect_search": int(tube.sum()),
        "slices_total": int(len(analysable)),
        "dense_outgrowths_excluded_mm3": dense_outgrowth_mm3,
        "lytic_voxel_count_mm3": float(lytic.sum()) * voxel_mm3,
        "lytic_bone_level": levels[0],
        "lytic_fill_level": levels[1],
        "lesion_tolerance_mm": tol,
        "openings_without_missing_bone_mm2": unsupported,
        "lytic_core_tolerance_mm": core_tol,
        "cortical_thickness_model_mm": thickness_mm,
        "angle_bins": n_bins,
        "dense_bone_level": dense_level,
        "woven_bone_level": woven_level,
        "dense_outline_offset_mm": offset_mm,
        "density_source": "raw_image",
    }
    log.debug("lesions: %s", metrics)
    cortex_model = {"start_zyx": [int(v) for v in offset], "centres_yx_mm": np.asarray(centres, np.float64),
                    "periosteal_mm": np.asarray(r_out, np.float32), "endosteal_mm": np.asarray(r_in, np.float32),
                    "analysed": np.asarray(analysable, bool)}
    return LesionMeasurement(metrics, rows, masks, info, outgrowth_region=outgrowth_region, cortex_model=cortex_model)


def _blastic_bone(woven_or_more, smoothed_on, bone, env, frame, surface_t, in_slices, *, dense_level, woven_level,
                  tissue, threshold, tol, min_voxels, spacing):
    """(blastic mask, dense outgrowths left out mm³) beyond the modelled periosteal surface.

    ``woven_or_more``: the voxels at or above ``woven_level`` (`_density_levels`), made into the search region in
    place; ``smoothed_on(box)``: the smoothed image on a box of the crop."""
    s = float(np.mean(spacing[1:]))
    # woven bone is under-mineralised and may lie below a threshold chosen for cortex (Roudier 2008):
    # beyond the modelled surface (not the shell's limit: counting from there added the cortex's own
    # half-voxel rim under a cap, +20 % on a 150 um cap at 25 um), bone is whatever reaches a quarter of the
    # way from the surrounding tissue to lamellar bone (never above the bone threshold), attached to the bone
    wide = woven_or_more
    wide |= bone
    wide &= in_slices
    wide &= frame.between(lower=surface_t)
    beyond_tol = frame.between(lower=surface_t + tol)
    # an outgrowth as dense as lamellar bone is a normal ridge (third trochanter, tibial crest) as far as a
    # single scan can tell; woven bone is under-mineralised (Roudier 2008). Dense ones are left out and
    # reported in info: a reference scan (bone_gained_mm3) is needed for sclerotic lesions. Judged on the
    # outgrowths at the quarter level, whole (the level below can split a ridge into pieces of any density).
    candidates = _attached(_grow_back(wide & beyond_tol, wide, min_voxels, tol + s, spacing), bone, env)
    kept, dense_outgrowth_mm3 = _drop_dense(candidates, smoothed_on, bone, dense_level, float(np.prod(spacing)))
    del candidates
    # a denser cap is then cut at its own half maximum: half-way from the tissue to the brightest value within
    # 2 voxels (the quarter level is the half maximum of ~700 HU woven bone only; a denser cap would keep its
    # pores' and margins' partial volume), the peak taken beyond the tolerance band so that the cortex's own
    # blur does not set the level of the cap's first layers
    outside = sparse_zeros(wide.shape, bool)
    box = bounding_box(kept, margin_vox=3)  # only the kept outgrowths (and the filter's reach) matter
    if box is not None:
        values = smoothed_on(box)
        far = np.where(beyond_tol[box], values, np.float32(tissue))
        level = ndimage.maximum_filter(far, size=5, mode="nearest")
        level += np.float32(tissue)
        level *= np.float32(0.5)
        np.clip(level, np.float32(woven_level), np.float32(threshold), out=level)
        outside[box] = wide[box] & (bone[box] | (values >= level))
        del far, level, values
    del wide
    blastic = _grow_back(outside & beyond_tol, outside, min_voxels, tol + s, spacing)
    del outside, beyond_tol
    blastic = _attached(blastic, bone, env)
    box = bounding_box(blastic)
    if box is not None:  # on the lesions' box: the mask's pages beyond it are never written
        blastic[box] &= kept[box]
    return blastic, dense_outgrowth_mm3


def _cortical_defects(bone, cortex, tube, env, normals, spacing, min_area_mm2):
    """Peters-style full-thickness breaks: (labels, areas_mm2) of the kept defects, labels 1..n, in the
    shell of the modelled ``cortex`` (`CortexShell`) in the slices where ``tube`` ((Z,) bool) holds, joining
    its modelled marrow to the soft tissue outside.

    A break must join the marrow to the soft tissue *outside the bone*: the non-bone space beyond the
    modelled surface that reaches the unbridged exterior within its own slice (as Peters' flood fill
    from the image corner), with the same one-voxel gap closing. A pocket under a ridge left out of the model (third trochanter)
    or enclosed by an outgrowth is not the outside.
    """
    in_tube = tube[:, None, None]  # broadcast: no shell-sized copy for the tube's slices
    solid = dilate_cross(bone)
    not_solid = np.logical_not(solid)
    not_solid &= in_tube
    candidates = cortex.shell(within=not_solid)  # shell & ~solid & in_tube
    del not_solid
    if not candidates.any():
        return sparse_zeros(bone.shape, np.uint8), []
    # per slice (in-plane connectivity only): a pocket sealed in its own slices must not reach the
    # exterior through slices further along the bone. The in-slice parts of that space in or face-adjacent
    # to the unbridged outside, grown without a label volume (the stage's memory peak was here)
    np.logical_not(solid, out=solid)
    beyond = cortex.beyond(within=solid)  # ~expected & ~solid
    del solid
    seeds = dilate_cross(~env)
    seeds &= beyond
    exterior = flood_in_slices(beyond, seeds, connectivity=4)
    del beyond, seeds
    labels, n = components(candidates)
    del candidates
    through = touching(labels, n, exterior)
    del exterior
    # the modelled marrow, every slice; made here, where little else is held (the stage's memory peak)
    marrow = cortex.marrow()
    through &= touching(labels, n, marrow)
    del marrow
    kept = lookup(through, labels)
    del labels  # a crop-sized label volume: gone before the growth's arrays are made (the stage's peak)
    grown = cortex.shell(within=dilate_cross(kept))
    del kept
    grown &= in_tube
    grown &= ~bone
    labels, n = components(grown)
    del grown
    out = sparse_zeros(bone.shape, label_dtype(n))  # few defects: a byte a voxel suffices
    areas = []
    for k, box in enumerate(label_boxes(labels, n), start=1):
        part = labels[box] == k
        area = surface_area_mm2(cortex.on_box(box).expected(), part, spacing_mm=spacing, normals=normals,
                                origin=_starts(box))
        if area >= min_area_mm2:
            areas.append(area)
            out[box][part] = len(areas)
    return out, areas


def _with_missing_bone(defect_labels, areas, lytic_labels, missing_mm3, thickness_mm):
    """(defect labels renumbered 1..n, their areas, the areas of the openings dropped): the defects whose
    regions of missing bone (``lytic_labels``, with ``missing_mm3`` measured on the gray values) show at least
    `MIN_MISSING_FRACTION` of what their openings remove through a cortex ``thickness_mm`` thick.

    An opening through the cortex removes bone; one the threshold reads as open while the gray values show the
    bone there (a shell thinner than the threshold sees, anatomy the smooth surface model does not follow) is
    not a defect. A region holding several defects is judged on their summed areas; a defect in no region of
    missing bone (too small to be one) is kept, there being nothing to judge it by."""
    if not areas or not thickness_mm > 0:
        return defect_labels, areas, []
    regions = []
    for k, box in enumerate(label_boxes(defect_labels, len(areas)), start=1):
        found = np.unique(lytic_labels[box][defect_labels[box] == k])
        regions.append(found[found > 0])
    opened = np.zeros(len(missing_mm3))  # per region: the bone its defects' openings remove
    for area, found in zip(areas, regions):
        opened[found] += area * thickness_mm
    supported = [found.size == 0 or bool(np.any(missing_mm3[found] >= MIN_MISSING_FRACTION * opened[found]))
                 for found in regions]
    if all(supported):
        return defect_labels, areas, []
    table = np.zeros(len(areas) + 1, defect_labels.dtype)
    table[1:][supported] = np.arange(1, sum(supported) + 1)
    dropped = [float(a) for a, ok in zip(areas, supported) if not ok]
    log.info("%d opening(s) of %s mm2 read as open by the threshold, but their gray values show the bone there: not "
             "counted as cortical defects", len(dropped), ", ".join(f"{a:.3g}" for a in dropped))
    return lookup(table, defect_labels), [a for a, ok in zip(areas, supported) if ok], dropped


def _grow_back(core, allowed, min_voxels, reach_mm, spacing):
    """Cores of at least ``min_voxels``, grown within ``allowed`` by up to ``reach_mm``; then regions of
    at least ``min_voxels`` (growth can leave small fragments beside a core)."""
    kept = keep_large(core, min_voxels=min_voxels)
    # the growth stays within reach of the kept cores: the distance is needed on their box only
    box = bounding_box(kept, margin_vox=int(np.ceil(reach_mm / min(spacing))) + 1)
    if box is None:
        return kept
    grown = within_mm(kept[box], spacing_mm=spacing, radius_mm=reach_mm)
    grown &= allowed[box]
    # the cores' array takes the answer (one crop-sized mask less at the stage's peak): the box holds all of
    # the cores, so writing it is enough, and the pages beyond it, never written, stay unmapped
    kept[box] = keep_large(grown, min_voxels=min_voxels)  # components in the box are the same on the crop
    return kept


def _density_levels(smoothed_on, bone, env, threshold, spacing):
    """The smoothed image's levels, from it made slab by slab (no crop-sized copy): (dense level, the envelope's
    voxels at or above it, woven level, tissue level, the voxels at or above the woven level).

    Dense level: half-way between the bone threshold and the typical (median) bone value; lamellar bone is above.
    Woven level: 1/4 from the tissue around the bone (2-6 voxels out) to lamellar bone, never above the bone
    threshold; the tissue level is the median of that ring."""
    shape = bone.shape

    def slabs():
        for lo in range(0, shape[0], DENSITY_SLAB):
            z = slice(lo, min(lo + DENSITY_SLAB, shape[0]))
            yield z, smoothed_on((z, slice(0, shape[1]), slice(0, shape[2])))

    threshold = float(threshold)
    dense_level = threshold
    if bone.any():
        dense_level += 0.5 * (_median_of([values[bone[z]] for z, values in slabs()]) - threshold)
    s = float(np.mean(spacing[1:]))
    around = ring_mm(env, spacing_mm=spacing, inner_mm=2 * s, outer_mm=6 * s)
    dense_env = np.empty(shape, bool)
    lamellar, ring = [], []
    for z, values in slabs():
        dense = values >= dense_level
        np.logical_and(env[z], dense, out=dense_env[z])
        dense &= bone[z]
        lamellar.append(values[dense])
        ring.append(values[around[z]])
    del around
    woven_level = tissue = threshold
    if sum(v.size for v in ring) and sum(v.size for v in lamellar):
        tissue, lamellar_value = _median_of(ring), _median_of(lamellar)
        woven_level = min(threshold, tissue + 0.25 * (lamellar_value - tissue))
    del ring, lamellar
    woven_or_more = np.empty(shape, bool)
    for z, values in slabs():
        np.greater_equal(values, woven_level, out=woven_or_more[z])
    return dense_level, dense_env, woven_level, tissue, woven_or_more


def _median_of(parts) -> float:
    """``np.median`` of the values of ``parts`` (float32 arrays) together (`masked_median`, in two passes)."""
    values = np.concatenate(parts)
    return masked_median(values.reshape(1, 1, -1), np.ones((1, 1, values.size), bool))


def _attached(mask, bone, within):
    """Components of ``mask`` touching ``bone`` where it is ``within`` (the envelope).

    Labelled on the mask's box plus one voxel (every face neighbour of the mask lies in it): no crop-sized
    label volume beside cc3d's own, and no crop-sized ``bone & within``."""
    box = bounding_box(mask, margin_vox=1)
    if box is None:
        return mask
    labels, n = components(np.ascontiguousarray(mask[box]))
    if n == 0:
        return mask
    out = sparse_zeros(mask.shape, bool)
    out[box] = lookup(touching(labels, n, bone[box] & within[box]), labels)
    return out


def _drop_dense(blastic, smoothed_on, bone, dense_level, voxel_mm3):
    """(blastic without components whose median density is lamellar, volume dropped mm³).

    "Median lamellar" = at least half of the component's voxels above the bone threshold are at or
    above ``dense_level`` (two counts per component: linear time, where a per-label median sorts).
    Binary input carries no density: nothing is dropped then. ``smoothed_on(box)``: the smoothed image
    on a box of the crop, read here slab by slab (no box-sized copy of it).
    """
    labels, n, box = label_on_box(blastic)  # on the candidates' box: no crop-sized label volume
    if n == 0:
        return blastic, 0.0
    candidates = blastic[box]
    # judged on the voxels above the bone threshold: the partial-volume rim a low woven level adds
    # around a ridge must not make it look under-mineralised
    n_core = np.zeros(n + 1, np.int64)
    n_dense = np.zeros(n + 1, np.int64)
    lowest, highest = np.inf, -np.inf
    z0 = box[0].start
    for lo in range(0, candidates.shape[0], DENSITY_SLAB):
        hi = min(lo + DENSITY_SLAB, candidates.shape[0])
        values = smoothed_on((slice(z0 + lo, z0 + hi), box[1], box[2]))
        held = values[candidates[lo:hi]]
        if held.size:
            lowest, highest = min(lowest, float(held.min())), max(highest, float(held.max()))
        core_voxels = bone[box][lo:hi] & candidates[lo:hi]
        core = labels[lo:hi][core_voxels]
        n_core += np.bincount(core, minlength=n + 1)
        n_dense += np.bincount(core[values[core_voxels] >= dense_level], minlength=n + 1)
    if lowest == highest:
        return blastic, 0.0
    dense = (n_core > 0) & (2 * n_dense >= n_core)
    dense[0] = False
    dropped = lookup(dense, labels)
    del labels
    kept = sparse_zeros(blastic.shape, bool)  # written on the box, which holds every candidate
    kept[box] = candidates & ~dropped
    return kept, float(np.count_nonzero(dropped)) * voxel_mm3


def _tube_slices(bone: np.ndarray, env: np.ndarray, arc_gap_mm: np.ndarray, *, max_opening_mm: float,
                 slice_mm: float) -> np.ndarray:
    """Slices inside the bone's tube, where cortical defects are searched: (Z,) bool.

    A slice is *closed* when its bone (gaps of one voxel closed, as in the defect search) encloses at
    least half of the non-bone space of its section, or when the widest gap of its cortex around the
    bone (``arc_gap_mm``) is at most half the largest opening the envelope bridges (``max_opening_mm``,
    D): a perforation of diameter D leaves a wider gap over 0.87 D of its length only, so a run of open
    slices longer than D is where the bone stops being a tube (epiphysis, femoral head and neck). The
    tube is every stretch between such long open runs that holds a closed run at least D long, or one
    reaching an end of the stack (the shaft goes on beyond the scan).
    """
    nz = bone.shape[0]
    max_open = max_opening_mm / slice_mm + 1.0
    closed = arc_gap_mm <= 0.5 * max_opening_mm
    for z in np.flatnonzero(~closed):
        b = dilate_cross(bone[z]) & env[z]
        space = int((env[z] & ~b).sum())
        if space == 0:
            continue
        enclosed = int((ndimage.binary_fill_holes(b) & ~b).sum())
        closed[z] = enclosed >= 0.5 * space
    edges = np.flatnonzero(np.diff(closed.astype(np.int8))) + 1
    runs = [(int(a), int(b), bool(closed[a])) for a, b in zip(np.r_[0, edges], np.r_[edges, nz])]
    tube = np.zeros(nz, bool)
    stretch, anchored = [], False
    for a, b, c in runs + [(nz, nz, False)]:
        if (not c and b - a > max_open) or a == nz:  # a long open run (or the end) closes a stretch
            if anchored:
                for lo, hi in stretch:
                    tube[lo:hi] = True
            stretch, anchored = [], False
            continue
        stretch.append((a, b))
        anchored |= c and (b - a >= max_open or a == 0 or b == nz)
    return tube


def _main_sections(env: np.ndarray):
    """(envelope reduced to each slice's largest 2D section, slices where that section dominates)."""
    import cc3d

    out = np.zeros_like(env)
    analysable = np.zeros(env.shape[0], bool)
    for z in range(env.shape[0]):
        # 8-connected in the slice; cc3d numbers components in raster order of their first pixel, as scipy's
        # label does (so a tie of sizes picks the same section); cc3d labels 3x faster
        labels, n = cc3d.connected_components(np.ascontiguousarray(env[z], bool).view(np.uint8), connectivity=8,
                                              return_N=True)
        if n == 0:
            continue
        if n == 1:  # one section (most slices of a shaft): it is the slice's envelope, and it dominates
            out[z] = env[z]
            analysable[z] = True
            continue
        sizes = label_counts(labels, int(n))
        sizes[0] = 0
        main = int(sizes.argmax())
        out[z] = labels == main
        analysable[z] = sizes[main] >= MAIN_SECTION_FRACTION * sizes.sum()
    return out, analysable


def _row(seg, part, box, kind, area, density, offset, spacing, *, volume_mm3=None):
    """One lesions.csv row; ``part`` is the lesion's mask on ``box`` of the lesion grid; ``density`` None: no
    mean density (binary input)."""
    idx = np.argwhere(part) + _starts(box)
    centre = seg.bone.index_to_physical(idx.mean(axis=0) + offset)
    return {
        "id": 0, "kind": kind,
        "volume_mm3": float(len(idx)) * float(np.prod(spacing)) if volume_mm3 is None else float(volume_mm3),
        "area_mm2": float(area),
        "max_diameter_mm": max_diameter_mm(idx, spacing_mm=spacing),
        "centroid_x_mm": float(centre[0]), "centroid_y_mm": float(centre[1]), "centroid_z_mm": float(centre[2]),
        "mean_density": float("nan") if density is None else float(values_where(density[box], part).mean()),
    }


def _starts(box) -> np.ndarray:
    return np.array([sl.start for sl in box])


def _largest(mask):
    """The largest 6-connected component of ``mask``, labelled slab by slab (`largest_component`): the marrow
    space fills the crop, and its label volume (4 bytes a voxel) was the lesion stage's largest step up."""
    return largest_component(mask, connectivity=6)


def _nan_to(table, value):
    return np.where(np.isfinite(table), table, value)


def _not_measured(seg, why: str) -> LesionMeasurement:
    """Lesion metrics as missing (empty in the tables), no lesion masks, and the reason in info."""
    density_name = DENSITY_METRIC.get(seg.unit, "blastic_mean_density_raw")
    names = ("cortical_defect_count", "cortical_defect_area_mm2", "largest_defect_area_mm2", "cortical_defect_pct",
             "lytic_volume_mm3", "blastic_volume_mm3", density_name)
    return LesionMeasurement(metrics={n: None for n in names}, lesions=[], masks={}, info={"not_measured": why})


def _mask(volume, name):
    if volume is None:
        raise SegmentationError(f"segmentation has no {name} mask; Potential fix: run ctbone.segment.segment first")
    return mask_as_bool(volume.array)  # a view of the segmentation's mask: read only here


def _source(seg):
    return seg.bone.meta.get("source", "scan") if getattr(seg, "bone", None) is not None else "scan"
