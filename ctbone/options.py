"""Frozen option objects passed down the pipeline (no global settings).

Every length is in mm, every volume in mm³, every area in mm²; bounds are
inclusive unless a name says otherwise. Defaults are chosen for mouse long
bones scanned at 5–50 µm (see docs/metrics.md for the reasoning).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# fields that are sizes or counts: finite and >= 0 (a notebook user's typo is said, not silently measured with)
_NON_NEGATIVE = ("sigma_vox", "support_vox", "min_particle_mm3", "max_defect_diameter_mm", "min_defect_area_mm2",
                 "min_lesion_mm3", "reference_tolerance_vox")
# (trabecular_threshold is read leniently, "Local " too, and checked where it is used, naming the scan)
_CHOICES = {"mode": ("long-bone", "trabecular-cube"), "memory": ("auto", "load", "slabs")}


@dataclass(frozen=True)
class AnalysisOptions:
    # calibration: HU -> mg HA/cm3 as value * slope + intercept
    calibration: tuple[float, float] | None = None
    # smoothing before thresholding (Gaussian, in voxels, as Scanco IPL "sigma 0.8 support 1")
    sigma_vox: float = 0.8
    support_vox: int = 1
    # "auto" or a value in the image unit
    threshold: str | float = "auto"
    # trabeculae: "local" (each structure cut at its own half maximum, never above `threshold`;
    # Waarsing et al. 2004) or "global" (the same threshold as the cortex)
    trabecular_threshold: str = "local"
    # drop bone particles smaller than this
    min_particle_mm3: float = 0.001
    # ROI along z, in mm from the first slice of the scan: (start, end), "metaphyseal" (the standard
    # metaphyseal ROI below the growth plate, found automatically), None = whole bone
    roi_mm: tuple[float, float] | str | None = None
    # which bone of a scan holding several (both limbs of an in vivo scan): the N-th bone-sized particle counted
    # along x (1 = nearest the first column); None = the largest. `reference_bone` picks the reference's likewise
    bone: int | None = None
    reference_bone: int | None = None
    # the largest cortical opening the periosteal envelope must bridge (diameter)
    max_defect_diameter_mm: float = 0.6
    # cortical defects and lesions
    min_defect_area_mm2: float = 0.005
    min_lesion_mm3: float = 0.001
    # reference comparison
    reference_tolerance_vox: int = 1
    mirror_reference: bool = False
    # outputs
    render: bool = True
    # what the scan is: "long-bone" (a whole bone or part of it: envelope, cortex, marrow) or
    # "trabecular-cube" (a VOI cut from trabecular bone: the whole volume is the trabecular region)
    mode: str = "long-bone"
    # reading: resample a DICOM series with non-uniform slice spacing onto its median spacing
    # instead of refusing it (used where a scan is read from a path: batch rows, references)
    allow_nonuniform: bool = False
    # reading: "auto" (slab by slab only when the scan would not fit in memory), "slabs" (always, for a DICOM
    # series) or "load" (always in memory); the results are the same (ctbone.io.open_scan)
    memory: str = "auto"
    # reading: voxel size (z, y, x) mm of an image stack (TIFF, BMP, PNG slices), which carries none; None: from the
    # Bruker *_rec.log beside it. Applied to batch rows whose scan (or reference) is an image stack
    spacing_mm: tuple[float, float, float] | None = None

    def __post_init__(self):
        for name in _NON_NEGATIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < math.inf):
                raise ValueError(f"option {name} must be a finite number >= 0, got {value!r}")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"option {name} must be one of {choices}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)
