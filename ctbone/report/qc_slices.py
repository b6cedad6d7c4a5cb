"""QC slices: the scan's gray values with the segmentation's outlines and the lesions, slice by slice.

What vendor software shows while ROIs are drawn by hand, and what a reader checks before trusting the
numbers: does the green outline (the bone the threshold kept) follow the bone's edges, does the yellow one
(periosteal envelope, openings bridged) hug the bone, does the cyan one (marrow cavity) follow the endosteal
surface, are the red (lytic bone and cortical defects) and blue (blastic bone) regions where the bone is missing
or added? The dashed lines are the lesion stage's modelled intact cortex (periosteal yellow, endosteal cyan):
bone missing inside it is lytic, bone beyond its outer line blastic. One picture per scan: axial slices evenly
spread along the analysed bone and through the largest lesion of each kind, and one long section through the
shaft with the axial slices marked on it. Matplotlib (Agg), no display needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..render.snapshot import DEFAULT_COLOURS  # VTK is imported only when a snapshot is drawn
from .safeio import save_png

# outlines and fills; the lesion fills are the snapshot's colours, drawn over the reference comparison's
# (a misregistered reference shows as lost and gained shells along the whole surface)
BONE_COLOUR = "#5fe35f"
ENVELOPE_COLOUR = "#ffd400"
MARROW_COLOUR = "#00c8ff"
OUTLINES = (("bone", BONE_COLOUR, 0.5, "bone (threshold)"), ("envelope", ENVELOPE_COLOUR, 0.7, "periosteal envelope"),
            ("marrow", MARROW_COLOUR, 0.7, "marrow cavity"))
FILLS = (("lost", (1.0, 0.55, 0.0), "bone lost (vs reference)"),
         ("gained", (0.55, 0.25, 0.9), "bone gained (vs reference)"),
         ("lytic", DEFAULT_COLOURS["lytic"], "lytic bone"), ("defects", (1.0, 0.2, 0.75), "cortical defect"),
         ("blastic", DEFAULT_COLOURS["blastic"], "blastic bone"))
LABELS = {name: label for name, _, label in FILLS}
FILL_ALPHA = 0.55
EVEN_SLICES = 4
# the picture's fixed margins and gaps, inches: room for the suptitle, the legend, tick labels at 6 pt, axis
# labels and panel titles at 8 pt (what tight_layout found on the phantoms and the femur, without its 0.5 s of
# text measuring per picture)
MARGINS_IN = {"left": 0.45, "right": 0.15, "top": 0.5, "bottom": 0.55, "between_rows": 0.55, "between_columns": 0.5}
# the legend at 7 pt: an entry's width (the longest label, "bone gained (vs reference)", with its key) and a row's
# height, inches; its rows take room below the panels (in one row, nine entries ran off both sides of the picture)
LEGEND_ENTRY_IN = 2.2
LEGEND_ROW_IN = 0.17


def choose_qc_slices(masks: dict, n_even: int = EVEN_SLICES) -> list[tuple[int, str]]:
    """(z index on the masks' grid, why) of the axial QC slices, in z order.

    ``n_even`` slices spread evenly over the slices holding the envelope, and for each lesion kind present
    (defects, lytic, blastic; bone lost and gained with a reference) the slice holding most of its voxels. A slice
    within two slices of one already chosen (in that order, then the even ones) is left out."""
    envelope = _mask(masks, "envelope")
    held = np.flatnonzero(envelope.any(axis=(1, 2))) if envelope is not None else np.array([], int)
    if held.size == 0:
        first = next(iter(masks.values()))
        held = np.arange(first.shape[0])
    chosen: dict[int, str] = {}
    for name in ("defects", "lytic", "blastic", "lost", "gained"):  # a slice near one already chosen is not added
        mask = _mask(masks, name)
        if mask is not None and mask.any():
            z = int(mask.sum(axis=(1, 2)).argmax())
            if all(abs(z - c) > 2 for c in chosen):
                chosen[z] = f"most {LABELS[name]}"
    even = [int(held[int((k + 0.5) * held.size / n_even)]) for k in range(n_even)] if n_even > 0 else []
    for z in even:
        if all(abs(z - zl) > 2 for zl in chosen):
            chosen[z] = "even"
    return sorted(chosen.items())


def gray_window(image: np.ndarray, bone: np.ndarray | None) -> tuple[float, float]:
    """Display range: from the 1st percentile of the image to the 99.5th of the bone (of the image without
    bone), on a subsample: soft tissue dark grey, lamellar bone near white, woven bone in between."""
    step = max(1, int(round((image.size / 2e6) ** (1 / 3))))
    sub = image[::step, ::step, ::step]
    low = float(np.percentile(sub, 1.0))
    top = sub[bone[::step, ::step, ::step] > 0] if bone is not None else sub
    high = float(np.percentile(top if top.size else sub, 99.5))
    return low, max(high, low + 1e-6)


def write_qc_slices(result, path, *, dpi: int = 110) -> list[tuple[int, str]]:
    """Write the QC picture of an `AnalysisResult` to ``path`` (PNG, atomically); returns its axial slices as
    (slice index in the scan, why)."""
    from matplotlib.figure import Figure

    path = Path(path)
    image = np.asarray(result.image.array, np.float32)
    masks = {name: result.masks[name] for name in result.masks}  # each read once (some are made when read)
    spacing = result.image.spacing
    z0, y0, x0 = _crop_start(result)
    chosen = choose_qc_slices(masks)
    low, high = gray_window(image, _mask(masks, "bone"))
    envelope = _mask(masks, "envelope")
    ys, xs = _frame(envelope if envelope is not None and envelope.any() else np.ones(image.shape, bool))

    columns = min(4, max(1, len(chosen)))
    rows = -(-len(chosen) // columns)
    width_in = 3.0 * columns
    long_in = min(3.0, width_in * image.shape[2] / max(image.shape[0], 1) * spacing[2] / spacing[0]) + 0.6
    handles = _legend_handles(result, masks)
    legend_columns = max(1, min(len(handles), int((width_in - 0.3) // LEGEND_ENTRY_IN)))
    legend_in = LEGEND_ROW_IN * (-(-len(handles) // legend_columns) - 1) if handles else 0.0  # rows beyond one
    height_in = 3.1 * rows + long_in + legend_in
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    grid = fig.add_gridspec(rows + 1, columns, height_ratios=[3.1] * rows + [long_in],
                            **_margins(width_in, height_in, rows + 1, columns, extra_bottom_in=legend_in))
    # voxel centres in mm from the scan's first voxel (the crop's offset added back)
    z_mm = (z0 + np.arange(image.shape[0])) * spacing[0]
    y_mm = (y0 + np.arange(ys.start, ys.stop)) * spacing[1]
    x_mm = (x0 + np.arange(xs.start, xs.stop)) * spacing[2]
    for i, (z, why) in enumerate(chosen):
        ax = fig.add_subplot(grid[i // columns, i % columns])
        plane = (z, ys, xs)
        _draw(ax, image[plane], {n: _mask(masks, n)[plane] for n in _present(masks)}, low, high, x_mm, y_mm)
        _draw_cortex_model(ax, getattr(result, "cortex_model", None), z, (y0, x0), spacing)
        reason = "" if why == "even" else f", {why}"
        ax.set_title(f"slice {z0 + z} (z {(z0 + z) * spacing[0]:.2f} mm){reason}", fontsize=8)
        ax.set_xlabel("x mm", fontsize=6, labelpad=1)
        ax.set_ylabel("y mm", fontsize=6, labelpad=1)
        ax.tick_params(labelsize=6)
    # the long section through each slice's middle row (it follows a shaft leaning in y), z across
    ax = fig.add_subplot(grid[rows, :])
    centre = _centre_rows(envelope if envelope is not None and envelope.any() else np.ones(image.shape, bool))
    along = np.arange(image.shape[0])

    def section(volume):
        return volume[along, centre][:, xs].T

    _draw(ax, section(image), {n: section(_mask(masks, n)) for n in _present(masks)}, low, high, z_mm, x_mm)
    for z, _ in chosen:
        ax.axvline((z0 + z) * spacing[0], color="white", lw=0.6, ls=":")
    rows_used = f"row {y0 + centre[0]}" if centre.min() == centre.max() else \
        f"rows {y0 + centre.min()}-{y0 + centre.max()}, each slice's middle"
    ax.set_title(f"long section through {rows_used}: z (across) and x (down), mm; dotted: the slices above",
                 fontsize=8)
    ax.tick_params(labelsize=6)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=legend_columns, fontsize=7, frameon=False)
    fig.suptitle(str(result.info.get("source") or ""), fontsize=8)
    save_png(fig, path)
    return [(z0 + z, why) for z, why in chosen]


def _legend_handles(result, masks: dict) -> list:
    """The legend's entries: the outlines drawn, the modelled cortex, the fills present."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="none", edgecolor=colour, label=label) for name, colour, _, label in OUTLINES
               if name in masks and not np.asarray(masks[name].array).all()]
    if getattr(result, "cortex_model", None) is not None:
        handles.append(Line2D([], [], color="grey", lw=0.8, ls="--", label="modelled intact cortex"))
    handles += [Patch(facecolor=colour, alpha=FILL_ALPHA, label=label) for name, colour, label in FILLS
                if name in masks]
    return handles


