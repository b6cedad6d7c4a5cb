"""Figure-ready 3D pictures of a bone with its lesions coloured.

`snapshot_image` is the pure core (masks in, RGB array out); `render_snapshot`
draws an `AnalysisResult`, `render_scan` a scan on disk, `render_turntable`
a rotating GIF/MP4, `montage_from_masks` a group figure at one common scale.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..atomic_write import atomic_write_bytes
from ..errors import RenderError
from ..volume import bounding_box, mask_as_bool
from .overlay import annotate
from .scene import Layer, OffscreenScene
from .surfaces import colour_points, downsample_factor, gray_surface, mask_surface
from .views import (
    PANEL_VIEWS,
    VIEWS,
    bone_frame,
    camera_for,
    needed_field,
    turntable_direction,
)

log = logging.getLogger(__name__)

DEFAULT_COLOURS = {
    "bone": (0.93, 0.89, 0.78),     # ivory
    "lytic": (0.85, 0.12, 0.10),    # missing bone: lytic lesions and cortical defects
    "blastic": (0.17, 0.42, 0.86),  # woven bone outgrowths
}
LEGEND = (("bone", "bone"), ("lytic", "lytic lesion / cortical defect"), ("blastic", "blastic bone"))
WHITE = (1.0, 1.0, 1.0)
# panel: 2x2 views, VTK viewports (xmin, ymin, xmax, ymax), y up
PANEL_VIEWPORTS = ((0.0, 0.5, 0.5, 1.0), (0.5, 0.5, 1.0, 1.0), (0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 0.5))


def _as_bool(mask) -> np.ndarray | None:
    if mask is None:
        return None
    # stored 0/1 uint8 masks are read as boolean views (never written here): no volume-sized copies
    return mask_as_bool(getattr(mask, "array", mask))


def _colours(colours: Mapping | None) -> dict:
    out = dict(DEFAULT_COLOURS)
    for name, value in (colours or {}).items():
        if name not in out:
            raise RenderError(f"unknown colour name {name!r}; known: {', '.join(out)}")
        out[name] = tuple(float(c) for c in value)
    return out


def _prepare(masks: Mapping, spacing_zyx):
    """The masks as booleans cropped to the bone (+2 voxels): bone, missing, blastic, whole (bone ∪ missing)."""
    bone = _as_bool(masks.get("bone"))
    if bone is None or not bone.any():
        raise RenderError("nothing to render: the bone mask is empty")
    missing = np.zeros_like(bone)
    for name in ("lytic", "defects"):
        m = _as_bool(masks.get(name))
        if m is not None:
            missing |= m
    blastic = _as_bool(masks.get("blastic"))
    whole = bone | missing
    box = bounding_box(whole, margin_vox=2)
    bone, missing, whole = bone[box], missing[box], whole[box]
    blastic = blastic[box] if blastic is not None else None
    return bone, missing, blastic, whole, box


def _layers(bone, missing, blastic, spacing_zyx, colours, bone_opacity, *, factor, gray=None):
    """Surfaces to draw. ``gray`` = (image, threshold, sigma_vox) draws the bone from the gray image."""
    layers = []
    surface = None
    if gray is not None:
        image, threshold, sigma_vox = gray
        surface = gray_surface(image, bone, threshold, spacing_zyx, sigma_vox=sigma_vox, factor=factor)
    if surface is None:  # no gray image, or one that does not match the mask: draw the mask itself
        surface = mask_surface(bone, spacing_zyx, factor=factor)
    if surface is None:  # the smoothed mask never reaches the surface level: a bone a voxel or so thick
        raise RenderError(f"nothing to render: the bone ({int(bone.sum())} voxels) is too thin for a surface "
                          "at this resolution")
    patches = []
    blastic_box = bounding_box(blastic, margin_vox=2) if blastic is not None else None
    if blastic_box is not None:
        # surface points sit between a bone voxel and an air voxel: grow the patch by one voxel to reach them
        grown = np.zeros_like(blastic)
        grown[blastic_box] = ndimage.binary_dilation(blastic[blastic_box])
        patches.append((grown, spacing_zyx, colours["blastic"]))
    colour_points(surface, colours["bone"], patches)
    layers.append(Layer(surface, None, bone_opacity))
    missing_box = bounding_box(missing, margin_vox=2 * factor + 2)
    if missing_box is not None:
        # surfaces of the (small) lesions on their own bounding box, then moved into place
        lesion = mask_surface(missing[missing_box], spacing_zyx, factor=1)
        if lesion is not None:
            layers.append(Layer(_shifted(lesion, missing_box, spacing_zyx), colours["lytic"], 1.0, in_front=True))
    return layers


def _shifted(surface, box, spacing_zyx):
    """Move a surface extracted from ``mask[box]`` to the frame of the whole mask."""
    from vtkmodules.util.numpy_support import vtk_to_numpy

    points = vtk_to_numpy(surface.GetPoints().GetData())
    points += np.array([box[2].start, box[1].start, box[0].start], dtype=points.dtype) * \
        np.asarray(spacing_zyx, dtype=points.dtype)[::-1]
    surface.GetPoints().Modified()
    return surface


def _scene_parts(masks: Mapping, spacing_zyx, colours: dict, bone_opacity: float, *, image=None,
                 threshold: float | None = None, sigma_vox: float = 0.8):
    """The bone's principal frame and the surfaces to draw (bone from the gray ``image`` when given)."""
    spacing_zyx = tuple(float(s) for s in spacing_zyx)
    bone, missing, blastic, whole, box = _prepare(masks, spacing_zyx)
    gray = None
    if image is not None and threshold is not None:
        gray = (np.asarray(getattr(image, "array", image))[box], float(threshold), float(sigma_vox))
    layers = _layers(bone, missing, blastic, spacing_zyx, colours, bone_opacity,
                     factor=downsample_factor(bone.shape), gray=gray)
    return bone_frame(whole, spacing_zyx), layers


