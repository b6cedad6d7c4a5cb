"""QC slices: the slices chosen (through the lesions the phantom holds) and the outlines drawn where the masks are."""

import numpy as np
import pytest

from ctbone.phantoms import PhantomSpec, make_phantom
from ctbone.pipeline import analyze
from ctbone.report.qc_slices import _draw, choose_qc_slices, write_qc_slices
from ctbone.volume import Volume

LESIONS = ({"kind": "perforation", "z_mm": 0.5, "angle_deg": 0.0, "radius_mm": 0.1},
           {"kind": "blastic", "z_mm": 1.3, "angle_deg": 180.0, "half_length_mm": 0.2})


@pytest.fixture(scope="module")
def lesioned():
    spec = PhantomSpec(voxel_mm=0.03, length_mm=1.8, metaphysis_length_mm=0.0, lesions=LESIONS)
    vol, _ = make_phantom(spec, seed=0)
    return analyze(vol, render=False, roi_mm=(0.15, 1.65))


def test_slices_go_through_each_lesion_kind_and_spread_over_the_bone(lesioned):
    chosen = choose_qc_slices(lesioned.masks)
    assert [z for z, _ in chosen] == sorted(z for z, _ in chosen)
    why = {reason: z for z, reason in chosen}
    dz = lesioned.image.spacing[0]
    z0 = lesioned.info["segmentation"]["crop_zyx"][0][0]
    # on the phantom's truth: the perforation (radius 0.1 mm) at 0.5 mm, the woven cap over 1.1-1.5 mm
    assert abs((z0 + why["most cortical defect"]) * dz - 0.5) <= 0.1
    assert 1.1 <= (z0 + why["most blastic bone"]) * dz <= 1.5
    even = [z for z, reason in chosen if reason == "even"]
    assert 2 <= len(even) <= 4 and even[-1] - even[0] >= 0.4 * lesioned.image.shape[0]


def test_picture_is_written_with_its_slices_in_scan_indices(tmp_path, lesioned):
    from PIL import Image

    slices = write_qc_slices(lesioned, tmp_path / "qc.png")
    z0 = lesioned.info["segmentation"]["crop_zyx"][0][0]
    assert z0 > 0 and [z - z0 for z, _ in slices] == [z for z, _ in choose_qc_slices(lesioned.masks)]
    with Image.open(tmp_path / "qc.png") as picture:
        assert picture.size[0] > 600 and picture.size[1] > 400
    assert [p.name for p in tmp_path.iterdir()] == ["qc.png"]  # nothing temporary left


def test_outlines_are_drawn_where_the_mask_is_not_mirrored():
    # a square in the upper left of a plane: its outline must come out upper left in the picture's mm
    from matplotlib.figure import Figure

    gray = np.zeros((20, 30), np.float32)
    envelope = np.zeros((20, 30), bool)
    envelope[2:6, 3:8] = True
    ax = Figure().add_subplot()
    rows_mm, cols_mm = np.arange(20) * 0.1, 1.0 + np.arange(30) * 0.1
    _draw(ax, gray, {"envelope": envelope}, 0.0, 1.0, cols_mm, rows_mm)
    vertices = np.concatenate([path.vertices for path in ax.collections[-1].get_paths()])
    assert 0.15 <= vertices[:, 1].min() and vertices[:, 1].max() <= 0.55  # rows 2-5, y downward as displayed
    assert 1.25 <= vertices[:, 0].min() and vertices[:, 0].max() <= 1.75
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # image convention: y grows downward


def test_a_volume_without_an_envelope_still_gets_its_slices():
    masks = {"bone": Volume(np.ones((40, 4, 4), np.uint8), unit="mask")}
    assert [z for z, _ in choose_qc_slices(masks)] == [5, 15, 25, 35]
    # a short stack: no two slices within two of each other
    assert [z for z, _ in choose_qc_slices({"bone": Volume(np.ones((8, 4, 4), np.uint8), unit="mask")})] == [1, 5]


def test_a_bare_result_is_drawn_without_outlines_or_legend(tmp_path):
    # a bone mask filling the volume (nothing to outline) and no other mask: the slices are still drawn
    from ctbone.result import AnalysisResult

    image = Volume(np.random.default_rng(0).random((12, 10, 11)).astype(np.float32))
    result = AnalysisResult(metrics={}, masks={"bone": image.with_array(np.ones((12, 10, 11), np.uint8), unit="mask")},
                            image=image)
    assert [z for z, _ in write_qc_slices(result, tmp_path / "qc.png")] == [1, 4, 7, 10]
    assert (tmp_path / "qc.png").stat().st_size > 1000


def test_reference_comparisons_slices_and_near_duplicates():
    def mask_at(*zs):
        a = np.zeros((40, 4, 4), np.uint8)
        for z in zs:
            a[z, 1:3, 1:3] = 1
        return Volume(a, unit="mask")

    masks = {"bone": Volume(np.ones((40, 4, 4), np.uint8), unit="mask"), "defects": mask_at(10),
             "lost": mask_at(30), "gained": mask_at(11)}
    chosen = dict((reason, z) for z, reason in choose_qc_slices(masks))
    # the defect first, the loss on its own slice, the gain two slices from the defect left out, and the even
    # slices away from both
    assert chosen["most cortical defect"] == 10 and chosen["most bone lost (vs reference)"] == 30
    assert "most bone gained (vs reference)" not in chosen
    assert sorted(z for z, reason in choose_qc_slices(masks) if reason == "even") == [5, 15, 25, 35]