def _margins(width_in: float, height_in: float, rows: int, columns: int, *, extra_bottom_in: float = 0.0) -> dict:
    """The grid's left/right/bottom/top (fractions of the figure) and wspace/hspace (of a mean panel) for
    `MARGINS_IN`, with ``extra_bottom_in`` more below (the legend's further rows)."""
    m = MARGINS_IN
    left, right = m["left"] / width_in, 1.0 - m["right"] / width_in
    bottom, top = (m["bottom"] + extra_bottom_in) / height_in, 1.0 - m["top"] / height_in
    panel_w = (width_in * (right - left) - (columns - 1) * m["between_columns"]) / columns
    panel_h = (height_in * (top - bottom) - (rows - 1) * m["between_rows"]) / rows
    return {"left": left, "right": right, "bottom": bottom, "top": top,
            "wspace": m["between_columns"] / panel_w, "hspace": m["between_rows"] / panel_h}


def _draw(ax, gray, masks, low, high, cols_mm, rows_mm):
    """A gray plane with the lesions filled and the envelope and marrow outlined; ``cols_mm``, ``rows_mm``: the
    positions of its columns and rows (voxel centres), rows downward as an image is read."""
    half_c = (cols_mm[1] - cols_mm[0]) / 2 if cols_mm.size > 1 else 0.5
    half_r = (rows_mm[1] - rows_mm[0]) / 2 if rows_mm.size > 1 else 0.5
    extent = (cols_mm[0] - half_c, cols_mm[-1] + half_c, rows_mm[-1] + half_r, rows_mm[0] - half_r)
    ax.imshow(gray, cmap="gray", vmin=low, vmax=high, extent=extent, interpolation="nearest")
    overlay = np.zeros(gray.shape + (4,), np.float32)
    for name, colour, _ in FILLS:
        if name in masks and masks[name].any():
            overlay[masks[name] > 0] = (*colour, FILL_ALPHA)
    if overlay[..., 3].any():
        ax.imshow(overlay, extent=extent, interpolation="nearest")
    for name, colour, width, _ in OUTLINES:
        if name in masks and masks[name].any() and not masks[name].all():
            ax.contour(cols_mm, rows_mm, masks[name].astype(np.float32), levels=[0.5], colors=[colour],
                       linewidths=width)
    ax.set_aspect("equal")