def snapshot_image(masks: Mapping, spacing_zyx, *, view: str = "oblique", size=(1600, 1200), label: str | None = None,
                   colours: Mapping | None = None, background=WHITE, bone_opacity: float = 1.0,
                   scale_bar: bool = True, legend: bool = True, field_mm: float | None = None,
                   image=None, threshold: float | None = None, sigma_vox: float = 0.8) -> np.ndarray:
    """Render a bone and its lesions; returns the picture as (height, width, 3) uint8.

    Parameters
    ----------
    masks : mapping of name -> (z, y, x) array or `Volume`
        "bone" (required); "lytic", "defects" (drawn in the lytic colour, where bone is missing)
        and "blastic" (bone drawn in the blastic colour) when present. All on one grid.
    spacing_zyx : 3 floats
        Voxel size in mm.
    view : {"oblique", "anterior", "posterior", "medial", "lateral", "panel"}
        One standard view from the bone's principal axes (see `ctbone.render.views`), or a
        2×2 panel of anterior, lateral, posterior and medial.
    size : (width, height)
        Pixels.
    label : str, optional
        Text at the top left (animal, group).
    colours : mapping, optional
        RGB floats in [0, 1] for "bone", "lytic", "blastic".
    background : RGB floats
    bone_opacity : float
        Below 1 the bone is translucent and lesions inside it show through.
    scale_bar, legend : bool
    field_mm : float, optional
        Visible width of one view in mm; give the same value to every animal of a figure
        for one common scale. Default: the bone fills the view.
    image, threshold, sigma_vox : optional
        The gray image the bone mask was segmented from (same grid), its bone threshold and
        smoothing: the bone surface is then the smooth sub-voxel iso-surface of the image rather
        than the mask's voxel staircase.
    """
    if view != "panel" and view not in VIEWS:
        raise RenderError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)} or 'panel'")
    colours = _colours(colours)
    frame, layers = _scene_parts(masks, spacing_zyx, colours, bone_opacity, image=image, threshold=threshold,
                                 sigma_vox=sigma_vox)

    width, height = (int(v) for v in size)
    views = PANEL_VIEWS if view == "panel" else (view,)
    viewports = PANEL_VIEWPORTS if view == "panel" else ((0.0, 0.0, 1.0, 1.0),)
    aspect = width / height
    scale = field_mm / aspect / 2 if field_mm else needed_field(frame, views, aspect)
    cameras = [(camera_for(v, frame, scale), vp) for v, vp in zip(views, viewports)]
    with OffscreenScene(layers, (width, height), background) as scene:
        rgb = scene.shoot(cameras)
    view_height_px = height * (viewports[0][3] - viewports[0][1])
    captions = []
    if view == "panel":
        captions = [((int(vp[0] * width) + width // 60, int((1 - vp[3]) * height) + height // 14), v)
                    for v, vp in zip(views, viewports)]
    legend_rows = [(text, colours[key]) for key, text in LEGEND] if legend else None
    return annotate(rgb, px_per_mm=view_height_px / (2 * scale) if scale_bar else None, background=background,
                    label=label, legend=legend_rows, captions=captions)


def fit_field_mm(masks: Mapping, spacing_zyx, *, view: str = "oblique", size=(1600, 1200)) -> float:
    """Visible width (mm) that `snapshot_image` would choose for these masks (for a common scale)."""
    _, _, _, whole, _ = _prepare(masks, spacing_zyx)
    frame = bone_frame(whole, spacing_zyx)
    aspect = size[0] / size[1]
    views = PANEL_VIEWS if view == "panel" else (view,)
    return 2 * needed_field(frame, views, aspect) * aspect


def write_png(rgb: np.ndarray, path) -> Path:
    """Write an RGB array as PNG atomically (a temporary file renamed into place)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=False)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def result_masks(result) -> tuple[dict, tuple]:
    """The masks of an `AnalysisResult` that pictures use, and their spacing."""
    if "bone" not in result.masks:
        raise RenderError("the analysis result has no bone mask to render")
    names = ("bone", "lytic", "defects", "blastic")
    masks = {n: result.masks[n].array for n in names if n in result.masks}
    return masks, tuple(result.masks["bone"].spacing)


def result_gray(result) -> dict:
    """``image``/``threshold``/``sigma_vox`` keywords for `snapshot_image` from a result (empty when the
    threshold is unknown or the image is not on the masks' grid)."""
    threshold = next((v for k, v in result.metrics.items() if k.startswith("threshold_")), None)
    image = getattr(result, "image", None)
    if threshold is None or image is None or image.shape != result.masks["bone"].shape:
        return {}
    if not np.isfinite(float(threshold)):
        return {}
    return {"image": image.array, "threshold": float(threshold), "sigma_vox": float(result.options.sigma_vox)}


def render_snapshot(result, path, *, view: str = "oblique", size=(1600, 1200), label: str | None = None,
                    **style) -> Path:
    """Write a PNG picture of an analysed scan: bone ivory, missing bone red, blastic bone blue.

    ``style``: colours, background, bone_opacity, scale_bar, legend, field_mm (see `snapshot_image`).

    Examples
    --------
    >>> res = ctbone.analyze(ctbone.read_scan("scan/"))      # doctest: +SKIP
    >>> ctbone.render_snapshot(res, "lesions.png", view="panel", label="mouse 3, treated")  # doctest: +SKIP
    """
    masks, spacing = result_masks(result)
    style = {**result_gray(result), **style}
    rgb = snapshot_image(masks, spacing, view=view, size=size, label=label, **style)
    return write_png(rgb, path)


def render_scan(path, out_png, *, view: str = "oblique", size=(1600, 1200), label: str | None = None, series=None,
                spacing=None, allow_nonuniform: bool = False, **analysis_overrides) -> Path:
    """Read, analyse (no outputs) and render one scan: what ``ctbone render`` does."""
    from ..io import read_scan
    from ..pipeline import analyze

    volume = read_scan(path, series, spacing=spacing, allow_nonuniform=allow_nonuniform)
    analysis_overrides["render"] = False
    result = analyze(volume, **analysis_overrides)
    return render_snapshot(result, out_png, view=view, size=size, label=label)


def render_turntable(result, path, *, frames: int = 36, size=(800, 600), fps: float = 12.0, label: str | None = None,
                     **style) -> Path:
    """A GIF (or MP4, with imageio's ffmpeg plugin) of the bone turning once about its long axis."""
    import imageio.v3 as iio

    path = Path(path)
    check_turntable_path(path)
    suffix = path.suffix.lower()
    masks, spacing = result_masks(result)
    background = style.pop("background", WHITE)
    frame, layers = _scene_parts(masks, spacing, _colours(style.pop("colours", None)), style.pop("bone_opacity", 1.0),
                                 **result_gray(result))
    angles = np.linspace(0.0, 360.0, int(frames), endpoint=False)
    directions = [turntable_direction(frame, a) for a in angles]
    aspect = size[0] / size[1]
    scale = needed_field(frame, directions, aspect)
    pictures = []
    with OffscreenScene(layers, size, background) as scene:
        for d in directions:
            rgb = scene.shoot([(camera_for(d, frame, scale), (0.0, 0.0, 1.0, 1.0))])
            pictures.append(annotate(rgb, px_per_mm=size[1] / (2 * scale), background=background, label=label,
                                     legend=None))
    try:
        if suffix == ".gif":
            data = iio.imwrite("<bytes>", np.stack(pictures), extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            data = iio.imwrite("<bytes>", np.stack(pictures), extension=".mp4", fps=fps)
    except (ImportError, ValueError, RuntimeError, KeyError) as exc:  # KeyError: imageio fell back to Pillow
        raise RenderError(f"{path}: cannot encode {suffix} ({exc}). Potential fix: write .gif, or "
                          "pip install imageio[ffmpeg] for .mp4.") from None
    return atomic_write_bytes(path, data)


def check_turntable_path(path) -> None:
    """`RenderError` when a turntable cannot be written to ``path``: not .gif or .mp4, or .mp4 without imageio's
    ffmpeg plugin (checked before the frames are rendered: imageio would fall back to Pillow and fail at the end)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise RenderError(f"{path}: a turntable is written as .gif or .mp4")
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401 - imageio's ffmpeg plugin needs it
        except ImportError:
            raise RenderError(f"{path}: writing .mp4 needs imageio's ffmpeg plugin, which is not installed. Potential "
                              "fix: pip install imageio[ffmpeg], or write the turntable as .gif") from None


def montage_from_masks(mask_dirs, path, *, labels=None, view: str = "oblique", tile_size=(800, 600), columns: int = 4,
                       title: str | None = None, background=WHITE) -> Path:
    """One group figure: each scan's masks (folders of bone/lytic/defects/blastic .nii.gz, as `analyze`
    writes them) rendered with the same camera convention and one common scale, side by side."""
    import SimpleITK as sitk

    loaded = []
    for folder in mask_dirs:
        folder = Path(folder)
        masks, spacing = {}, None
        for name in ("bone", "lytic", "defects", "blastic"):
            file = folder / f"{name}.nii.gz"
            if file.is_file():
                image = sitk.ReadImage(str(file))
                masks[name] = sitk.GetArrayViewFromImage(image) > 0
                spacing = tuple(reversed(image.GetSpacing()))
        if "bone" not in masks:
            raise RenderError(f"{folder}: no bone.nii.gz mask to render")
        loaded.append((masks, spacing))
    if not loaded:
        raise RenderError("a montage needs at least one scan")
    field = max(fit_field_mm(m, s, view=view, size=tile_size) for m, s in loaded)
    labels = list(labels) if labels is not None else [Path(d).parent.name for d in mask_dirs]
    tiles = [snapshot_image(m, s, view=view, size=tile_size, label=str(lab), field_mm=field, background=background,
                            legend=i == 0) for i, ((m, s), lab) in enumerate(zip(loaded, labels))]
    cols = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // cols)
    w, h = tile_size
    top = h // 10 if title else 0
    canvas = np.empty((rows * h + top, cols * w, 3), dtype=np.uint8)
    canvas[:] = np.round(np.asarray(background) * 255)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[top + r * h: top + (r + 1) * h, c * w: (c + 1) * w] = tile
    if title:
        canvas = annotate(canvas, px_per_mm=None, background=background, label=title, legend=None)
    return write_png(canvas, path)
