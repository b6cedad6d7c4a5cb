"""Bone lost and gained against a reference scan (contralateral limb or baseline).

The reference is segmented as the scan was (its threshold, smoothing and
trabecular step: `segment.bone_mask_like`), optionally mirrored in x
(contralateral limb) and centred by image moments, then registered rigidly
(Euler 3D, SimpleITK, three resolutions, the finest on the surface band only)
on the Gaussian-smoothed bone masks; the comparison resamples the mask itself.
Lesions are a minority of the bone, and a second pass masks out where the two
bones disagree after the first pass, so the lesions themselves do not pull the
transform. Then, voxelwise on the scan's grid (Birkhold 2014, Campbell 2018):

* lost   = reference bone, absent now beyond ``reference_tolerance_vox``;
* gained = bone now, absent from the reference beyond the tolerance;

each keeping connected regions of at least ``min_lesion_mm3``, grown back
through the tolerance band so the volumes are not biased low by it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import RegistrationError
from ..segment.distance import within_mm
from ..segment.morphology import dilate_cross, erode_cross
from ..volume import HandedOver, Volume, mask_as_bool
from .lesions_geometry import keep_large

log = logging.getLogger(__name__)

# Dice of the bones after registration below which the result is refused: two scans of the same
# bone with lesions of a few % of BV reach > 0.8; a wrong or missed alignment of a tube gives < 0.5
MIN_REGISTRATION_DICE = 0.6
_MASK_SIGMA_VOX = 1.5
# the smoothed mask's values strictly between these are the surface band (`_surface_band`)
_BAND = (0.005, 0.995)
# samples of the cost per pyramid level, at most: 10 % of a 512^3 scan's band cost ~40 s a registration; from
# 200 000 down to 10 000 the Dice, the recovered shift and lost / gained did not change (scripts/bench_reference.py)
_MAX_SAMPLES = 20_000


@dataclass
class ReferenceComparison:
    """What `compare_to_reference` returns.

    Attributes
    ----------
    metrics : dict
        bone_lost_mm3, bone_gained_mm3, bone_lost_pct, bone_gained_pct (of the reference BV),
        registration_dice.
    masks : dict of Volume
        "lost", "gained" (uint8 on the scan's grid).
    info : dict
        transform (name, parameters, fixed centre), mirrored, metric values, threshold used.
    """

    metrics: dict[str, Any]
    masks: dict[str, Volume]
    info: dict[str, Any] = field(default_factory=dict)


def compare_to_reference(seg, reference: Volume, options) -> ReferenceComparison:
    """Register ``reference`` to the segmented scan and measure bone lost and gained.

    Parameters
    ----------
    seg : ctbone.segment.Segmentation
        Uses ``bone``, ``threshold`` and the grid of ``bone``.
    reference : Volume or HandedOver
        Reference scan in the same unit as ``seg.raw_image`` (or a 0/1 mask, unit "mask"); handed over, it is
        let go once its bone is found.
    options : AnalysisOptions
        ``reference_tolerance_vox``, ``mirror_reference``, ``min_lesion_mm3``, ``sigma_vox``.

    Returns
    -------
    ReferenceComparison

    Raises
    ------
    RegistrationError
        No reference bone, no overlap, or a Dice after registration below `MIN_REGISTRATION_DICE`.
    """
    if isinstance(reference, HandedOver):
        reference = reference.take()  # ours: its gray values go once its bone is found
    source = reference.meta.get("source", "reference scan")
    bone = mask_as_bool(seg.bone.array)  # a view: only read
    reference = _same_unit(reference, seg.unit, options, source)
    _check_same_gray_mapping(seg.bone.meta, reference.meta, source)
    ref_bone = _reference_bone(reference, seg, options)
    if not ref_bone.any():
        raise RegistrationError(f"{source}: no bone above the threshold {seg.threshold:g} in the reference scan. "
                                "Potential fix: check that the reference has the same unit and calibration")
    if options.mirror_reference:
        ref_bone = ref_bone[:, :, ::-1]
    fixed = _smooth_mask_image(seg.bone)
    # 0/1 bytes: the Gaussian reads them as they are, and the resampling interpolates them into float32
    ref_mask = reference.with_array(np.ascontiguousarray(ref_bone).view(np.uint8), unit="mask")
    # the gray reference is not needed past its bone: a handed-over scan or a calibrated copy goes before the
    # registration, the stage's memory peak (512^3: -512 MB)
    del ref_bone, reference
    moving = _smooth_mask_image(ref_mask)
    # the smoothed masks give the optimiser a smooth cost; the comparison resamples the mask itself: blurred,
    # thin trabeculae fall below the half level and would all count as gained
    ref_mask = ref_mask.to_sitk()

    transform = _register(fixed, moving, None)
    ref_on_scan, valid = _resample(ref_mask, fixed, transform)
    disagree = ref_on_scan != bone
    # second pass without the regions that differ (the lesions), dilated by a few voxels
    fixed_mask = valid & ~dilate_cross(keep_large(disagree, min_voxels=27), iterations=3)
    del disagree
    if fixed_mask.sum() > 1000:
        # the first pass's resampling is made again below: not held through the second registration, with the
        # mask only as the image given to it (four crop-sized masks fewer at the comparison's memory peak)
        del ref_on_scan, valid
        fixed_mask = _as_mask_image(fixed_mask, fixed)
        # from the first pass's transform, through the coarse levels again: the lesions' pull can leave the
        # first pass voxels off along the shaft, where the fine level's cost is too flat to come back
        transform = _register(fixed, moving, fixed_mask, initial=transform)
        del fixed_mask
        ref_on_scan, valid = _resample(ref_mask, fixed, transform)

    both = valid & (ref_on_scan | bone)
    overlap = float((ref_on_scan & bone & valid).sum())
    dice = 2.0 * overlap / max(float((ref_on_scan & valid).sum() + (bone & valid).sum()), 1.0)
    if not both.any() or dice < MIN_REGISTRATION_DICE:
        raise RegistrationError(f"{source}: registration to the scan failed (Dice of the bones {dice:.2f} < "
                                f"{MIN_REGISTRATION_DICE}). Potential fix: check it is the same bone and limb "
                                "(--mirror-reference for the contralateral limb) and that the ROIs overlap")

    spacing = seg.bone.spacing
    tol_mm = options.reference_tolerance_vox * float(np.mean(spacing))
    min_vox = max(options.min_lesion_mm3 / float(np.prod(spacing)), 1.0)
    lost = _changed(ref_on_scan & valid, bone, tol_mm, min_vox, spacing)
    gained = _changed(bone & valid, ref_on_scan & valid, tol_mm, min_vox, spacing)

    voxel_mm3 = float(np.prod(spacing))
    ref_bv = float((ref_on_scan & valid).sum()) * voxel_mm3
    lost_mm3, gained_mm3 = float(lost.sum()) * voxel_mm3, float(gained.sum()) * voxel_mm3
    metrics = {
        "bone_lost_mm3": lost_mm3,
        "bone_gained_mm3": gained_mm3,
        "bone_lost_pct": 100.0 * lost_mm3 / ref_bv if ref_bv > 0 else 0.0,
        "bone_gained_pct": 100.0 * gained_mm3 / ref_bv if ref_bv > 0 else 0.0,
        "registration_dice": dice,
    }
    info = {
        "transform": transform.GetName(),
        "transform_parameters": [float(p) for p in transform.GetParameters()],
        "transform_fixed_parameters": [float(p) for p in transform.GetFixedParameters()],
        "mirrored": bool(options.mirror_reference),
        "reference_threshold": float(seg.threshold),
        "reference_bv_mm3": ref_bv,
        "tolerance_mm": tol_mm,
    }
    masks = {"lost": seg.bone.with_array(lost.astype(np.uint8), unit="mask"),
             "gained": seg.bone.with_array(gained.astype(np.uint8), unit="mask")}
    log.debug("reference comparison: %s", metrics)
    return ReferenceComparison(metrics, masks, info)


def _check_same_gray_mapping(scan_meta: dict, reference_meta: dict, source: str) -> None:
    """A warning when the scan and its reference are Bruker reconstructions whose gray values stand for different
    attenuation ranges (their *_rec.log's CS to image conversion): the scan's threshold then cuts the reference's
    bone at another density, and the difference reads as bone lost or gained."""
    ours, theirs = scan_meta.get("attenuation_range"), reference_meta.get("attenuation_range")
    if ours is None or theirs is None or np.allclose(ours, theirs, rtol=1e-6, atol=0.0):
        return
    log.warning("%s: reconstructed with the attenuation range %g-%g mapped to its gray values, the scan with %g-%g "
                "(NRecon's CS to image conversion): one gray threshold segments them at different densities, which "
                "reads as bone lost or gained. Potential fix: reconstruct both with the same range", source,
                theirs[0], theirs[1], ours[0], ours[1])


def _same_unit(reference: Volume, unit: str, options, source: str) -> Volume:
    """The reference in the scan's unit, calibrated as segment calibrates a scan (``options.calibration``, else
    the reference's own vendor calibration, e.g. Scanco's density tags), or a clear error."""
    from ..calibrate import DENSITY_UNIT, apply_calibration, vendor_calibration

    if reference.unit == unit or reference.unit == "mask":
        return reference
    if unit == DENSITY_UNIT and reference.unit != DENSITY_UNIT:
        cal = options.calibration if options.calibration is not None else vendor_calibration(reference)
        if cal is not None:
            return apply_calibration(reference, slope=cal[0], intercept=cal[1])
    raise RegistrationError(f"{source}: the reference is in {reference.unit}, the scan in {unit}; the scan's "
                            "threshold cannot be applied to it. Potential fix: give both scans the same calibration")


def _reference_bone(reference: Volume, seg, options) -> np.ndarray:
    """The reference's bone, segmented as the scan's was (``seg.bone_of``); a mask is used as is."""
    from ..errors import SegmentationError

    if reference.unit == "mask":
        return np.asarray(reference.array).astype(bool)
    try:
        return seg.bone_of(reference, options)
    except SegmentationError:
        return np.zeros(reference.shape, bool)  # no bone: refused below, naming the threshold


def _smooth_mask_image(volume: Volume):
    """SimpleITK float image of a mask smoothed by a Gaussian (a smooth cost for the optimiser)."""
    from ..segment.smooth import gaussian_filter_nearest

    smooth = gaussian_filter_nearest(np.asarray(volume.array), _MASK_SIGMA_VOX)
    return volume.with_array(smooth, unit="raw").to_sitk()


def _as_mask_image(mask: np.ndarray, like):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(like)
    return image


def _register(fixed, moving, fixed_mask, *, initial=None):
    """Rigid (Euler 3D) transform from the scan's points to the reference's: mean squares on the smoothed masks.

    First at 1/4 and 1/2 of the resolution, on copies block-averaged by 2 (SimpleITK's pyramid smooths the
    full images again at every level, which took most of the time), starting from the moments' centring or
    ``initial``. Then at full resolution on the scan's surface band only (`_surface_band`), where
    the cost has a gradient: 27 % of the voxels of the 256³ bench scan, and each sample costs the same.
    """
    import SimpleITK as sitk

    voxel_mm = max(fixed.GetSpacing())
    transform = initial if initial is not None else _initial_transform(fixed, moving)
    half = [sitk.BinShrink(image, [2, 2, 2]) for image in (fixed, moving)]
    transform = _optimise(*half, transform, fixed_mask, voxel_mm, shrink=[2, 1], sigmas_vox=[1.0, 0.5])
    return _optimise(fixed, moving, transform, _surface_band(fixed, fixed_mask), voxel_mm, shrink=[1], sigmas_vox=[0.0])


def _surface_band(fixed, fixed_mask):
    """Mask image of the voxels where the scan's smoothed mask is neither 0 nor 1 (within ~4 voxels of its
    surface), inside ``fixed_mask``: elsewhere both smoothed masks are flat once aligned to a voxel."""
    import SimpleITK as sitk

    values = sitk.GetArrayViewFromImage(fixed)
    band = (values > _BAND[0]) & (values < _BAND[1])
    if fixed_mask is not None:
        band &= sitk.GetArrayViewFromImage(fixed_mask) > 0
    if band.sum() < 1000:  # too few to sample: the mask as given
        return fixed_mask
    return _as_mask_image(band, fixed)


def _sampling_fractions(fixed, fixed_mask, shrink) -> list[float]:
    """Per level: the fraction of the level's voxels sampled, 10 % up to `_MAX_SAMPLES` samples."""
    import SimpleITK as sitk

    voxels = float(np.prod(fixed.GetSize()))
    if fixed_mask is not None:  # ITK draws samples over the whole image and drops those outside the mask
        voxels *= float(sitk.GetArrayViewFromImage(fixed_mask).mean())
    return [min(0.1, _MAX_SAMPLES / max(voxels / f ** 3, 1.0)) for f in shrink]