def _draw_cortex_model(ax, model, z: int, start_yx, spacing) -> None:
    """The modelled periosteal and endosteal surfaces of slice ``z`` (the image's grid), dashed; nothing where
    the slice was not modelled. ``start_yx``: where the image's crop starts in the scan (voxels)."""
    if model is None:
        return
    mz, my, mx = model["start_zyx"]
    k = z - mz
    if not 0 <= k < len(model["centres_yx_mm"]) or not model["analysed"][k]:
        return
    limits = ax.get_xlim(), ax.get_ylim()
    n_bins = model["periosteal_mm"].shape[1]
    angle = 2 * np.pi * (np.arange(n_bins + 1) + 0.5) / n_bins - np.pi  # bin centres, closed around
    cy, cx = model["centres_yx_mm"][k]
    # mm from the scan's first voxel: the model's positions are mm from the lesion stage's crop
    oy, ox = (start_yx[0] + my) * spacing[1], (start_yx[1] + mx) * spacing[2]
    for key, colour in (("periosteal_mm", ENVELOPE_COLOUR), ("endosteal_mm", MARROW_COLOUR)):
        radius = np.append(model[key][k], model[key][k][0]).astype(float)  # NaN bins break the line
        if np.isfinite(radius).any():
            ax.plot(ox + cx + radius * np.cos(angle), oy + cy + radius * np.sin(angle), color=colour, lw=0.8,
                    ls="--")
    ax.set_xlim(*limits[0])  # the picture's frame, wherever the model strays
    ax.set_ylim(*limits[1])


def _present(masks) -> list[str]:
    return [n for n in (*[o[0] for o in OUTLINES], *[f[0] for f in FILLS]) if n in masks]


def _mask(masks, name):
    volume = masks.get(name)
    return None if volume is None else np.asarray(volume.array)


def _frame(envelope):
    """Rows and columns of the envelope over all slices, with a margin of a tenth of its size."""
    rows, cols = np.flatnonzero(envelope.any(axis=(0, 2))), np.flatnonzero(envelope.any(axis=(0, 1)))
    ny, nx = envelope.shape[1:]
    my, mx = max(2, (rows[-1] - rows[0]) // 10), max(2, (cols[-1] - cols[0]) // 10)
    return (slice(max(0, rows[0] - my), min(ny, rows[-1] + 1 + my)),
            slice(max(0, cols[0] - mx), min(nx, cols[-1] + 1 + mx)))


def _centre_rows(envelope) -> np.ndarray:
    """(Z,) int: the row through the envelope's centre in each slice (its area-weighted mean row); slices without
    envelope take the nearest slice's."""
    counts = envelope.sum(axis=2).astype(float)  # (Z, Y)
    area = counts.sum(axis=1)
    held = np.flatnonzero(area > 0)
    if held.size == 0:
        return np.full(envelope.shape[0], envelope.shape[1] // 2)
    mean = (counts[held] * np.arange(envelope.shape[1])).sum(axis=1) / area[held]
    nearest = np.abs(np.arange(envelope.shape[0])[:, None] - held[None]).argmin(axis=1)  # index into held
    return np.rint(mean[nearest]).astype(int)


def _crop_start(result) -> tuple[int, int, int]:
    """Where the analysed crop starts in the scan, (z, y, x) voxels."""
    crop = (result.info.get("segmentation") or {}).get("crop_zyx")
    return tuple(int(c[0]) for c in crop) if crop else (0, 0, 0)
