"""3D pictures: inspected as images (not blank, framing, colour exactly where lesions are, scale)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vtkmodules")

from ctbone.errors import RenderError  # noqa: E402
from ctbone.render import export_meshes, montage_from_masks, render_snapshot, render_turntable, snapshot_image  # noqa: E402
from ctbone.render.views import bone_frame, camera_for  # noqa: E402
from ctbone.result import AnalysisResult  # noqa: E402
from ctbone.volume import Volume  # noqa: E402

VOXEL = 0.02  # mm
SIZE = (640, 480)
FIELD_MM = 5.0  # visible width: the 4 mm tube with margin
LYTIC_AT = np.array([0.3, 0.5, 1.5])  # x, y, z mm from the tube axis / first slice: on the +y wall
BLASTIC_AT = np.array([-0.2, 0.5, 2.8])


def _tube(mirror: bool = False, lesions: bool = True):
    """Elliptical tube along z (semi-axes 0.7 x 0.5 mm outer, wall 0.12 mm, 4 mm long), with a lytic hole
    through the +y wall and a blastic bump on it; returns masks (z, y, x) and the centre offset."""
    nz, ny, nx = 200, 70, 90
    z, y, x = np.meshgrid(np.arange(nz) * VOXEL, (np.arange(ny) - ny / 2) * VOXEL, (np.arange(nx) - nx / 2) * VOXEL,
                          indexing="ij")
    r_out = np.hypot(x / 0.7, y / 0.5)
    r_in = np.hypot(x / 0.58, y / 0.38)
    bone = (r_out <= 1) & (r_in > 1)
    lytic = np.zeros_like(bone)
    blastic = np.zeros_like(bone)
    if lesions:
        sx = -1 if mirror else 1
        hole = np.sqrt((x - sx * LYTIC_AT[0]) ** 2 + (y - LYTIC_AT[1]) ** 2 + (z - LYTIC_AT[2]) ** 2) < 0.18
        lytic = hole & bone
        bone &= ~hole
        bump = (np.sqrt((x - sx * BLASTIC_AT[0]) ** 2 + (y - BLASTIC_AT[1]) ** 2 + (z - BLASTIC_AT[2]) ** 2) < 0.25)
        blastic = bump & (r_out > 1)
        bone |= blastic
    return {"bone": bone, "lytic": lytic, "blastic": blastic}


def _red(rgb):
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 60) & (r > 2 * g) & (r > 2 * b)


def _blue(rgb):
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (b > 60) & (b > 1.6 * r) & (b > 1.2 * g)


def _foreground(rgb):
    return np.any(rgb < 245, axis=-1)


def _project(point_local, masks, view):
    """Pixel (column, row) where a local-frame point appears in a snapshot of ``masks`` (parallel camera)."""
    frame = bone_frame(masks["bone"] | masks["lytic"], (VOXEL,) * 3)
    w, h = SIZE
    scale = FIELD_MM / (w / h) / 2
    cam = camera_for(view, frame, scale)
    d = cam.position - cam.focal_point
    d /= np.linalg.norm(d)
    right = np.cross(-d, cam.view_up)
    ppm = h / (2 * scale)
    rel = point_local - cam.focal_point
    return w / 2 + rel @ right * ppm, h / 2 - rel @ cam.view_up * ppm


def _local(point_tube, shape=(200, 70, 90)):
    """Tube coordinates (x, y from the axis; z from the first slice) -> local frame (index * spacing)."""
    return np.array([point_tube[0] + shape[2] / 2 * VOXEL, point_tube[1] + shape[1] / 2 * VOXEL, point_tube[2]])


def _snap(masks, view="anterior", **kw):
    kw = {"size": SIZE, "field_mm": FIELD_MM, "legend": False, "scale_bar": False, **kw}
    return snapshot_image(masks, (VOXEL,) * 3, view=view, **kw)


@pytest.fixture(scope="module")
def lesioned():
    return _tube()


def test_picture_is_not_blank_and_the_bone_fills_the_frame(lesioned):
    rgb = snapshot_image(lesioned, (VOXEL,) * 3, view="anterior", size=SIZE)  # default framing
    fg = _foreground(rgb)
    cols = np.flatnonzero(fg.any(axis=0))
    assert rgb.shape == (SIZE[1], SIZE[0], 3)
    assert fg.mean() > 0.15  # an empty scene would be all background
    # the long axis runs left-right and spans most of the width (legend and margins aside)
    assert cols[-1] - cols[0] > 0.85 * SIZE[0]


def test_lesion_colours_sit_exactly_where_the_lesions_are(lesioned):
    rgb = _snap(lesioned, "anterior")  # anterior looks from +e3 = +y here (e1 = +z, e2 = +x)
    red, blue = _red(rgb), _blue(rgb)
    assert red.sum() > 200 and blue.sum() > 200
    for mask, at in ((red, LYTIC_AT), (blue, BLASTIC_AT)):
        rows, cols = np.nonzero(mask)
        col, row = _project(_local(at), lesioned, "anterior")
        # within 4 px (0.04 mm at this scale = 2 voxels) of where the camera model puts the lesion
        assert abs(cols.mean() - col) < 4 and abs(rows.mean() - row) < 4, (cols.mean(), col, rows.mean(), row)
    # and nothing red or blue elsewhere: all red pixels within the lytic hole's projected radius (+2 px AA)
    rows, cols = np.nonzero(red)
    col, row = _project(_local(LYTIC_AT), lesioned, "anterior")
    ppm = SIZE[1] / (FIELD_MM / (SIZE[0] / SIZE[1]))
    assert np.max(np.hypot(cols - col, rows - row)) < 0.18 * ppm + 3


def test_lesions_hidden_from_the_opposite_view(lesioned):
    rgb = _snap(lesioned, "posterior")
    assert _red(rgb).sum() == 0  # the hole is on the far wall; the near wall hides it


def test_intact_bone_has_no_lesion_colour():
    rgb = _snap(_tube(lesions=False), "panel")
    assert _foreground(rgb).mean() > 0.1
    assert _red(rgb).sum() == 0 and _blue(rgb).sum() == 0


def test_mirrored_twin_is_framed_the_same(lesioned):
    a = _foreground(_snap(lesioned, "anterior"))
    twin = _tube(mirror=True)
    b_rgb = _snap(twin, "anterior")
    b = _foreground(b_rgb)
    for axis in (0, 1):
        ia, ib = np.flatnonzero(a.any(axis=axis)), np.flatnonzero(b.any(axis=axis))
        assert abs(ia[0] - ib[0]) <= 2 and abs(ia[-1] - ib[-1]) <= 2
    assert abs(a.mean() - b.mean()) < 0.01
    # the mirrored lesion appears mirrored about the bone's axis line, at the same position along it
    rows_a, cols_a = np.nonzero(_red(_snap(lesioned, "anterior")))
    rows_b, cols_b = np.nonzero(_red(b_rgb))
    assert abs(cols_a.mean() - cols_b.mean()) < 3
    centre_row = (np.flatnonzero(a.any(axis=1))[0] + np.flatnonzero(a.any(axis=1))[-1]) / 2
    assert abs((rows_a.mean() - centre_row) + (rows_b.mean() - centre_row)) < 4


def test_scale_bar_scale_is_true(lesioned):
    rgb = _snap(lesioned, "anterior", field_mm=8.0)
    cols = np.flatnonzero(_foreground(rgb).any(axis=0))
    length_px = cols[-1] - cols[0] + 1
    expected = 4.0 * SIZE[0] / 8.0  # tube is 4 mm long (200 slices x 0.02 mm)
    assert abs(length_px - expected) / expected < 0.02


def test_panel_shows_four_views(lesioned):
    rgb = snapshot_image(lesioned, (VOXEL,) * 3, view="panel", size=(800, 600), legend=False, scale_bar=False)
    h, w = rgb.shape[:2]
    quads = [rgb[:h // 2, :w // 2], rgb[:h // 2, w // 2:], rgb[h // 2:, :w // 2], rgb[h // 2:, w // 2:]]
    assert all(_foreground(q).mean() > 0.05 for q in quads)
    # anterior (top left) sees the hole; posterior (bottom left) does not
    assert _red(quads[0]).sum() > 20 and _red(quads[2]).sum() == 0


def test_legend_label_and_scale_bar_are_drawn(lesioned):
    plain = _snap(lesioned, "anterior")
    dressed = _snap(lesioned, "anterior", legend=True, scale_bar=True, label="mouse 1")
    changed = np.any(plain != dressed, axis=-1)
    h, w = changed.shape
    assert changed[: h // 6, : w // 4].any()        # label, top left
    assert changed[: h // 4, 3 * w // 4:].any()     # legend, top right
    assert changed[-h // 6:, : w // 3].any()        # scale bar, bottom left


def test_empty_bone_is_a_clear_error():
    with pytest.raises(RenderError, match="empty"):
        snapshot_image({"bone": np.zeros((10, 10, 10), bool)}, (0.02,) * 3)


def test_a_bone_too_thin_for_a_surface_is_a_clear_error():
    # a one-voxel plane: the smoothed mask never reaches the surface level (an AttributeError from VTK's empty
    # output before; found by rendering random analysed volumes)
    plane = np.zeros((9, 30, 9), bool)
    plane[4] = True
    with pytest.raises(RenderError, match="too thin for a surface"):
        snapshot_image({"bone": plane}, (0.02,) * 3)


@pytest.mark.parametrize("size", [(17000, 400), (400, 17000), (10, 300), (9000, 9000)])
def test_picture_sizes_the_renderer_cannot_draw_are_refused(lesioned, size):
    # Mesa's off-screen renderer returned an empty 17000x4000 picture without a word
    with pytest.raises(RenderError, match="not usable: 16 to 16384 pixels a side"):
        snapshot_image(lesioned, (VOXEL,) * 3, size=size)


def test_unknown_view_is_refused(lesioned):
    with pytest.raises(RenderError, match="view"):
        _snap(lesioned, "sideways")


def _result(masks, origin=(10.0, -5.0, 2.0)):
    vols = {k: Volume(v.astype(np.uint8), spacing=(VOXEL,) * 3, origin=origin, unit="mask") for k, v in masks.items()}
    image = Volume(np.where(masks["bone"], 1200.0, 0.0).astype(np.float32), spacing=(VOXEL,) * 3, origin=origin,
                   unit="HU")
    return AnalysisResult(metrics={"threshold_hu": 600.0}, masks=vols, image=image)


def test_render_snapshot_writes_a_png(tmp_path, lesioned):
    import imageio.v3 as iio

    path = render_snapshot(_result(lesioned), tmp_path / "snap.png", size=SIZE, view="oblique")
    rgb = iio.imread(path)
    assert rgb.shape[:2] == (SIZE[1], SIZE[0])
    assert _red(rgb).sum() > 50 and _blue(rgb).sum() > 50
    assert [p.name for p in tmp_path.iterdir()] == ["snap.png"]  # no temporary file left


def test_meshes_are_closed_in_scanner_coordinates_with_the_mask_volume(tmp_path, lesioned):
    from vtkmodules.vtkFiltersCore import vtkMassProperties
    from vtkmodules.vtkIOGeometry import vtkSTLReader

    import stat

    from ctbone.atomic_write import FILE_MODE

    written = export_meshes(_result(lesioned), tmp_path, fmt="stl")
    assert set(written) == {"bone", "lytic", "blastic"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blastic.stl", "bone.stl", "lytic.stl"]  # no temporary
    assert all(stat.S_IMODE(p.stat().st_mode) == FILE_MODE for p in written.values())  # shared, not mkstemp's 0600
    reader = vtkSTLReader()
    reader.SetFileName(str(written["bone"]))
    reader.Update()
    mesh = reader.GetOutput()
    x0, x1, y0, y1, z0, z1 = mesh.GetBounds()
    # origin (10, -5, 2) applied; the tube spans x 0.7 mm either side of the array centre
    assert abs((x0 + x1) / 2 - (10.0 + 45 * VOXEL)) < 2 * VOXEL
    assert abs(z0 - 2.0) < 2 * VOXEL and abs(z1 - (2.0 + 199 * VOXEL)) < 2 * VOXEL
    mass = vtkMassProperties()
    mass.SetInputData(mesh)
    mask_mm3 = lesioned["bone"].sum() * VOXEL ** 3
    assert abs(mass.GetVolume() - mask_mm3) / mask_mm3 < 0.05


def test_turntable_gif_has_every_frame(tmp_path, lesioned):
    import imageio.v3 as iio

    path = render_turntable(_result(lesioned), tmp_path / "spin.gif", frames=6, size=(160, 120))
    frames = iio.imread(path, index=None)
    assert frames.shape[0] == 6
    assert not np.array_equal(frames[0], frames[3])  # it turns


def test_montage_uses_one_scale_for_the_group(tmp_path, lesioned):
    import SimpleITK as sitk
    import imageio.v3 as iio

    short = {k: v[:100] for k, v in _tube(lesions=False).items()}  # a bone half as long
    dirs = []
    for name, masks in (("long", lesioned), ("short", short)):
        folder = tmp_path / name / "masks"
        folder.mkdir(parents=True)
        for k, v in masks.items():
            image = sitk.GetImageFromArray(v.astype(np.uint8))
            image.SetSpacing((VOXEL,) * 3)
            sitk.WriteImage(image, str(folder / f"{k}.nii.gz"))
        dirs.append(folder)
    path = montage_from_masks(dirs, tmp_path / "montage.png", labels=["long", "short"], tile_size=(400, 300))
    rgb = iio.imread(path)
    assert rgb.shape[:2] == (300, 800)
    spans = []
    for tile in (rgb[:, :400], rgb[:, 400:]):
        body = _foreground(tile)[60:-60]  # skip label and scale bar rows
        cols = np.flatnonzero(body.any(axis=0))
        spans.append(cols[-1] - cols[0])
    assert abs(spans[1] / spans[0] - 0.5) < 0.05  # same mm per pixel in both tiles


PIPELINE_LESIONS = (
    {"kind": "perforation", "z_mm": 0.5, "angle_deg": 0.0, "radius_mm": 0.1},
    {"kind": "blastic", "z_mm": 1.1, "angle_deg": 180.0, "half_length_mm": 0.4, "hu": 950.0},
)


def _pipeline_spec(**kw):
    from ctbone.phantoms import PhantomSpec

    return PhantomSpec(**{**dict(voxel_mm=0.025, length_mm=1.6, metaphysis_length_mm=0.0, lesions=PIPELINE_LESIONS),
                          **kw})


def test_phantom_through_the_pipeline_shows_its_lesions_and_its_twin_none(tmp_path):
    from ctbone import analyze
    from ctbone.phantoms import intact_twin, make_phantom

    colours = {}
    for name, spec in (("lesioned", _pipeline_spec()), ("intact", intact_twin(_pipeline_spec()))):
        volume, _ = make_phantom(spec, seed=4)
        result = analyze(volume, render=False)
        rgb = snapshot_image(*_masks_of(result), view="panel", size=SIZE, legend=False)
        colours[name] = (_red(rgb).sum(), _blue(rgb).sum())
    assert colours["lesioned"][0] > 30 and colours["lesioned"][1] > 30
    assert colours["intact"] == (0, 0)


def _masks_of(result):
    from ctbone.render.snapshot import result_masks

    return result_masks(result)


def test_cli_render_writes_the_picture_and_refuses_bad_views(tmp_path):
    import imageio.v3 as iio

    from ctbone.cli import main
    from ctbone.phantoms import write_phantom

    folder = write_phantom(_pipeline_spec(), tmp_path / "scan", seed=1)
    out = tmp_path / "out" / "snap.png"
    out.parent.mkdir()
    assert main(["render", str(folder), "-o", str(out), "--size", "400x300", "--label", "m1"]) == 0
    assert iio.imread(out).shape[:2] == (300, 400)
    assert main(["render", str(folder), "-o", str(tmp_path / "out" / "x.png"), "--view", "sideways"]) == 2
    assert not (tmp_path / "out" / "x.png").exists()


@pytest.mark.realdata
def test_real_femur_is_framed_alike_on_both_sides(realdata):
    """The real mouse femur and its mirror image (the other leg): the bone fills the frame both times, with
    the same silhouette extent (the phantoms alone could flatter the principal-axis framing)."""
    from ctbone import analyze, read_scan

    volume = read_scan(next((realdata / "mouse_femur").glob("*.mhd")))
    result = analyze(volume, render=False)
    masks, spacing = _masks_of(result)
    extents = []
    for flip in (False, True):
        m = {k: (v[:, :, ::-1] if flip else v) for k, v in masks.items()}
        fg = _foreground(snapshot_image(m, spacing, view="anterior", size=SIZE, legend=False, scale_bar=False))
        cols, rows = np.flatnonzero(fg.any(axis=0)), np.flatnonzero(fg.any(axis=1))
        assert cols[-1] - cols[0] > 0.8 * SIZE[0]  # the long axis spans the picture
        extents.append((cols[-1] - cols[0], rows[-1] - rows[0]))
    (w0, h0), (w1, h1) = extents
    assert abs(w0 - w1) <= 0.02 * w0 and abs(h0 - h1) <= 0.02 * h0


def test_gray_surface_shows_bone_kept_below_the_threshold():
    # a faint rod (peak below the bone threshold, as a trabecula kept by the local threshold) next to a
    # bright slab: both are in the mask, so the surface must reach the rod too
    from vtkmodules.util.numpy_support import vtk_to_numpy

    from ctbone.render.surfaces import gray_surface

    image = np.zeros((20, 30, 30), np.float32)
    image[:, 2:8, :] = 1000.0  # the slab
    image[:, 20:22, 14:16] = 300.0  # the rod, under a threshold of 500
    mask = image > 0
    surface = gray_surface(image, mask, 500.0, (0.01, 0.01, 0.01), sigma_vox=0.8)
    y_mm = vtk_to_numpy(surface.GetPoints().GetData())[:, 1]
    assert np.any((y_mm > 0.18) & (y_mm < 0.24))  # points around the rod (y = 0.20-0.21 mm)
    assert not np.any((y_mm > 0.10) & (y_mm < 0.17))  # and none in the marrow between


def test_grabbing_without_a_second_render_gives_the_same_pixels(lesioned, monkeypatch):
    # the scene grabs the frame it has just rendered (ShouldRerenderOff); re-rendering first must not change it
    import vtkmodules.vtkRenderingCore as rendering_core

    once = snapshot_image(lesioned, (VOXEL,) * 3, view="oblique", size=(400, 300))

    original = rendering_core.vtkWindowToImageFilter

    class Rerendering(original):
        def ShouldRerenderOff(self):  # noqa: N802 - VTK's name
            self.ShouldRerenderOn()

    monkeypatch.setattr(rendering_core, "vtkWindowToImageFilter", Rerendering)
    twice = snapshot_image(lesioned, (VOXEL,) * 3, view="oblique", size=(400, 300))
    assert np.array_equal(once, twice)


@pytest.mark.parametrize("factor", [2, 3])
def test_block_reductions_equal_the_6d_reshape_definition(factor):
    from ctbone.render.surfaces import block_any, block_mean

    rng = np.random.default_rng(factor)
    mask = rng.random((23, 17, 31)) < 0.3
    gray = rng.normal(500, 300, mask.shape).astype(np.float32)
    n = [s // factor for s in mask.shape]

    def blocks(a):
        return a[: n[0] * factor, : n[1] * factor, : n[2] * factor].reshape(n[0], factor, n[1], factor, n[2], factor)

    assert np.array_equal(block_mean(mask, factor), blocks(mask.astype(np.float32)).mean(axis=(1, 3, 5), dtype=np.float32))
    assert np.array_equal(block_any(mask, factor), blocks(mask).any(axis=(1, 3, 5)))
    # gray values: summed in another order, equal to float32 rounding
    np.testing.assert_allclose(block_mean(gray, factor), blocks(gray).mean(axis=(1, 3, 5)), rtol=1e-5, atol=1e-3)
