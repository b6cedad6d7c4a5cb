"""3D rendering: figure-ready pictures of a bone with its lesions coloured (VTK, off screen).

`render_snapshot(result, path)` draws an `AnalysisResult`; `snapshot_image` is the
pure core for notebooks (masks in, RGB array out); `export_meshes` writes the
surfaces as STL/PLY; `render_turntable` a GIF/MP4; `montage_from_masks` a group figure
at one common scale. View conventions: `ctbone.render.views` and docs/rendering.md.
"""

from .meshes import export_meshes
from .snapshot import (
    DEFAULT_COLOURS,
    fit_field_mm,
    montage_from_masks,
    render_scan,
    render_snapshot,
    render_turntable,
    snapshot_image,
)
from .views import PANEL_VIEWS, VIEWS

__all__ = [
    "DEFAULT_COLOURS", "PANEL_VIEWS", "VIEWS", "export_meshes", "fit_field_mm", "montage_from_masks", "render_scan",
    "render_snapshot", "render_turntable", "snapshot_image",
]