def test_the_modelled_cortex_is_drawn_on_the_bone_where_lesions_were_measured(lesioned):
    # the dashed periosteal model of an intact slice runs along the envelope's edge (the phantom's shaft is
    # round: the model is its outline), in the scan's mm like the pictures' axes
    from matplotlib.figure import Figure
    from scipy import ndimage

    from ctbone.report.qc_slices import _draw_cortex_model

    model = lesioned.cortex_model
    spacing = lesioned.image.spacing
    _, (y0, _), (x0, _) = lesioned.info["segmentation"]["crop_zyx"]
    envelope = lesioned.masks["envelope"].array > 0
    z = model["start_zyx"][0] + int(np.flatnonzero(model["analysed"])[5])  # an intact slice near the ROI's start
    ax = Figure().add_subplot()
    ax.set_xlim(0, 10), ax.set_ylim(10, 0)
    _draw_cortex_model(ax, model, z, (y0, x0), spacing)
    periosteal = ax.lines[0].get_xydata()
    assert len(ax.lines) == 2 and ax.get_xlim() == (0, 10)  # periosteal and endosteal, the frame kept
    edge = envelope[z] & ~ndimage.binary_erosion(envelope[z])
    ys, xs = np.nonzero(edge)
    edge_mm = np.stack([(x0 + xs) * spacing[2], (y0 + ys) * spacing[1]], axis=1)
    nearest = np.min(np.linalg.norm(periosteal[:, None, :] - edge_mm[None], axis=2), axis=1)
    assert np.nanmax(nearest) < 1.5 * spacing[1]
    # a slice the lesions were not measured in gets no model
    ax2 = Figure().add_subplot()
    _draw_cortex_model(ax2, {**model, "analysed": np.zeros_like(model["analysed"])}, z, (y0, x0), spacing)
    assert not ax2.lines


def test_the_long_section_follows_a_shaft_leaning_in_y():
    from ctbone.report.qc_slices import _centre_rows

    zz, yy, xx = np.indices((20, 40, 30))
    envelope = (yy - (10 + zz // 2)) ** 2 + (xx - 15) ** 2 <= 16  # a rod whose centre row climbs 1 every 2 slices
    envelope[:3] = envelope[-2:] = False  # slices beyond the bone take their nearest slice's row
    rows = _centre_rows(envelope)
    assert rows[3:-2].tolist() == [10 + z // 2 for z in range(3, 18)]
    assert rows[:3].tolist() == [11] * 3 and rows[-2:].tolist() == [18] * 2


def test_qc_module_shares_the_snapshot_colours_without_loading_vtk():
    import subprocess
    import sys

    script = ("import sys, ctbone.report.qc_slices as q, ctbone.render as r; "
              "assert dict((n, c) for n, c, _ in q.FILLS)['lytic'] == r.DEFAULT_COLOURS['lytic']; "
              "assert dict((n, c) for n, c, _ in q.FILLS)['blastic'] == r.DEFAULT_COLOURS['blastic']; "
              "print(sorted(m for m in sys.modules if m.startswith('vtk')))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize("slices", [40, 3])
def test_every_legend_entry_lies_inside_the_picture(monkeypatch, tmp_path, slices):
    # nine entries (outlines, the modelled cortex, every fill) on four columns of panels, and on one: in one row
    # they ran off both sides of the picture
    import ctbone.report.qc_slices as qc
    from ctbone.result import AnalysisResult

    shape = (slices, 10, 11)
    image = Volume(np.random.default_rng(0).random(shape).astype(np.float32))

    def mask(z):
        a = np.zeros(shape, np.uint8)
        a[z, 2:8, 2:8] = 1
        return image.with_array(a, unit="mask")

    names = ("bone", "envelope", "marrow", "lost", "gained", "lytic", "defects", "blastic")
    result = AnalysisResult(metrics={}, masks={n: mask(i % slices) for i, n in enumerate(names)}, image=image,
                            cortex_model={"start_zyx": (0, 0, 0), "analysed": np.zeros(slices, bool)})
    monkeypatch.setattr(qc, "_draw_cortex_model", lambda *args: None)
    figures = []
    monkeypatch.setattr(qc, "save_png", lambda fig, path: figures.append(fig))
    qc.write_qc_slices(result, tmp_path / "qc.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figures[0]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays the legend out
    renderer = canvas.get_renderer()
    legend = fig.legends[0]
    assert len(legend.get_texts()) == 9
    inside = fig.bbox
    for text in legend.get_texts():
        box = text.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0, text.get_text()
    # and below the panels
    lowest_axes = min(ax.get_window_extent(renderer).y0 for ax in fig.axes)
    assert legend.get_window_extent(renderer).y1 <= lowest_axes
