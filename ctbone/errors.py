"""Errors raised by ctbone, in the words of the domain.

Every message says what is wrong, names the file or folder concerned, and
when possible the fix ("... Potential fix: pass --series 3"). The CLI prints
``str(error)`` as one line and exits non-zero; tracebacks only with --debug.
"""


class CtboneError(Exception):
    """Base class of every error ctbone raises on purpose."""


class ScanReadError(CtboneError):
    """A file or folder cannot be read as a scan (not DICOM, truncated, undecodable)."""


class SeriesError(ScanReadError):
    """The DICOM files do not form one usable series (mixed, empty, ambiguous choice)."""


class GeometryError(ScanReadError):
    """Slice geometry is unusable: missing or duplicate slices, non-uniform or zero spacing."""


class VoxelSizeMissingError(GeometryError):
    """An image stack carries no voxel size and none was given (no --spacing, no Bruker *_rec.log)."""


class DecoderMissingError(ScanReadError):
    """A compressed transfer syntax needs a decoder package that is not installed."""


class CalibrationError(CtboneError):
    """Density calibration cannot be applied or fitted."""


class SegmentationError(CtboneError):
    """No bone, or no usable compartment, could be segmented."""


class RegistrationError(CtboneError):
    """A reference scan could not be registered to the scan."""


class ManifestError(CtboneError):
    """A study manifest is invalid (all problems are listed, with line numbers)."""


class OutputError(CtboneError):
    """An output path is unusable (e.g. it is inside an input folder)."""


class RenderError(CtboneError):
    """A 3D picture cannot be made (no OpenGL context, nothing to draw, unusable view or size)."""