def _optimise(fixed, moving, initial, fixed_mask, voxel_mm, *, shrink, sigmas_vox):
    """One SimpleITK registration run over the given pyramid levels (shrink factors, smoothing in voxels)."""
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    # a fixed-seed random sample of the voxels (of the mask's, when there is one): deterministic, and far
    # faster than every voxel: 10 %, at most _MAX_SAMPLES per level (six parameters need far fewer)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentagePerLevel(_sampling_fractions(fixed, fixed_mask, shrink), 12345)
    # gradients by finite differences at the samples, not from gradient images of the whole scans at every
    # level (as precise here: the masks are smooth; 2-3x faster)
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    # steps in mm: start at a few voxels (a bone is only ~100 voxels across), stop at 1/100 voxel
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=4.0 * voxel_mm, minStep=0.01 * voxel_mm,
                                                 numberOfIterations=200, relaxationFactor=0.5,
                                                 gradientMagnitudeTolerance=1e-10)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(sigmas_vox)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(sitk.Euler3DTransform(initial), inPlace=False)
    try:
        out = reg.Execute(fixed, moving)
    except RuntimeError as exc:
        raise RegistrationError(f"reference registration failed in SimpleITK ({str(exc).splitlines()[-1]}). "
                                "Potential fix: check that the two scans show the same bone") from exc
    if out.GetName() == "CompositeTransform":
        out = sitk.CompositeTransform(out).GetNthTransform(0)
    return sitk.Euler3DTransform(out)


