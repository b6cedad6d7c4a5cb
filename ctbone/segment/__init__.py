"""Segmentation: calibrate, smooth, threshold, despeckle, crop, ROI, compartments.

``segment(volume, options) -> Segmentation``; every mask shares ``seg.bone``'s grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from ..errors import SegmentationError
from ..options import AnalysisOptions
from ..parallel import contiguous_copy
from ..volume import HandedOver, Volume, bounding_box, mask_as_bool
from .checks import check_long_bone, check_marrow, check_second_bone, check_shaft_tilt
from .cleanup import keep_bone_of_interest
from .coded import CodedValues, decoded_values, encode_values
from .compartments import split_compartments
from .envelope import (bridge_open_slices, close_mm, distance_inside, distance_to, fill_slices, open_envelope_slices,
                       periosteal_envelope, periosteal_envelope_array, slice_runs)
from .in_place import shrink_to_block
from .local_threshold import local_half_max_mask
from .packed import PackedMask
from .roi import find_growth_plate_mm, metaphyseal_roi_mm, roi_slices
from .smooth import gaussian_smooth
from .smoothed_image import SmoothedImage
from .threshold import auto_threshold

log = logging.getLogger(__name__)

__all__ = [
    "Segmentation", "CompartmentMask", "segment", "close_mm", "distance_inside", "distance_to", "fill_slices",
    "periosteal_envelope", "periosteal_envelope_array", "find_growth_plate_mm", "metaphyseal_roi_mm", "gaussian_smooth",
    "auto_threshold", "is_binary_image", "bone_mask_like",
]

MODES = ("long-bone", "trabecular-cube")
# voxels of margin kept around the bone when cropping (room for surfaces and renders)
CROP_MARGIN_VOX = 3


# the masks made from the envelope and marrow held as bits (with the bone for the trabecular one)
COMPARTMENTS = ("envelope", "cortex", "marrow", "trabecular")


@dataclass(frozen=True, eq=False)
class CompartmentMask:
    """Makes one of a segmentation's compartment masks (``name`` in `COMPARTMENTS`) when called: a new uint8
    `Volume` on the bone's grid each time, from the envelope and marrow held as bits."""

    name: str
    bone: Volume
    packed_envelope: PackedMask
    packed_marrow: PackedMask

    def __call__(self) -> Volume:
        if self.name == "envelope":
            mask = self.packed_envelope.unpacked()
        elif self.name == "marrow":
            mask = self.packed_marrow.unpacked()
        elif self.name == "cortex":
            mask = self.packed_envelope.and_not(self.packed_marrow).unpacked()
        elif self.name == "trabecular":
            mask = self.packed_marrow.unpacked()
            mask &= mask_as_bool(self.bone.array)
        else:
            raise ValueError(f"no compartment {self.name!r}; one of {COMPARTMENTS}")
        return self.bone.with_array(mask.view(np.uint8), unit="mask")


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Masks and images of one segmented scan (see docs/architecture.md).

    Attributes
    ----------
    unit : str
        The calibrated image's unit ("HU", "mgHA/cm3" or "raw").
    smoothed : SmoothedImage
        The calibrated, unsmoothed values of the crop (``smoothed.calibrated``: as codes into their distinct values
        when the segmentation owns them, `ctbone.segment.coded`) and their smoothed twin, made where it is read
        (`smoothed_array`): not held as a crop-sized array.
    raw_image : Volume (property)
        The calibrated, unsmoothed image, cropped to the bone (+margin) and the ROI (TMD, lesion density); a new
        array on each call when the values are held as codes (`calibrated_values` gives them as held).
    image : Volume (property)
        The calibrated, smoothed image on the same grid, made when asked (each call makes a new array).
    threshold : float
        In the image unit; bone is ``image > threshold``.
    threshold_method : str
        "fixed", "half-max-between-modes", "otsu", "otsu-no-contrast" or "binary-input".
    bone : Volume
        uint8 mask (see the module docs).
    packed_envelope, packed_marrow : PackedMask
        The envelope and marrow masks as bits (an eighth of their memory through the lesion and morphometry
        stages).
    envelope, marrow, cortex, trabecular : Volume (properties)
        uint8 masks made when asked (each call makes a new array): the periosteal envelope, the marrow cavity,
        the envelope less the marrow cavity, and the bone in the cavity.
    roi_mm : (float, float) or None
        z range used, mm from the first slice of the input scan (None = whole bone).
    mode : str
        "long-bone" or "trabecular-cube" (the whole volume is the trabecular VOI).
    info : dict
        Extra facts (growth plate, crop offset, binary input...).
    """

    unit: str
    smoothed: SmoothedImage
    threshold: float
    threshold_method: str
    bone: Volume
    packed_envelope: PackedMask
    packed_marrow: PackedMask
    roi_mm: tuple[float, float] | None
    mode: str = "long-bone"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def raw_image(self) -> Volume:
        """The calibrated, unsmoothed image (decoded into a new array when held as codes)."""
        return self.bone.with_array(decoded_values(self.smoothed.calibrated), unit=self.unit)

    @property
    def image(self) -> Volume:
        """The calibrated, smoothed image (a new array: `smoothed_array` makes a part of it)."""
        return self.bone.with_array(self.smoothed.values(), unit=self.unit)

    def calibrated_values(self, box=None):
        """The calibrated, unsmoothed values on ``box`` (three slices; None = all): a view of the float32 array or of
        its codes (`ctbone.segment.coded.CodedValues`); `ctbone.segment.coded.values_where` reads them under a mask."""
        values = self.smoothed.calibrated
        return values if box is None else values[box]

    def smoothed_array(self, box=None, *, within=None) -> np.ndarray:
        """The smoothed image's values on ``box`` (three slices; None = all), a new float32 array; ``box`` in the
        coordinates of the box ``within`` when it is given."""
        return self.smoothed.values(box, within=within)

    @property
    def is_binary_input(self) -> bool:
        return self.threshold_method == "binary-input"

    @property
    def envelope(self) -> Volume:
        """Periosteal envelope, openings <= ``max_defect_diameter_mm`` bridged."""
        return self._made("envelope")

    @property
    def marrow(self) -> Volume:
        """Marrow cavity."""
        return self._made("marrow")

    @property
    def cortex(self) -> Volume:
        """Cortex (bone and intracortical pores): the envelope less the marrow cavity (`split_compartments`)."""
        return self._made("cortex")

    @property
    def trabecular(self) -> Volume:
        """Trabecular bone: the bone in the marrow cavity."""
        return self._made("trabecular")

    def mask_makers(self) -> dict:
        """The bone mask, and the compartments as `CompartmentMask`s: each makes its mask when called and holds only
        the bone and the bits (not the calibrated values), so an analysis result can hold them instead of the masks."""
        return {"bone": self.bone, **{name: self._maker(name) for name in COMPARTMENTS}}

    def _maker(self, name: str) -> CompartmentMask:
        return CompartmentMask(name, self.bone, self.packed_envelope, self.packed_marrow)

    def _made(self, name: str) -> Volume:
        return self._maker(name)()

    def bone_of(self, volume: Volume, options: AnalysisOptions | None = None) -> np.ndarray:
        """Another scan's bone, segmented as this one was (`bone_mask_like`): a reference's."""
        return bone_mask_like(volume, self, options)


def is_binary_image(volume: Volume) -> bool:
    """True if ``meta["is_binary"]`` says so or the image holds exactly two distinct values."""
    if volume.meta.get("is_binary"):
        return True
    a = volume.array
    return _two_valued(a, a.min(), a.max())


def _two_valued(a: np.ndarray, lo, hi) -> bool:
    """Whether every voxel of ``a`` is ``lo`` or ``hi`` (its minimum and maximum), two different values."""
    if lo == hi:
        return False
    # slice by slice: a gray scan shows a third value in its first slice, so this stops there
    return all(bool(np.all((a[z] == lo) | (a[z] == hi))) for z in range(a.shape[0]))


def segment(volume: Volume, options: AnalysisOptions | None = None, *, mode: str = "long-bone") -> Segmentation:
    """Segment a scan into bone and its compartments.

    Parameters
    ----------
    volume : Volume
        HU, mg HA/cm³ or raw gray image (or a binary image: two values); a `ScanSlabs` is segmented slab by
        slab; a `HandedOver` scan is let go once the bone is cut out (the result then holds copies).
    options : AnalysisOptions
        calibration (else the vendor's density calibration when the scan carries one, e.g. Scanco
        tags: the image then is in mg HA/cm³ and a fixed threshold is read in that unit), sigma_vox, support_vox, threshold ("auto" or a value), min_particle_mm3,
        roi_mm ((start, end) mm from the first slice, or "metaphyseal" for the automatic ROI
        below the growth plate), max_defect_diameter_mm.
    mode : {"long-bone", "trabecular-cube"}, keyword-only
        "trabecular-cube": the whole volume is the trabecular VOI (a cube cut from trabecular
        bone): no despeckle, no crop, envelope = marrow = the volume, no cortex.

    Returns
    -------
    Segmentation

    Raises
    ------
    SegmentationError
        No bone above the threshold, or an ROI outside the scan.

    Examples
    --------
    >>> from ctbone.phantoms import PhantomSpec, make_phantom
    >>> vol, truth = make_phantom(PhantomSpec(voxel_mm=0.03, length_mm=1.0), seed=0)
    >>> seg = segment(vol, AnalysisOptions())
    >>> seg.threshold_method
    'half-max-between-modes'
    """
    opts = options or AnalysisOptions()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    owned = isinstance(volume, HandedOver)
    if owned:
        volume = volume.take()  # this frame's is then the only reference: dropped once the bone is cut out
    if not isinstance(volume, Volume):  # a ScanSlabs: a scan read slab by slab
        from ..memory import return_freed_memory
        from .streamed import segment_slabs

        return_freed_memory()  # memory is what is short here, not time
        return segment_slabs(volume, opts, mode=mode)
    source = volume.meta.get("source", "the scan")
    info: dict[str, Any] = {}

    raw = _calibrated(volume, opts)
    # the range once: the binary test and the no-bone error need it, and the scan may be gone by the error
    lo, hi = float(raw.array.min()), float(raw.array.max())
    binary = bool(raw.meta.get("is_binary")) or _two_valued(raw.array, lo, hi)
    if binary:
        threshold, method = (lo + hi) / 2, "binary-input"
    elif isinstance(opts.threshold, str):
        _check_threshold_word(opts.threshold, source)
        # the histogram of the unsmoothed image: its modes are sharper (smoothing blends the classes)
        threshold, method = auto_threshold(raw.array, source=source)
    else:
        threshold, method = float(opts.threshold), "fixed"
    # the scan's own array is not copied into the result while the caller holds it; anything made here is, and
    # so is the crop of a scan handed over, which then goes (see _long_bone)
    share_raw = raw.array is volume.array and not owned
    del volume  # `raw` holds the scan (or its calibrated copy) from here
    block = _bone_block(raw.array, threshold, opts) if mode == "long-bone" and not binary else None
    if block == "none":
        raise _no_bone_error(source, threshold, raw.unit, lo, hi)
    geometry = None
    inner = (slice(None),) * 3
    if block is not None:  # smoothed and labelled there only: nothing beyond it can be bone
        geometry = _geometry_of(raw)
        # the block with the smoothing's halo of rows and columns, so that its smoothed values are the scan's
        halo = (slice(None), *(_widened(sl, _halo(opts), n) for sl, n in zip(block, raw.shape[1:])))
        if share_raw:
            region = raw.crop(halo)  # a view of the scan
        else:  # the scan is no one else's: the region in its own memory, which shrinks to it, or a copy
            geometry_of_region = replace(raw.crop(halo), array=np.empty((0, 0, 0), np.float32))
            array = raw.array
            raw = None
            if not shrink_to_block(array, halo):
                array = contiguous_copy(array[halo])  # and the scan goes now
            region = replace(geometry_of_region, array=array)
            del array
        raw = region  # the region stands for the scan from here
        del region
        inner = (slice(None), *(_within(b, h) for b, h in zip(block, halo[1:])))
        info["bone_block_yx"] = [[block[0].start, block[0].stop], [block[1].start, block[1].stop]]
    values = raw.array
    if mode == "long-bone":
        # a long bone's calibrated values, when they are ours, are held as codes into their distinct values (half
        # their memory) and smoothed from them: the float32 array goes before the smoothed one is made
        if not share_raw:
            values = _owned_values(values)
        raw = _geometry_of(raw.crop(inner))  # the block's geometry, unit and meta; its values are `values[inner]`
    smoothed = _smooth(values, binary, opts, yx_box=inner[1:] if block is not None else None)  # the block only
    values = values[inner]
    bone = smoothed > threshold
    if not bone.any():
        raise _no_bone_error(source, threshold, raw.unit, lo, hi)
    log.info("threshold %.4g %s (%s)", threshold, raw.unit, method)

    if mode == "trabecular-cube":
        whole = np.ones(bone.shape, bool)
        bone = _with_trabeculae(bone, smoothed, whole, threshold, binary, opts, info, source)
        twin = SmoothedImage.keeping_faces(smoothed, raw.array, sigma_vox=opts.sigma_vox,
                                           halfwidth_vox=_twin_halfwidth(binary, opts))
        del smoothed
        return _result(twin, raw, threshold, method, bone, whole, whole, None, mode, info)  # envelope = marrow
    work = _Work(values=values, grid=raw, smoothed=smoothed, bone=bone, scan_geometry=geometry)
    del values, raw, smoothed, bone
    offset = (block[0].start, block[1].start) if block is not None else (0, 0)
    return _long_bone(work, threshold, method, binary, opts, info, source, share_raw=share_raw, offset_yx=offset)


def _geometry_of(volume) -> Volume:
    """A one-voxel volume with the geometry (spacing, origin, direction), unit and meta of ``volume`` (a Volume or a
    scan read slab by slab)."""
    if isinstance(volume, Volume):
        return replace(volume, array=np.zeros((1, 1, 1), np.float32))
    return Volume(np.zeros((1, 1, 1), np.float32), spacing=volume.spacing, origin=volume.origin,
                  direction=volume.direction)


def _smooth(array, binary: bool, opts: AnalysisOptions, yx_box=None) -> np.ndarray:
    """The smoothed image (float32) of an array or `CodedValues`, of ``array[:, ys, xs]`` only when ``yx_box`` is
    given (computed there)."""
    if binary:  # as gaussian_smooth without smoothing: a float32 copy
        return gaussian_smooth(array, sigma_vox=0.0, yx_box=yx_box)
    return gaussian_smooth(array, sigma_vox=opts.sigma_vox, support_vox=opts.support_vox, yx_box=yx_box)


def _twin_halfwidth(binary: bool, opts: AnalysisOptions) -> int:
    """The half-width `SmoothedImage` smooths with: 0 where `_smooth` does not smooth (a binary image)."""
    return 0 if binary else _halo(opts)


def _halo(opts: AnalysisOptions) -> int:
    """Voxels a smoothed value reaches across (the kernel's half-width)."""
    return max(1, int(opts.support_vox)) if opts.sigma_vox > 0 else 0


# a block of rows and columns is cut out only when it leaves at least this fraction of each slice aside
MIN_BLOCK_SAVING = 0.1


def _bone_block(array: np.ndarray, threshold: float, opts: AnalysisOptions):
    """(rows, columns) of the scan outside which nothing can be bone, or None when that is (nearly) all of
    each slice, or "none" when nothing can be bone at all.

    Smoothing is a weighted mean with positive weights, so a voxel ends above the threshold only within the
    kernel's half-width of a voxel at or above it (less a guard far above float rounding): all the bone lies
    within that reach of the box of those voxels, and the block adds the crop margin and one voxel more, so
    that the bone touches the block's sides only where they are the field's (`check_long_bone`) and its crop
    lies inside. The despeckle sees every particle it would on the whole scan, so the results are the same
    (tested); a scan whose bone is a small part of the field of view is smoothed and labelled there only."""
    near = reaching_threshold_yx(array, threshold)
    box = bounding_box(near)
    if box is None:
        return "none"
    reach = _halo(opts) + CROP_MARGIN_VOX + 1
    block = tuple(_widened(sl, reach, n) for sl, n in zip(box, near.shape))
    kept = (block[0].stop - block[0].start) * (block[1].stop - block[1].start)
    return block if kept <= (1 - MIN_BLOCK_SAVING) * near.size else None


def reaching_threshold_yx(array: np.ndarray, threshold: float) -> np.ndarray:
    """(Y, X) bool: the rows and columns where some slice holds a voxel at or above ``threshold``, less a guard
    far above float rounding. Smoothing is a weighted mean with positive weights, so only voxels within its
    kernel's reach of these can end above the threshold once smoothed."""
    guard = threshold - 1e-4 * max(1.0, abs(threshold))
    near = np.zeros(array.shape[1:], bool)
    for z0 in range(0, array.shape[0], 32):  # 32 slices at a time: no scan-sized boolean array
        near |= (array[z0:z0 + 32] >= guard).any(axis=0)
    return near


def _widened(sl: slice, by: int, n: int) -> slice:
    """``sl`` grown by ``by`` at both ends, clipped to 0..n."""
    return slice(max(0, sl.start - by), min(n, sl.stop + by))


def _within(inner: slice, outer: slice) -> slice:
    """``inner`` in the coordinates of an array cut at ``outer``."""
    return slice(inner.start - outer.start, inner.stop - outer.start)


def bone_mask_like(volume: Volume, seg: Segmentation, options: AnalysisOptions | None = None) -> np.ndarray:
    """The bone mask of another scan of the same bone (a reference: contralateral limb, baseline), segmented
    as ``seg`` was: ``seg``'s threshold, mode, smoothing and trabecular step, on ``volume``'s whole grid.

    Bone lost and gained are differences between two bone masks, so both must come from the same
    procedure: a reference thresholded globally misses the thin trabeculae that the scan's local
    threshold finds, and they all count as gained (5 % of the bone in the demo's controls).

    ``volume`` must be in ``seg``'s unit (calibrated alike); no ROI is applied (the reference may be longer).
    Raises SegmentationError when it holds no bone above the threshold, CalibrationError when its own vendor
    calibration takes it to another unit than ``seg``'s.
    """
    opts = options or AnalysisOptions()
    # the reference's own bone (the other limb of the same scan: --reference-bone), not the scan's choice
    opts = replace(opts, threshold=float(seg.threshold), roi_mm=None, calibration=None, bone=opts.reference_bone)
    ref = segment(volume, opts, mode=seg.mode)
    if ref.unit != seg.unit:  # its own vendor calibration moved it to another unit
        from ..errors import CalibrationError

        raise CalibrationError(f"{volume.meta.get('source', 'the reference')}: its density calibration puts it in "
                               f"{ref.unit}, the scan is in {seg.unit}; one threshold cannot "
                               "segment both. Potential fix: give both scans the same calibration (--calibration)")
    bone = np.zeros(volume.shape, bool)
    crop = ref.info.get("crop_zyx")
    where = tuple(slice(a, b) for a, b in crop) if crop is not None else (slice(None),) * 3
    bone[where] = ref.bone.array.astype(bool)
    return bone


def _check_threshold_word(word: str, source: str) -> None:
    if word.strip().lower() != "auto":
        raise SegmentationError(f"{source}: threshold {word!r} is neither 'auto' nor a number. "
                                "Potential fix: --threshold auto or --threshold 450.")


def _no_bone_error(source, threshold, unit, lo, hi) -> SegmentationError:
    return SegmentationError(f"{source}: no bone above threshold {threshold:.4g} {unit}. Potential fix: lower "
                             f"--threshold (image range {lo:.4g} to {hi:.4g}).")


@dataclass
class _Work:
    """The calibrated values, their smoothed twin and the thresholded bone, handed to `_long_bone`, which
    drops them as soon as it has cropped them (the caller keeps no other reference)."""

    values: Any  # float32 array or CodedValues
    grid: Volume  # one voxel: the values' geometry, unit and meta
    smoothed: np.ndarray
    bone: np.ndarray
    # a one-voxel volume with the whole scan's geometry when ``values`` are a block of it: the crop's origin is
    # then computed from the scan's, as a crop of the whole scan would be (the same floats, not a sum of two)
    scan_geometry: Volume | None = None


def _long_bone(work: _Work, threshold, method, binary, opts, info, source, *, share_raw=False,
               offset_yx=(0, 0)) -> Segmentation:
    """Despeckle, ROI, crop, envelope, compartments and trabeculae of a long bone.

    ``work`` may be a block of the scan cut out in y and x (all its slices) that holds the bone of
    interest with margin; ``offset_yx`` is where that block starts, so ``info["crop_zyx"]`` stays in
    the scan's indices.
    """
    values, grid = work.values, work.grid
    nz = values.shape[0]
    # the smoothed block goes: made again where it is read (its outer layers kept), not held beside the despeckle's
    # labels and the closings' working volumes (the segment stage's memory peak)
    smoothed = SmoothedImage.keeping_faces(work.smoothed, values, sigma_vox=opts.sigma_vox,
                                           halfwidth_vox=_twin_halfwidth(binary, opts))
    work.smoothed = work.values = None
    particles: dict = {}
    try:
        bone = keep_bone_of_interest(work.bone, spacing_mm=grid.spacing, min_particle_mm3=opts.min_particle_mm3,
                                     near_mm=opts.max_defect_diameter_mm, bone_index=opts.bone, facts=particles)
    except ValueError as exc:
        raise SegmentationError(f"{source}: {exc}. Potential fix: a smaller --bone, or none (the largest)") from None
    work.bone = None
    check_long_bone(bone, grid.spacing, info, source, offset_zyx=(0, *offset_yx))
    check_second_bone(particles, opts.max_defect_diameter_mm, info, source, chosen=opts.bone)
    # ROI along z, with masks computed on a slightly longer range so the envelope is right at its ends
    roi = opts.roi_mm
    sz = grid.spacing[0]
    pad = int(np.ceil(opts.max_defect_diameter_mm / 2 / sz)) + 2
    if isinstance(roi, str):
        roi = _automatic_roi(roi, bone, grid, opts, info, source)
    if roi is not None:
        zs = roi_slices(roi, n_slices=nz, spacing_z_mm=sz, source=source)
        zlo, zhi = max(0, zs.start - pad), min(nz, zs.stop + pad)
    else:
        zs, zlo, zhi = slice(0, nz), 0, nz
    box = Volume(bone[zlo:zhi]).bounding_slices(bone[zlo:zhi], margin_vox=CROP_MARGIN_VOX)
    if box is None:
        raise SegmentationError(f"{source}: no bone above threshold {threshold:.4g} {grid.unit} inside the ROI "
                                f"{roi} mm. Potential fix: check --roi-mm or lower --threshold.")
    ext = (slice(zlo, zhi), box[1], box[2])
    bone_x = bone[ext]
    envelope = periosteal_envelope_array(bone_x, spacing_mm=grid.spacing,
                                         bridge_diameter_mm=opts.max_defect_diameter_mm)
    envelope = _bridge_open(envelope, bone_x, zlo * sz, grid.spacing, opts, info, source)
    # the cortex is the envelope less the marrow: Segmentation makes it when asked
    marrow = split_compartments(bone_x, envelope, spacing_mm=grid.spacing)[1]
    check_marrow(envelope, marrow, info, source)
    # after the compartments: they come from the cortical threshold, the trabeculae only add to the marrow
    bone_x = _with_trabeculae(bone_x, partial(smoothed.values, within=ext), marrow, threshold, binary, opts, info,
                              source)
    cut = (slice(zs.start - zlo, zs.stop - zlo), slice(None), slice(None))
    final = (zs, box[1], box[2])
    info["crop_zyx"] = [[int(s.start) + o, int(s.stop) + o] for s, o in zip(final, (0, *offset_yx))]
    if not info.get("shaft_across_slices") and "fills_field_of_view_pct" not in info:
        check_shaft_tilt(envelope[cut], grid.spacing, info, source)
    roi_used = (zs.start * sz, (zs.stop - 1) * sz) if roi is not None else None
    # the crop's origin, from the whole scan's geometry when this is a block of it (the same floats as a crop of it)
    start = [sl.indices(n)[0] for sl, n in zip(final, values.shape)]
    if work.scan_geometry is not None:
        start = (start[0], start[1] + offset_yx[0], start[2] + offset_yx[1])
    grid = replace(grid, origin=tuple((work.scan_geometry or grid).index_to_physical(start)))
    # a compact copy: a view would keep the whole calibrated block alive with the result
    calibrated = values[final] if share_raw else _compact(values[final])
    del values
    # the crop's smoothed twin: made again where it is read, its outer layers (smoothed with voxels beyond it) kept
    smoothed = smoothed.cropped(final, calibrated)
    return _result(smoothed, grid, threshold, method, bone_x[cut], envelope[cut], marrow[cut], roi_used, "long-bone",
                   info)


def _bridge_open(envelope, bone, z0_mm, spacing, opts, info, source) -> np.ndarray:
    """The envelope bridged where the ball left it open (`open_envelope_slices`, `bridge_open_slices`), with a
    warning and ``info["envelope_bridged_mm"]`` (z ranges, mm from the first slice)."""
    open_z = open_envelope_slices(envelope, bone)
    if not open_z.any():
        return envelope
    envelope, bridged = bridge_open_slices(envelope, bone, open_z, spacing_mm=spacing)
    if not bridged.any():
        return envelope
    runs = [(z0_mm + a * spacing[0], z0_mm + (b - 1) * spacing[0]) for a, b in slice_runs(bridged)]
    info["envelope_bridged_mm"] = [[round(float(a), 4), round(float(b), 4)] for a, b in runs]
    where = ", ".join(f"{a:.2f}-{b:.2f}" for a, b in runs)
    d = opts.max_defect_diameter_mm
    log.warning("%s: an opening the %.3g mm bridge did not close left the periosteal envelope open at z %s mm "
                "(from the first slice); bridged there by the outline of the slices on either side. To bridge it by "
                "the ball instead: --max-defect-diameter-mm %.2g (or more)", source, d, where, 1.5 * d)
    return envelope


def _with_trabeculae(bone, smoothed, region, threshold, binary, opts, info, source) -> np.ndarray:
    """``bone`` plus the trabeculae found in ``region`` by the local threshold (see local_threshold) on the
    smoothed image: an array, or a function that makes its values on a box (made only where it is read)."""
    choice = str(opts.trabecular_threshold).strip().lower()
    if choice not in ("local", "global"):
        raise SegmentationError(f"{source}: trabecular threshold {opts.trabecular_threshold!r} is neither 'local' "
                                "nor 'global'. Potential fix: --trabecular-threshold local.")
    if binary or choice == "global":
        info["trabecular_threshold"] = {"method": "binary-input" if binary else "global"}
        return bone
    extra, facts = local_half_max_mask(smoothed, region, global_threshold=threshold)
    info["trabecular_threshold"] = facts
    return bone | extra


def _compact(values):
    """A C-contiguous copy of ``values`` (an array or `CodedValues`)."""
    return values.compacted() if isinstance(values, CodedValues) else contiguous_copy(values)


def _owned_values(array: np.ndarray):
    """The calibrated block to hold: as codes into its distinct values (`CodedValues`, half the memory) when it
    holds at most 65 536 of them, else the array."""
    coded = encode_values(array) if array.dtype == np.float32 else None
    return coded if coded is not None else array


def _calibrated(volume: Volume, opts: AnalysisOptions) -> Volume:
    from ..calibrate import apply_calibration, vendor_calibration

    if opts.calibration is not None:
        slope, intercept = opts.calibration
        return apply_calibration(volume, slope=slope, intercept=intercept)
    vendor = vendor_calibration(volume)
    if vendor is not None:  # e.g. Scanco density tags: work in mg HA/cm3 as the vendor software does
        log.info("%s: vendor density calibration slope %.6g, intercept %.6g", volume.meta.get("source", "scan"), *vendor)
        return apply_calibration(volume, slope=vendor[0], intercept=vendor[1])
    return volume.with_array(volume.array.astype(np.float32, copy=False))


def _automatic_roi(name: str, bone: np.ndarray, grid: Volume, opts, info, source):
    if name != "metaphyseal":
        raise SegmentationError(f"{source}: unknown ROI {name!r}. Potential fix: --roi-mm START:END or 'metaphyseal'.")
    envelope = periosteal_envelope_array(bone, spacing_mm=grid.spacing, bridge_diameter_mm=opts.max_defect_diameter_mm)
    plate = find_growth_plate_mm(bone, envelope, spacing_z_mm=grid.spacing[0])
    if plate is None:
        raise SegmentationError(f"{source}: no growth plate found for the metaphyseal ROI. Potential fix: give "
                                "--roi-mm START:END.")
    centre = np.flatnonzero(envelope.any(axis=(1, 2))).mean() * grid.spacing[0]
    info["growth_plate_mm"] = plate
    return metaphyseal_roi_mm(plate, towards=1 if centre > plate else -1)


def _as_uint8_mask(a: np.ndarray) -> np.ndarray:
    """A boolean mask as 0/1 uint8: the same memory when ``a`` is a whole contiguous array (the masks were
    held twice while the result was made: the segment stage's memory peak), else a compact copy."""
    a = np.asarray(a)
    whole = a.base is None or (isinstance(a.base, np.ndarray) and a.base.nbytes == a.nbytes)
    if a.dtype == np.bool_ and a.flags.c_contiguous and whole:
        return a.view(np.uint8)
    return np.ascontiguousarray(a, dtype=np.uint8)


def _result(smoothed, grid, threshold, method, bone, envelope, marrow, roi_mm, mode, info) -> Segmentation:
    """The segmentation; ``grid``: a volume with the crop's geometry, unit and meta (its array is not read)."""
    def mask(a):
        return replace(grid, array=_as_uint8_mask(a), unit="mask", meta=dict(grid.meta))

    bone = bone.astype(bool)
    return Segmentation(unit=grid.unit, smoothed=smoothed, threshold=float(threshold), threshold_method=method,
                        bone=mask(bone), packed_envelope=PackedMask.of(envelope), packed_marrow=PackedMask.of(marrow),
                        roi_mm=roi_mm, mode=mode, info=info)
