"""Study plots (matplotlib, Agg): per metric, groups side by side, every animal a point over a box.

Significance brackets come from the group_stats rows (Welch t, Holm-adjusted,
each group vs control). With timepoints, one line per animal over time plus
the group means. PNG (for the HTML report) and SVG (for papers) of each.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .safeio import save_png, written_into
from .stats import stars

# deterministic SVG output (matplotlib otherwise writes random ids and a date)
_RC = {"svg.hashsalt": "ctbone", "svg.fonttype": "none", "font.size": 9}
_PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def _figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=110)


def _save(fig, stem: Path) -> dict[str, Path]:
    """Save a figure as stem.png and stem.svg atomically."""
    import matplotlib

    out = {}
    with matplotlib.rc_context(_RC):
        for ext in ("png", "svg"):
            path = stem.with_suffix(f".{ext}")
            with written_into(path, suffix=f".{ext}") as tmp:
                meta = {"Date": None} if ext == "svg" else {"Software": None}
                fig.savefig(tmp, format=ext, metadata=meta, bbox_inches="tight")
            out[ext] = path
    return out


def group_plot(metric: str, samples: dict[str, list[float]], stem: Path, *, comparisons=(), title: str | None = None):
    """Box + points per group (mean ± SD as a bar beside), with significance brackets.

    Parameters
    ----------
    samples : dict
        Group -> values (groups in plotting order).
    comparisons : iterable of (group_a, group_b, p_adj)
        Brackets to draw (``ns`` included, so a reader sees what was tested).
    """
    groups = list(samples)
    fig = _figure(max(2.6, 1.1 * len(groups) + 1.2), 3.4)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # fixed jitter: identical plots on re-runs
    data = [np.asarray([v for v in samples[g] if math.isfinite(v)], dtype=float) for g in groups]
    positions = np.arange(1, len(groups) + 1)
    nonempty = [i for i, d in enumerate(data) if len(d)]
    if nonempty:
        ax.boxplot([data[i] for i in nonempty], positions=positions[nonempty], widths=0.5, showfliers=False,
                   medianprops={"color": "black"}, boxprops={"color": "0.5"}, whiskerprops={"color": "0.5"},
                   capprops={"color": "0.5"})
    for i, d in enumerate(data):
        colour = _PALETTE[i % len(_PALETTE)]
        x = positions[i] + rng.uniform(-0.12, 0.12, len(d))
        ax.scatter(x, d, s=22, color=colour, edgecolor="black", linewidth=0.4, zorder=3)
        if len(d) > 1:
            ax.errorbar(positions[i] + 0.33, d.mean(), yerr=d.std(ddof=1), fmt="_", color=colour, capsize=3, zorder=3)
    ax.set_xticks(positions, [str(g) for g in groups], rotation=0 if len(groups) < 4 else 30)
    ax.set_xlim(0.4, len(groups) + 0.7)
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    ax.spines[["top", "right"]].set_visible(False)
    finite = np.concatenate([d for d in data if len(d)]) if nonempty else np.zeros(1)
    top, span = float(finite.max()), float(np.ptp(finite)) or max(abs(float(finite.max())), 1.0)
    level = 0
    for a, b, p in comparisons:
        if a not in groups or b not in groups or not stars(p):
            continue
        level += 1
        y = top + span * 0.1 * level
        xa, xb = groups.index(a) + 1, groups.index(b) + 1
        ax.plot([xa, xa, xb, xb], [y - span * 0.02, y, y, y - span * 0.02], color="black", linewidth=0.8)
        ax.text((xa + xb) / 2, y, stars(p), ha="center", va="bottom")
    if level:
        ax.set_ylim(top=top + span * 0.1 * (level + 1))
    return _save(fig, stem)


def longitudinal_plot(metric: str, series: dict[str, dict[str, list[tuple[str, float]]]], timepoints: list[str],
                      stem: Path):
    """One thin line per animal over time, a thick line of the group mean; colours per group.

    Parameters
    ----------
    series : dict
        Group -> {animal label -> [(timepoint, value), ...]}.
    """
    fig = _figure(4.6, 3.4)
    ax = fig.add_subplot()
    xpos = {tp: i for i, tp in enumerate(timepoints)}
    for gi, (group, animals) in enumerate(series.items()):
        colour = _PALETTE[gi % len(_PALETTE)]
        for points in animals.values():
            pts = [(xpos[t], v) for t, v in points if t in xpos and math.isfinite(v)]
            if pts:
                xs, ys = zip(*sorted(pts))
                ax.plot(xs, ys, color=colour, alpha=0.35, linewidth=0.8, marker="o", markersize=3)
        means = []
        for tp in timepoints:
            vals = [v for pts in animals.values() for t, v in pts if t == tp and math.isfinite(v)]
            means.append(float(np.mean(vals)) if vals else math.nan)
        ax.plot(range(len(timepoints)), means, color=colour, linewidth=2.2, label=str(group))
    ax.set_xticks(range(len(timepoints)), timepoints)
    ax.set_xlabel("timepoint")
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, stem)


def image_grid(pngs, path: Path, *, labels=None, columns: int = 4, title: str | None = None) -> Path:
    """A montage of PNG images with labels, via matplotlib (used when ctbone.render has no montage)."""
    import matplotlib.image as mpimg

    pngs = list(pngs)
    labels = list(labels) if labels is not None else [Path(p).stem for p in pngs]
    cols = max(1, min(columns, len(pngs)))
    rows = max(1, math.ceil(len(pngs) / cols))
    fig = _figure(3.0 * cols, 2.4 * rows + (0.3 if title else 0))
    for i, (png, label) in enumerate(zip(pngs, labels)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(mpimg.imread(png))
        ax.set_title(str(label), fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(str(title))
    return save_png(fig, path)
