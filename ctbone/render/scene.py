"""Off-screen VTK scene: surface actors, one or more viewports, capture to an RGB array.

VTK's pip wheel picks an off-screen OpenGL context by itself when there is no
display (EGL, else OSMesa); `.ci/run` and the README install Mesa for that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RenderError
from .views import Camera

MULTISAMPLES = 8
# the largest picture side Mesa's off-screen renderer draws into: a wider window comes back empty, silently
# (17000x4000 rendered nothing; 16000x4000 rendered the bone)
MAX_SIDE_PX = 16384
# and the most pixels a picture may have (~240 MB of RGBA plus the depth buffer)
MAX_PIXELS = 80_000_000


@dataclass(frozen=True)
class Layer:
    """One surface to draw: vtkPolyData with per-point colours, or one colour."""

    surface: object
    colour: tuple[float, float, float] | None = None  # None: use the surface's point colours
    opacity: float = 1.0
    in_front: bool = False  # drawn over coincident surfaces (lesion patches on the bone)


def _quiet_vtk() -> None:
    # VTK reports "bad X server connection" on stderr before falling back to EGL; that is not an
    # error for us, and a CLI must not print it. Real failures still raise below.
    from vtkmodules.vtkCommonCore import vtkLogger, vtkObject

    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    vtkObject.GlobalWarningDisplayOff()


def _actor(layer: Layer):
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

    mapper = vtkPolyDataMapper()
    mapper.SetInputData(layer.surface)
    if layer.colour is None:
        mapper.ScalarVisibilityOn()
        mapper.SetScalarModeToUsePointData()
        mapper.SetColorModeToDirectScalars()
    else:
        mapper.ScalarVisibilityOff()
    if layer.in_front:
        mapper.SetRelativeCoincidentTopologyPolygonOffsetParameters(-2.0, -4.0)
    actor = vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    if layer.colour is not None:
        prop.SetColor(*layer.colour)
    prop.SetOpacity(layer.opacity)
    prop.SetInterpolationToPhong()
    prop.SetAmbient(0.12)
    prop.SetDiffuse(0.85)
    prop.SetSpecular(0.15)
    prop.SetSpecularPower(25.0)
    return actor


class OffscreenScene:
    """An off-screen window holding ``layers``; `shoot` renders them for a set of cameras.

    Use as a context manager (the OpenGL context is released on exit). One scene can
    shoot many times (turntable frames) without rebuilding surfaces or context.
    """

    def __init__(self, layers, size, background):
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401 - registers the OpenGL render window
        from vtkmodules.vtkRenderingCore import vtkRenderWindow

        _quiet_vtk()
        width, height = (int(v) for v in size)
        if not (16 <= width <= MAX_SIDE_PX and 16 <= height <= MAX_SIDE_PX) or width * height > MAX_PIXELS:
            raise RenderError(f"picture size {width}x{height} is not usable: 16 to {MAX_SIDE_PX} pixels a side, at "
                              f"most {MAX_PIXELS // 1_000_000} million pixels. Potential fix: e.g. --size 1600x1200.")
        self.size = (width, height)
        self.background = tuple(float(c) for c in background)
        self.actors = [_actor(layer) for layer in layers]
        self.translucent = any(layer.opacity < 1 for layer in layers)
        self.window = vtkRenderWindow()
        self.window.SetOffScreenRendering(True)
        # multisample anti-aliasing (FXAA returns a black frame under Mesa EGL)
        self.window.SetMultiSamples(MULTISAMPLES)
        self.window.SetSize(width, height)
        self.renderers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self.window is not None:
            self.window.Finalize()
            self.window = None

    def _renderers(self, count: int):
        from vtkmodules.vtkRenderingCore import vtkLightKit, vtkRenderer

        while len(self.renderers) < count:
            renderer = vtkRenderer()
            renderer.SetBackground(*self.background)
            if self.translucent:
                renderer.SetUseDepthPeeling(True)
            for actor in self.actors:
                renderer.AddActor(actor)
            vtkLightKit().AddLightsToRenderer(renderer)
            self.window.AddRenderer(renderer)
            self.renderers.append(renderer)
        return self.renderers[:count]

    def shoot(self, cameras: list[tuple[Camera, tuple[float, float, float, float]]]) -> np.ndarray:
        """Render once per (camera, viewport); returns the picture as (h, w, 3) uint8.

        Viewports are (xmin, ymin, xmax, ymax) fractions of the window, VTK's convention (y up).
        """
        from vtkmodules.util.numpy_support import vtk_to_numpy
        from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

        for renderer, (camera, viewport) in zip(self._renderers(len(cameras)), cameras):
            renderer.SetViewport(*viewport)
            vtk_camera = renderer.GetActiveCamera()
            vtk_camera.ParallelProjectionOn()
            vtk_camera.SetFocalPoint(*camera.focal_point)
            vtk_camera.SetPosition(*camera.position)
            vtk_camera.SetViewUp(*camera.view_up)
            vtk_camera.SetParallelScale(camera.parallel_scale_mm)
            renderer.ResetCameraClippingRange()
        self.window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        # the window was rendered just above; by default the grab renders it again, which with Mesa's
        # software rasteriser doubled the time of a frame (1.5 s at 1600x1200; same pixels, tested)
        grab.ShouldRerenderOff()
        grab.Update()
        output = grab.GetOutput()
        w, h, _ = output.GetDimensions()
        scalars = output.GetPointData().GetScalars()
        if (w, h) != self.size or scalars is None:
            raise RenderError("no off-screen OpenGL context. Potential fix: install Mesa EGL "
                              "(apt install libegl1 libegl-mesa0) or OSMesa (apt install libosmesa6).")
        pixels = vtk_to_numpy(scalars)
        # OpenGL rows run bottom-up
        return np.ascontiguousarray(pixels.reshape(h, w, -1)[::-1, :, :3])
