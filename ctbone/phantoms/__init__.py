"""Digital mouse long-bone phantoms with exact ground truth.

A phantom is a `PhantomSpec` (pure data, JSON round-trip). `make_phantom`
draws it on a fine grid, averages down (partial volume), blurs and adds
noise, and counts the truth on the same fine grid; `write_phantom` writes a
real DICOM series with distractors plus ``truth.json``; `write_study` writes
the demo study defined in ``phantoms/demo_study.json``.
"""

from .build import LABEL_NAMES, fine_slice, make_grid, make_phantom
from .spec import LESION_DEFAULTS, PhantomSpec, PhantomSpecError, default_spec, intact_twin, mirrored
from .study import DEMO_STUDY, load_definition, manifest_rows, study_scans, write_study
from .tilt import tilted
from .write import write_phantom

__all__ = [
    "DEMO_STUDY",
    "LABEL_NAMES",
    "LESION_DEFAULTS",
    "PhantomSpec",
    "PhantomSpecError",
    "default_spec",
    "fine_slice",
    "intact_twin",
    "load_definition",
    "make_grid",
    "make_phantom",
    "manifest_rows",
    "mirrored",
    "study_scans",
    "tilted",
    "write_phantom",
    "write_study",
]
