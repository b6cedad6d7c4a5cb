"""`Volume`: an image array together with its physical geometry.

Conventions (see SPEC.md):

* ``array`` is indexed (z, y, x); z is the slice (image-normal) axis.
* ``spacing`` is (z, y, x) in mm, the order of the array axes.
* ``origin`` is the physical position, in mm, of the centre of voxel [0, 0, 0],
  given in patient coordinates (x, y, z) exactly as DICOM ImagePositionPatient
  and ITK give it.
* ``direction`` is the 3x3 ITK direction matrix: column ``k`` is the unit
  physical vector along the ITK index axis ``k``, where ITK index (i, j, k)
  = array index (x, y, z) reversed. ``Volume.to_sitk`` / ``from_sitk`` map
  between the two without surprises.
* ``unit`` says what the numbers are: "HU", "mgHA/cm3", "raw" (gray values of
  unknown calibration) or "mask" (0/1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

UNITS = ("HU", "mgHA/cm3", "raw", "mask")


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image with geometry.

    Parameters
    ----------
    array : (Z, Y, X) ndarray
        Voxel values; float32 for images, bool or uint8 for masks.
    spacing : tuple of 3 float, mm
        Voxel size along (z, y, x).
    origin : tuple of 3 float, mm
        Patient (x, y, z) position of the centre of voxel [0, 0, 0].
    direction : (3, 3) ndarray
        ITK direction cosines (columns = ITK index axes x, y, z).
    unit : str
        One of ``UNITS``.
    meta : dict
        Provenance: vendor, series_uid, modality, rescale, source path, ...
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    unit: str = "raw"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.array.ndim != 3:
            raise ValueError(f"Volume needs a 3D (z, y, x) array, got shape {self.array.shape}")
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"Volume spacing must be 3 positive finite mm values, got {self.spacing}")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        object.__setattr__(self, "direction", direction)
        if self.unit not in UNITS:
            raise ValueError(f"Volume unit must be one of {UNITS}, got {self.unit!r}")

    # -- geometry -----------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    @property
    def spacing_xyz(self) -> tuple[float, float, float]:
        return self.spacing[::-1]

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def is_isotropic(self) -> bool:
        return bool(np.allclose(self.spacing, self.spacing[0], rtol=1e-3))

    def index_to_physical(self, index_zyx) -> np.ndarray:
        """Patient (x, y, z) mm of array index/indices (z, y, x); accepts (..., 3)."""
        idx = np.asarray(index_zyx, dtype=float)[..., ::-1]
        return np.asarray(self.origin) + (idx * np.asarray(self.spacing_xyz)) @ self.direction.T

    def with_array(self, array: np.ndarray, *, unit: str | None = None, **meta_updates) -> "Volume":
        """Same geometry, new voxel values (shape must match)."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} differs from the volume's {self.array.shape}")
        meta = {**self.meta, **meta_updates}
        return replace(self, array=array, unit=unit or self.unit, meta=meta)

    def crop(self, slices: tuple[slice, slice, slice]) -> "Volume":
        """Sub-volume for (z, y, x) slices with step 1; the origin moves with it."""
        starts = []
        for axis, sl in enumerate(slices):
            start, _, step = sl.indices(self.array.shape[axis])
            if step != 1:
                raise ValueError("crop needs slices with step 1")
            starts.append(start)
        new_origin = self.index_to_physical(starts)
        return replace(self, array=self.array[slices], origin=tuple(new_origin))

    def bounding_slices(self, mask: np.ndarray, *, margin_vox: int = 0):
        """(z, y, x) slices of the bounding box of ``mask`` grown by ``margin_vox``; None if empty."""
        return bounding_box(mask, margin_vox=margin_vox)

    # -- interop ------------------------------------------------------------
    def to_sitk(self):
        """SimpleITK image with the same geometry (pixel type follows the array dtype)."""
        import SimpleITK as sitk

        array = self.array.astype(np.uint8) if self.array.dtype == bool else self.array
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        image.SetSpacing(self.spacing_xyz)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(self.direction.ravel()))
        return image

    @classmethod
    def from_sitk(cls, image, *, unit: str = "raw", meta: dict | None = None, dtype=np.float32) -> "Volume":
        import SimpleITK as sitk

        array = sitk.GetArrayFromImage(image)
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        return cls(
            array=array,
            spacing=tuple(image.GetSpacing())[::-1],
            origin=tuple(image.GetOrigin()),
            direction=np.array(image.GetDirection()).reshape(3, 3),
            unit=unit,
            meta=dict(meta or {}),
        )

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        return f"Volume(shape={self.shape}, spacing_mm=({sp}), unit={self.unit!r}, dtype={self.array.dtype})"


