"""Studies: manifest validation, the batch runner (serial, processes, dask), resume, the demo."""

from .manifest import Manifest, ManifestRow, read_manifest
from .runner import run_batch

__all__ = ["Manifest", "ManifestRow", "read_manifest", "run_batch"]