def _initial_transform(fixed, moving):
    """Euler 3D centred by image moments: about the scan bone's centre of mass, shifted onto the reference's
    (as SimpleITK's moments initializer, which took 2.4 s at 512³: from the marginal sums here)."""
    import SimpleITK as sitk

    transform = sitk.Euler3DTransform()
    centre = _centre_of_mass(fixed)
    transform.SetCenter(centre)
    transform.SetTranslation(tuple(np.subtract(_centre_of_mass(moving), centre)))
    return transform


def _centre_of_mass(image) -> tuple[float, float, float]:
    """Physical centre of mass of a non-negative SimpleITK image."""
    import SimpleITK as sitk

    values = sitk.GetArrayViewFromImage(image)
    total = float(values.sum(dtype=np.float64))
    index_zyx = [float(np.dot(values.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.float64),
                              np.arange(values.shape[axis]))) / total for axis in range(3)]
    return image.TransformContinuousIndexToPhysicalPoint(index_zyx[::-1])


def _resample(mask, fixed, transform):
    """(reference bone on the scan grid, valid) after ``transform``; valid = inside the reference field of view.

    ``mask`` is the reference's 0/1 bone mask: linearly interpolated, its 0.5 level is the bone surface.
    """
    import SimpleITK as sitk

    warped = sitk.Resample(mask, fixed, transform, sitk.sitkLinear, -1.0, sitk.sitkFloat32)
    array = sitk.GetArrayViewFromImage(warped)  # a view, read while ``warped`` lives: no crop-sized float copy
    bone, valid = array >= 0.5, array >= 0
    del array, warped
    return bone, erode_cross(valid, iterations=2)


def _changed(present: np.ndarray, other: np.ndarray, tol_mm: float, min_voxels: float, spacing) -> np.ndarray:
    """``present`` voxels absent from ``other`` beyond ``tol_mm``, in regions ≥ ``min_voxels``, grown back."""
    core = present & ~within_mm(other, spacing_mm=spacing, radius_mm=tol_mm)
    kept = keep_large(core, min_voxels=min_voxels)
    if not kept.any():
        return kept
    return present & ~other & within_mm(kept, spacing_mm=spacing, radius_mm=tol_mm + float(np.mean(spacing)))
