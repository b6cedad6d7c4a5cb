"""A segmentation's smoothed image, made again where it is read instead of held.

The smoothed twin of the calibrated crop is a float32 array as large as the crop (0.3 GB for a 512^3 bone),
and after segmentation it is read only by the lesion stage's first steps and by BS. Smoothing is a weighted
mean of the calibrated values within the kernel's half-width, so inside the crop it is made again from the
calibrated crop, bit for bit (the same kernel, the same sums in the same order). Only the crop's outer layers,
half-width deep, were smoothed with voxels outside the crop: those values are kept as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..volume import normalised_box
from .coded import CodedValues
from .smooth import gaussian_filter_nearest, gaussian_smooth


@dataclass(frozen=True, eq=False)
class SmoothedImage:
    """The smoothed image of a crop, made box by box from the crop's calibrated values.

    Attributes
    ----------
    calibrated : (Z, Y, X) float32 ndarray or CodedValues
        The crop's calibrated, unsmoothed values (the segmentation's ``raw_image``); as codes into a table of its
        distinct values (`ctbone.segment.coded`) when the segmentation owns them.
    sigma_vox : float
        The Gaussian's standard deviation in voxels.
    halfwidth_vox : int
        The kernel's half-width; 0 = no smoothing (the smoothed image is the calibrated one).
    faces : tuple of ndarray
        The smoothed values of the crop's six outer layers (`_face_boxes`), as smoothed from the whole scan.
    """

    calibrated: np.ndarray | CodedValues
    sigma_vox: float
    halfwidth_vox: int
    faces: tuple = ()

    @classmethod
    def keeping_faces(cls, smoothed: np.ndarray, calibrated: np.ndarray | CodedValues, *, sigma_vox: float,
                      halfwidth_vox: int) -> SmoothedImage:
        """The lazy twin of ``smoothed`` (the smoothed crop, as made from the scan), which can then go."""
        if smoothed.shape != calibrated.shape:
            raise ValueError(f"smoothed {smoothed.shape} and calibrated {calibrated.shape} crops differ in shape")
        return cls(calibrated, float(sigma_vox), int(halfwidth_vox), outer_layers(smoothed, halfwidth_vox))

    def __post_init__(self):
        boxes = _face_boxes(self.shape, self.halfwidth_vox)
        if [f.shape for f in self.faces] != [tuple(s.stop - s.start for s in b) for b in boxes]:
            raise ValueError("the outer layers kept do not fit the calibrated crop")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.calibrated.shape

    def values(self, box=None, *, within=None) -> np.ndarray:
        """The smoothed values on ``box`` (a tuple of three slices, step 1; None = the whole crop): a new
        float32 array. ``within``: a box of the crop, ``box`` then being given in its coordinates."""
        if within is not None:
            within = normalised_box(within, self.shape)
            box = normalised_box(box, tuple(s.stop - s.start for s in within))
            box = tuple(slice(w.start + b.start, w.start + b.stop) for w, b in zip(within, box))
        box = normalised_box(box, self.shape)
        h = self.halfwidth_vox
        if h == 0:
            return gaussian_smooth(self.calibrated[box], sigma_vox=0.0)  # a float32 copy, decoded once
        # the box and the voxels its values read (the half-width around it, within the crop)
        ext = tuple(slice(max(0, s.start - h), min(n, s.stop + h)) for s, n in zip(box, self.shape))
        inner = tuple(slice(s.start - e.start, s.stop - e.start) for s, e in zip(box, ext))
        out = gaussian_filter_nearest(self.calibrated[ext], self.sigma_vox, radius_vox=h, yx_box=inner[1:],
                                      z_slice=inner[0])
        # the crop's outer layers: as smoothed from the scan (they read voxels beyond the crop)
        for face, face_box in zip(self.faces, _face_boxes(self.shape, h)):
            common = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(box, face_box))
            if all(s.start < s.stop for s in common):
                out[_shifted(common, box)] = face[_shifted(common, face_box)]
        return out

    def cropped(self, box, calibrated: np.ndarray | CodedValues) -> SmoothedImage:
        """The twin of this image's crop ``box``, whose calibrated values are ``calibrated`` (this one's on
        ``box``, e.g. a compact copy): its outer layers made here, where they read voxels beyond the crop."""
        box = normalised_box(box, self.shape)
        shape = tuple(s.stop - s.start for s in box)
        if calibrated.shape != shape:
            raise ValueError(f"calibrated {calibrated.shape} is not the crop's shape {shape}")
        faces = tuple(self.values(face, within=box) for face in _face_boxes(shape, self.halfwidth_vox))
        return SmoothedImage(calibrated, self.sigma_vox, self.halfwidth_vox, faces)


def outer_layers(smoothed: np.ndarray, halfwidth_vox: int) -> tuple:
    """Copies of the six outer layers, ``halfwidth_vox`` deep, of the smoothed crop (what `SmoothedImage` keeps)."""
    return tuple(np.array(smoothed[box], np.float32) for box in _face_boxes(smoothed.shape, int(halfwidth_vox)))


def _face_boxes(shape, h: int) -> list[tuple[slice, slice, slice]]:
    """The six layers, ``h`` deep, at the sides of a ``shape`` grid (none when ``h`` is 0)."""
    if h == 0:
        return []
    boxes = []
    for axis, n in enumerate(shape):
        for side in (slice(0, min(h, n)), slice(max(0, n - h), n)):
            box = [slice(0, m) for m in shape]
            box[axis] = side
            boxes.append(tuple(box))
    return boxes


def _shifted(box, origin) -> tuple[slice, ...]:
    """``box`` in the coordinates of an array that starts at ``origin``'s starts."""
    return tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(box, origin))
