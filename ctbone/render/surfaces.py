"""Triangle surfaces of masks: smoothed, extracted with VTK flying edges, exported as STL/PLY.

Surfaces live in a local frame: point = voxel index (x, y, z) × spacing, in mm, so
that a picture's scale bar is true. `to_physical` maps them to scanner coordinates
(origin and direction of the `Volume`) for exported meshes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import RenderError
from ..volume import fold_blocks

# the signed distance of a mask is blurred this much (voxels) before its zero level is taken:
# enough to smooth the voxel staircase, little enough to keep a 3-voxel cortex closed
SURFACE_SIGMA_VOX = 1.2
# above this many voxels the mask is block-averaged first: a picture 1600 px wide cannot
# show finer detail, and flying edges on 10^8 voxels would cost seconds for nothing
MAX_RENDER_VOXELS = 48_000_000
PAD_VOX = 2


def downsample_factor(shape, max_voxels: int = MAX_RENDER_VOXELS) -> int:
    """Smallest integer block size that brings ``shape`` under ``max_voxels``."""
    n = float(np.prod(shape))
    return max(1, math.ceil((n / max_voxels) ** (1 / 3))) if n > max_voxels else 1


def block_mean(mask: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``mask`` (or a gray image) in each factor³ block, float32 (the grid shrinks by ``factor``)."""
    if factor == 1:
        return mask.astype(np.float32)
    if mask.dtype == bool:  # counts are exact in any order: sum them as integers
        total = fold_blocks(mask.view(np.uint8), factor, np.add, np.uint16)
    else:
        total = fold_blocks(mask, factor, np.add, np.float32)
    return (total / np.float32(factor ** 3)).astype(np.float32, copy=False)


def mask_surface(mask: np.ndarray, spacing_zyx, *, factor: int = 1, sigma_vox: float = SURFACE_SIGMA_VOX):
    """A smooth surface of a binary (z, y, x) mask as vtkPolyData with normals (None if empty).

    The mask's signed distance (voxels, positive inside) is blurred and its zero level
    extracted: a blurred distance ramps linearly across the boundary, so the voxel
    staircase of shallow slopes becomes a smooth surface (a blurred binary mask keeps
    visible terraces), and the enclosed volume stays within ~2 % of the mask's.

    Parameters
    ----------
    mask : ndarray of bool/uint8, (z, y, x)
    spacing_zyx : 3 floats, mm
    factor : int
        Block-average the mask by this factor first (see `downsample_factor`).
    sigma_vox : float
        Gaussian blur of the signed distance, in (downsampled) voxels.
    """
    import edt

    if not np.any(mask):
        return None
    binary = block_mean(mask, factor) >= 0.5 if factor > 1 else mask.astype(bool, copy=False)
    binary = np.pad(binary, PAD_VOX)
    inside = edt.edt(binary).astype(np.float32)
    outside = edt.edt(~binary).astype(np.float32)
    # voxel centres are half a voxel from the boundary on either side
    distance = np.where(binary, inside - 0.5, 0.5 - outside).astype(np.float32)
    del inside, outside
    if sigma_vox > 0:
        distance = ndimage.gaussian_filter(distance, sigma_vox, truncate=3.0, output=np.float32)
    surface = field_surface(distance, spacing_zyx, 0.0, factor=factor, sigma_vox=0.0, pad_value=-float(PAD_VOX),
                            padded=True)
    return surface


def block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """True where any voxel of a factor³ block is set (the grid shrinks by ``factor``)."""
    if factor == 1:
        return mask.astype(bool, copy=False)
    return fold_blocks(mask.astype(bool, copy=False), factor, np.logical_or, bool)


def gray_surface(image: np.ndarray, mask: np.ndarray, threshold: float, spacing_zyx, *, sigma_vox: float,
                 factor: int = 1):
    """The bone surface as the ``threshold`` iso-surface of the smoothed gray ``image``, kept near ``mask``.

    Sub-voxel smooth (no voxel staircase) and where the segmentation put it: the
    segmentation is ``gaussian(image, sigma_vox) > threshold``; voxels more than two voxels
    from ``mask`` (despeckled particles, outside the ROI) are pushed below the threshold, and
    voxels of ``mask`` below it (trabeculae found by the local threshold) are lifted above it.
    When downsampled, the block mean comes first (it is itself a smoothing of width
    ``factor``), so the Gaussian runs on the small grid.
    """
    if not np.any(mask):
        return None
    # bone the segmentation kept although its gray value is not above this threshold: trabeculae cut at their
    # own half maximum by the local threshold (judged before the re-smoothing, which also lowers edge voxels of
    # bone above the threshold, and lifting those would roughen the surface)
    faint = np.asarray(mask, bool) & (image <= threshold)
    faint = block_mean(faint, factor) >= 0.5 if faint.any() else None
    field = block_mean(image, factor) if factor > 1 else image.astype(np.float32, copy=True)
    sigma = max(0.5, sigma_vox / factor) if factor > 1 else sigma_vox
    field = ndimage.gaussian_filter(field, sigma, truncate=3.0, output=np.float32)
    near = ndimage.binary_dilation(block_any(mask, factor), iterations=2 if factor == 1 else 1)
    low = float(threshold) - max(1.0, abs(float(threshold)))
    # ... is lifted above it, so pictures and meshes show every structure the metrics count
    if faint is not None:
        faint &= field <= threshold
        field[faint] = np.float32(float(threshold) + 0.5 * max(1.0, abs(float(threshold))))
    field[~near] = low
    return field_surface(field, spacing_zyx, float(threshold), factor=factor, sigma_vox=0.0, pad_value=low)


