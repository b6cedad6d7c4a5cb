"""A minimal segmentation for lesion tests and validation, independent of `ctbone.segment`.

It gives exactly the fields `measure_lesions` and `compare_to_reference` use
(image, raw_image, threshold, bone, envelope, cortex, marrow, trabecular, and
``bone_of`` to segment a reference alike), so
the lesion code can be validated on phantoms on its own. The pipeline uses
`ctbone.segment.segment`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..segment.envelope import periosteal_envelope_array
from ..volume import Volume
from .lesions_geometry import keep_large


@dataclass(frozen=True)
class StandinSegmentation:
    """The subset of `ctbone.segment.Segmentation` the lesion code reads."""

    image: Volume
    raw_image: Volume
    threshold: float
    bone: Volume
    envelope: Volume
    cortex: Volume
    marrow: Volume
    trabecular: Volume
    sigma_vox: float = 0.8
    min_particle_mm3: float = 0.001

    @property
    def unit(self) -> str:
        return self.raw_image.unit

    def calibrated_values(self, box=None) -> np.ndarray:
        """The calibrated values on ``box`` (as `Segmentation.calibrated_values`; here a view of the array)."""
        return self.raw_image.array if box is None else self.raw_image.array[box]

    def smoothed_array(self, box=None, *, within=None) -> np.ndarray:
        """The smoothed image on ``box`` (as `Segmentation.smoothed_array`; here a view of the one held)."""
        image = self.image.array if within is None else self.image.array[within]
        return image if box is None else image[box]

    def bone_of(self, volume: Volume, options=None) -> np.ndarray:
        """Another scan's bone by this stand-in's procedure (as `Segmentation.bone_of`)."""
        return _bone(_smooth(volume, self.sigma_vox), volume, self.threshold, self.min_particle_mm3)


def _smooth(volume: Volume, sigma_vox: float) -> np.ndarray:
    return ndimage.gaussian_filter(volume.array.astype(np.float32), sigma=sigma_vox, truncate=2.0)


def _bone(smooth: np.ndarray, volume: Volume, threshold: float, min_particle_mm3: float) -> np.ndarray:
    return keep_large(smooth >= threshold, min_voxels=min_particle_mm3 / volume.voxel_volume_mm3)


def standin_segmentation(volume: Volume, *, threshold: float = 370.0, sigma_vox: float = 0.8,
                         bridge_diameter_mm: float = 0.6, min_particle_mm3: float = 0.001) -> StandinSegmentation:
    """Gaussian smoothing, fixed threshold, small-particle removal, bridged envelope.

    Parameters
    ----------
    volume : Volume
        Scan (HU for phantoms).
    threshold : float
        In the image unit; the default is mid-way between soft tissue (40 HU) and the
        phantoms' woven bone (700 HU), so woven bone is segmented.
    sigma_vox, bridge_diameter_mm, min_particle_mm3 : float
        As in `AnalysisOptions` (sigma_vox, max_defect_diameter_mm, min_particle_mm3).
    """
    smooth = _smooth(volume, sigma_vox)
    bone = _bone(smooth, volume, threshold, min_particle_mm3)
    env = periosteal_envelope_array(bone, spacing_mm=volume.spacing, bridge_diameter_mm=bridge_diameter_mm)
    marrow = env & ~bone
    as_mask = lambda m: volume.with_array(m.astype(np.uint8), unit="mask")  # noqa: E731
    return StandinSegmentation(
        image=volume.with_array(smooth), raw_image=volume, threshold=float(threshold), bone=as_mask(bone),
        envelope=as_mask(env), cortex=as_mask(bone), marrow=as_mask(marrow), trabecular=as_mask(np.zeros_like(bone)),
        sigma_vox=sigma_vox, min_particle_mm3=min_particle_mm3,
    )