class HandedOver:
    """A scan handed to `ctbone.analyze` to own: the analysis lets go of the whole scan once segmentation has
    cut out the bone, so the lesion and morphometry stages run beside the bone's crop instead of the scan.

    ``ctbone.analyze(volume)`` cannot do that: the caller holds ``volume`` (the crop is then a view of it, no
    copy). Build it around a scan no one else keeps, e.g. ``ctbone.analyze(HandedOver(ctbone.open_scan(path)))``;
    the ``ctbone`` command and batch workers do. Holds a `Volume` or a `ctbone.io.ScanSlabs`. A reference handed
    over (``analyze(scan, reference=HandedOver(ref))``) is let go once its bone is found.
    """

    def __init__(self, scan):
        self._scan = scan

    def peek(self):
        """The scan, still held here (for its shape and provenance)."""
        if self._scan is None:
            raise RuntimeError("this scan was handed over to an analysis, which let it go; read it again")
        return self._scan

    def take(self):
        """The scan, no longer held here: the taker owns it."""
        scan, self._scan = self.peek(), None
        return scan

    def __repr__(self) -> str:
        return f"HandedOver({self._scan!r})"


def bounding_box(mask: np.ndarray, *, margin_vox: int = 0):
    """Slices of the bounding box of ``mask``'s nonzero voxels grown by ``margin_vox`` (clipped at the
    array edge), one per axis; None if the mask is empty.

    Axis by axis on a shrinking projection: the first axis from a reduction over the others (contiguous,
    fast), then the rest from the OR of the slices within that range. Two passes over a 3-D mask instead of
    three, the slow middle-axis reduction among them (the 41 calls of a 512^3 analysis: 0.44 s before, 0.16 s)."""
    mask = np.asarray(mask)
    slices = []
    for size in mask.shape:
        hit = np.flatnonzero(mask.any(axis=tuple(range(1, mask.ndim))) if mask.ndim > 1 else mask)
        if hit.size == 0:
            return None
        lo, hi = int(hit[0]), int(hit[-1]) + 1
        slices.append(slice(max(0, lo - margin_vox), min(size, hi + margin_vox)))
        mask = mask[lo:hi].any(axis=0)  # what is left to bound: the other axes, within this range
    return tuple(slices)


def normalised_box(box, shape) -> tuple[slice, ...]:
    """``box`` (slices with step 1; None = the whole array) with explicit starts and stops within ``shape``."""
    if box is None:
        return tuple(slice(0, n) for n in shape)
    out = []
    for s, n in zip(box, shape):
        start, stop, step = s.indices(n)
        if step != 1:
            raise ValueError(f"box slices must have step 1, got {s}")
        out.append(slice(start, max(start, stop)))
    return tuple(out)


def mask_as_bool(mask: np.ndarray) -> np.ndarray:
    """A boolean view of a 0/1 uint8 mask (ctbone's stored masks: no copy), else a boolean copy.

    The view shares the mask's memory: read it, never write into it."""
    mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        return mask
    if mask.dtype == np.uint8 and mask.flags.c_contiguous and (mask.size == 0 or mask.max() <= 1):
        return mask.view(bool)
    return mask.astype(bool)


def fold_blocks(array: np.ndarray, factor: int, op, dtype) -> np.ndarray:
    """``op`` (a ufunc: np.add, np.logical_or, ...) over each factor³ block of a 3-D array (trimmed to whole
    blocks), accumulated in ``dtype``, one axis at a time on strided views: several times faster than numpy's
    reduction over the axes of a 6-D reshape (2 s -> 0.1-0.4 s on 162 M voxels)."""
    nz, ny, nx = (s // factor for s in array.shape)
    out = array[: nz * factor, : ny * factor, : nx * factor]
    for axis in range(3):
        folded = _every(out, axis, 0, factor).astype(dtype, copy=True)
        for k in range(1, factor):
            op(folded, _every(out, axis, k, factor), out=folded)
        out = folded
    return out


def _every(array: np.ndarray, axis: int, start: int, step: int) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, None, step)
    return array[tuple(index)]
