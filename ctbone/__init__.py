"""ctbone: micro-CT bone destruction metrics for mouse bone-metastasis studies.

The public API, for notebooks::

    import ctbone
    vol = ctbone.read_scan(path)            # Volume: .array (z, y, x) float32, .spacing (mm), ...
    res = ctbone.analyze(vol)               # AnalysisResult: .metrics, .masks, .lesions
    ctbone.render_snapshot(res, "bone.png")
"""

from importlib.metadata import PackageNotFoundError, version as _version

from .errors import CtboneError
from .options import AnalysisOptions
from .result import AnalysisResult
from .volume import HandedOver, Volume

try:
    __version__ = _version("ctbone")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"


def read_scan(path, series=None, **kwargs):
    """Read a scan (DICOM folder/file, NIfTI, MHA/MHD, NRRD, image stack: TIFF, BMP or PNG slices) into a `Volume`."""
    from .io import read_scan as _read_scan

    return _read_scan(path, series=series, **kwargs)


def open_scan(path, series=None, **kwargs):
    """A scan to analyse: a `Volume` in memory, or slab by slab when it would not fit; see `ctbone.io.open_scan`."""
    from .io import open_scan as _open_scan

    return _open_scan(path, series=series, **kwargs)


def analyze(volume, reference=None, **options):
    """Segment and measure one scan; see `ctbone.pipeline.analyze`."""
    from .pipeline import analyze as _analyze

    return _analyze(volume, reference=reference, **options)


def render_snapshot(result, path, **kwargs):
    """Write a 3D snapshot of the bone with lesions coloured; see `ctbone.render`."""
    from .render import render_snapshot as _render_snapshot

    return _render_snapshot(result, path, **kwargs)


__all__ = [
    "AnalysisOptions",
    "AnalysisResult",
    "CtboneError",
    "HandedOver",
    "Volume",
    "__version__",
    "analyze",
    "open_scan",
    "read_scan",
    "render_snapshot",
]