def field_surface(field: np.ndarray, spacing_zyx, level: float, *, factor: int = 1, sigma_vox: float = 0.0,
                  pad_value: float = 0.0, padded: bool = False):
    """The ``level`` iso-surface of a float (z, y, x) field on a grid downsampled by ``factor``
    (``padded``: the field already carries `PAD_VOX` voxels of padding on every side)."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D

    if not padded:
        field = np.pad(field, PAD_VOX, constant_values=pad_value)  # close the surface at the crop border
    if sigma_vox > 0:
        field = ndimage.gaussian_filter(field, sigma_vox, truncate=3.0, output=np.float32)
    spacing = np.asarray(spacing_zyx, dtype=float) * factor
    image = vtkImageData()
    image.SetDimensions(field.shape[2], field.shape[1], field.shape[0])
    image.SetSpacing(spacing[2], spacing[1], spacing[0])
    # voxel centre of block b is at (b + (factor-1)/2) original voxels; padding shifts by PAD_VOX blocks
    shift = (factor - 1) / 2.0 * np.asarray(spacing_zyx, dtype=float) - PAD_VOX * spacing
    image.SetOrigin(shift[2], shift[1], shift[0])
    scalars = numpy_to_vtk(np.ascontiguousarray(field, dtype=np.float32).ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    edges = vtkFlyingEdges3D()
    edges.SetInputData(image)
    edges.SetValue(0, level)
    edges.ComputeNormalsOn()
    edges.ComputeGradientsOff()
    edges.ComputeScalarsOff()
    edges.Update()
    surface = edges.GetOutput()
    return surface if surface.GetNumberOfPoints() else None


def surface_points(surface) -> np.ndarray:
    """(n, 3) float array of a polydata's points, local x, y, z in mm."""
    from vtkmodules.util.numpy_support import vtk_to_numpy

    return vtk_to_numpy(surface.GetPoints().GetData()).astype(float, copy=False)


def colour_points(surface, base_rgb, patches) -> None:
    """Give every point of ``surface`` a colour: ``base_rgb``, or the colour of the first patch whose
    mask (z, y, x, local grid with ``spacing_zyx``) holds the point's nearest voxel.

    ``patches`` is a list of (mask, spacing_zyx, rgb); colours are floats in [0, 1].
    """
    from vtkmodules.util.numpy_support import numpy_to_vtk

    pts = surface_points(surface)
    rgb = np.empty((len(pts), 3), dtype=np.uint8)
    rgb[:] = np.round(np.asarray(base_rgb) * 255)
    taken = np.zeros(len(pts), dtype=bool)
    for mask, spacing_zyx, colour in patches:
        idx = np.round(pts[:, ::-1] / np.asarray(spacing_zyx, dtype=float)).astype(np.int64)
        np.clip(idx, 0, np.asarray(mask.shape) - 1, out=idx)
        hit = mask[idx[:, 0], idx[:, 1], idx[:, 2]].astype(bool) & ~taken
        rgb[hit] = np.round(np.asarray(colour) * 255)
        taken |= hit
    array = numpy_to_vtk(rgb, deep=True)
    array.SetName("colors")
    surface.GetPointData().SetScalars(array)


def to_physical(surface, volume):
    """A copy of ``surface`` in the scanner frame of ``volume`` (origin + direction), mm."""
    from vtkmodules.vtkCommonTransforms import vtkTransform
    from vtkmodules.vtkFiltersGeneral import vtkTransformFilter

    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(volume.direction, dtype=float)
    matrix[:3, 3] = np.asarray(volume.origin, dtype=float)
    transform = vtkTransform()
    transform.SetMatrix(matrix.ravel().tolist())
    moved = vtkTransformFilter()
    moved.SetTransform(transform)
    moved.SetInputData(surface)
    moved.Update()
    return moved.GetPolyDataOutput()


def write_mesh(surface, path) -> Path:
    """Write ``surface`` as binary STL or PLY, chosen by the suffix of ``path``."""
    from vtkmodules.vtkIOGeometry import vtkSTLWriter
    from vtkmodules.vtkIOPLY import vtkPLYWriter

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".stl":
        writer = vtkSTLWriter()
    elif suffix == ".ply":
        writer = vtkPLYWriter()
        if surface.GetPointData().GetScalars() is not None:
            writer.SetArrayName(surface.GetPointData().GetScalars().GetName() or "colors")
    else:
        raise RenderError(f"{path}: unknown mesh format {suffix!r}. Potential fix: use .stl or .ply.")
    writer.SetFileTypeToBinary()
    writer.SetFileName(str(path))
    writer.SetInputData(surface)
    if not writer.Write():
        raise RenderError(f"{path}: the mesh could not be written")
    return path
