"""Study-level outputs from the per-scan folders: CSV tables, Prism file, plots, snapshots, report.html.

Everything is rebuilt from ``scans/<name>/metrics.json`` in manifest order, so
a resumed run and an uninterrupted one give the same files.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from pathlib import Path

from ..result import LESION_COLUMNS
from ..segment.checks import AREA_TILT_DEG, MAX_TILT_DEG, MIN_CORTEX_VOXELS, MIN_MARROW_PCT, area_excess_pct
from . import html as H
from .plots import group_plot, image_grid, longitudinal_plot
from .prism import write_pzfx
from .safeio import atomic_copy, write_csv
from .scan_outputs import read_scan_record
from .stats import describe
from .tables import (CHANGE_SUFFIX, LIMB_DIFF_SUFFIX, baseline_change, group_order, group_samples, group_stats,
                     group_summary, has_timepoints, in_stratum, limb_difference, limb_strata, numeric_metrics,
                     stats_columns, summary_columns, timepoint_order)

log = logging.getLogger(__name__)

ACQUISITION = ("voxel_mm", "n_slices", "series_uid", "series_description", "voxel_z_mm", "voxel_y_mm", "voxel_x_mm",
               "threshold_method", "image_unit", "input_format", "voxel_size_from")
# plotted, exported to Prism and shown first in the report, when present
KEY_METRICS = ("cortical_defect_count", "cortical_defect_area_mm2", "cortical_defect_pct", "lytic_volume_mm3",
               "blastic_volume_mm3", "bone_lost_mm3", "bone_lost_pct", "bone_gained_mm3", "bv_tv_pct", "ct_th_mm",
               "tb_bv_tv_pct")
IDENTITY = ("animal_id", "group", "limb", "timepoint")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """``text`` reduced to a file-name-safe form (letters, digits, . _ -)."""
    return _UNSAFE.sub("-", str(text)).strip(".-") or "x"


def _threshold_column(metrics: dict) -> str | None:
    return next((k for k in metrics if k.startswith("threshold_")), None)


def per_animal_rows(manifest, statuses: dict, scans_dir: Path) -> tuple[list[dict], list[str]]:
    """Rows in manifest order (manifest columns, status, error, qc_notes, acquisition, metrics) and the metric
    names."""
    rows, metric_names = [], []
    for mrow in manifest.rows:
        status, error = statuses.get(mrow.name, ("error", "not run"))
        row = dict(mrow.columns)
        row.update({"status": status, "error": error})
        if status == "ok":
            try:
                data = read_scan_record(scans_dir / mrow.name)
            except ValueError as exc:
                row.update(status="error", error=f"outputs of {mrow.name} unreadable ({exc})")
            else:
                row.update({k: data.get("provenance", {}).get(k) for k in ACQUISITION})
                metrics = {k: (math.nan if v is None else v) for k, v in data.get("metrics", {}).items()}
                row.update(metrics)
                metric_names.extend(m for m in metrics if m not in metric_names)
                row["_notes"] = scan_notes(data)
                row["qc_notes"] = "; ".join(row["_notes"])  # the report's notes, for filtering in R or pandas
        row["_name"] = mrow.name
        rows.append(row)
    return rows, metric_names


def scan_notes(data: dict) -> list[str]:
    """What a scan's analysis corrected on its own and the reader should know (from its metrics.json)."""
    info = data.get("info") or {}
    segmentation = info.get("segmentation") or {}
    notes = []
    if info.get("threshold_method") == "otsu-no-contrast":
        notes.append("the histogram shows no bone contrast: the automatic threshold cut through one population of "
                     "values (the wrong series, or no bone in the scan?)")
    fills = segmentation.get("fills_field_of_view_pct")
    if fills is not None:
        notes.append(f"the bone reaches all four sides of the field of view in {fills:.0f} % of its slices: no long "
                     f"bone lying in the scan (a trabecular block: --mode trabecular-cube)")
    left_out = segmentation.get("left_out_particle_mm3")
    if left_out is not None:
        notes.append(f"a second bone-sized particle ({left_out:.3g} mm³) was left out (the other limb, or a "
                     f"calibration rod?): the largest bone was analysed; the manifest's bone column picks another")
    marrow = segmentation.get("marrow_pct_of_envelope")
    if marrow is not None and marrow < MIN_MARROW_PCT:
        notes.append(f"the segmented bone holds no marrow cavity ({marrow:.1f} % of its envelope): a solid dense "
                     f"object may have been taken for bone")
    if segmentation.get("shaft_across_slices"):
        notes.append(f"the shaft lies {segmentation.get('long_axis_tilt_deg', float('nan')):.0f}° from the slice "
                     f"axis z, beyond the 40° of tilt the lesion measures were validated for: reslice the scan so "
                     f"that it runs along z")
    shaft_tilt = segmentation.get("shaft_tilt_deg")
    if shaft_tilt is not None and AREA_TILT_DEG <= shaft_tilt <= MAX_TILT_DEG:
        notes.append(f"the shaft leans {shaft_tilt:.0f}° from the slice axis z: the slice areas Tt.Ar, Ct.Ar and "
                     f"Ma.Ar read {area_excess_pct(shaft_tilt):.1f} % over its cross-sections (align the scan with "
                     f"the shaft for guideline areas)")
    cortex_voxels = info.get("cortex_voxels")
    if cortex_voxels is not None and cortex_voxels < MIN_CORTEX_VOXELS:
        notes.append(f"the cortex is {cortex_voxels:.1f} voxels thick, under the {MIN_CORTEX_VOXELS:.1f} the lesion "
                     f"measures were validated at: blastic volume reads high and shells under 2 voxels can show "
                     f"false defects (docs/accuracy.md, 50 µm rows)")
    runs = segmentation.get("envelope_bridged_mm") or []
    if runs:
        where = ", ".join(f"{a:.2f}–{b:.2f}" for a, b in runs)
        notes.append(f"an opening the bridge (--max-defect-diameter-mm) did not close left the periosteal envelope "
                     f"open at z {where} mm; bridged there from the slices on either side")
    unsupported = (info.get("lesions") or {}).get("openings_without_missing_bone_mm2") or []
    if unsupported:
        notes.append(f"{len(unsupported)} opening(s) of {', '.join(f'{a:.3g}' for a in unsupported)} mm² read as open "
                     f"by the threshold show no bone missing in their gray values (a shell thinner than the threshold "
                     f"sees, or anatomy): not counted as cortical defects; check them in qc_slices.png")
    return notes


def per_animal_columns(manifest, metric_names) -> list[str]:
    """per_animal.csv columns: manifest columns, status, error, qc_notes, acquisition, metrics (no repeats)."""
    return list(dict.fromkeys([*manifest.columns, "status", "error", "qc_notes", *ACQUISITION, *metric_names]))


def all_lesions(manifest, rows, scans_dir: Path) -> tuple[list[dict], list[str]]:
    """Every lesion of every ok scan, prefixed with animal_id, group, limb, timepoint."""
    out, columns = [], list(IDENTITY) + list(LESION_COLUMNS)
    for mrow, row in zip(manifest.rows, rows):
        path = scans_dir / mrow.name / "lesions.csv"
        if row["status"] != "ok" or not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8") as fh:
            for lesion in csv.DictReader(fh):
                columns.extend(k for k in lesion if k not in columns)
                out.append({"animal_id": mrow.animal_id, "group": mrow.group, "limb": mrow.limb,
                            "timepoint": mrow.timepoint, **lesion})
    return out, columns


def _label(row) -> str:
    return "_".join(p for p in (str(row.get("animal_id") or ""), str(row.get("limb") or ""),
                                str(row.get("timepoint") or "")) if p)


def write_study_outputs(manifest, outdir, *, statuses: dict, options, parameters: dict, control: str | None,
                        version: str, scans_dir: Path) -> dict[str, Path]:
    """Write per_animal.csv, lesions.csv, group_summary.csv, group_stats.csv, [change_from_baseline.csv],
    [limb_difference.csv], study.pzfx, plots/, snapshots/, [qc.html] and report.html into ``outdir``; returns
    name -> path."""
    outdir = Path(outdir)
    written: dict[str, Path] = {}
    rows, metric_names = per_animal_rows(manifest, statuses, scans_dir)
    written["per_animal"] = write_csv(outdir / "per_animal.csv", rows, per_animal_columns(manifest, metric_names))
    lesions, lesion_cols = all_lesions(manifest, rows, scans_dir)
    written["lesions"] = write_csv(outdir / "lesions.csv", lesions, lesion_cols)

    groups = group_order(rows)
    control = control if control in groups else (groups[0] if groups else None)
    limbs = limb_strata(rows)
    if limbs != [None]:
        log.info("an animal has several limbs as rows: group statistics, plots and Prism tables are per limb (%s)",
                 ", ".join(limbs))
    stat_metrics = [m for m in metric_names if not m.startswith("threshold_")]
    summary = group_summary(rows, stat_metrics, limbs=limbs)
    stats = group_stats(rows, stat_metrics, control=control)
    longitudinal = has_timepoints(rows)
    if longitudinal:
        change = baseline_change(rows, stat_metrics)
        change_metrics = [m + CHANGE_SUFFIX for m in stat_metrics]
        written["change"] = write_csv(outdir / "change_from_baseline.csv", change,
                                      ["animal_id", "group", "limb", "timepoint", *change_metrics])
        summary += group_summary([{**c, "status": "ok"} for c in change], change_metrics, limbs=limbs)
    if len(limbs) == 2:
        difference, diff_summary, diff_stats = _limb_difference_tables(rows, stat_metrics, limbs, control)
        written["limb_difference"] = write_csv(outdir / "limb_difference.csv", difference,
                                               ["animal_id", "group", "limb", *(["timepoint"] if longitudinal else []),
                                                *[m + LIMB_DIFF_SUFFIX for m in stat_metrics]])
        summary += diff_summary
        stats += diff_stats
    written["group_summary"] = write_csv(outdir / "group_summary.csv", summary, summary_columns(rows))
    written["group_stats"] = write_csv(outdir / "group_stats.csv", stats, stats_columns(rows))

    key = [m for m in KEY_METRICS if m in numeric_metrics(rows, stat_metrics)]
    timepoints = timepoint_order(rows) if longitudinal else [None]
    last_tp = timepoints[-1]
    written["pzfx"] = _write_prism(outdir / "study.pzfx", rows, key, groups, last_tp, limbs)
    plots = _write_plots(outdir / "plots", rows, key, groups, stats, timepoints, last_tp, limbs)
    snapshots = _copy_snapshots(manifest, rows, scans_dir, outdir / "snapshots")
    montages = _write_montages(outdir / "plots", rows, snapshots, groups, scans_dir)
    qc = _qc_pictures(manifest, rows, scans_dir)
    if qc:
        written["qc"] = _write_qc_page(outdir / "qc.html", manifest, rows, qc, groups)
    written["report"] = _write_html(outdir / "report.html", manifest, rows, metric_names, key, summary, stats,
                                    plots, montages, parameters=parameters, version=version, control=control,
                                    limbs=limbs, qc=bool(qc))
    return written


def _limb_difference_tables(rows, metrics, limbs, control):
    """(limb_difference.csv's rows, their group summary, their group comparisons): each animal's first limb of
    the manifest against its other, (X_a − X_b) / X_b × 100, summarised and compared between groups as one
    value per animal (the summary and statistics rows' ``limb`` reads "A vs B")."""
    difference = limb_difference(rows, metrics, *limbs)
    pair = f"{limbs[0]} vs {limbs[1]}"
    # one row per animal: no limb strata (the rows carry no limb), the pair named in the outputs afterwards
    per_animal = [{**{k: v for k, v in d.items() if k != "limb"}, "status": "ok"} for d in difference]
    diff_metrics = [m + LIMB_DIFF_SUFFIX for m in metrics]
    summary = [{**s, "limb": pair} for s in group_summary(per_animal, diff_metrics, limbs=[None])]
    stats = [{**s, "limb": pair} for s in group_stats(per_animal, diff_metrics, control=control)]
    return difference, summary, stats


def _write_prism(path, rows, key, groups, timepoint, limbs=(None,)):
    tables = {}
    for metric in key:
        for limb in limbs:
            name = metric if limb is None else f"{metric} (limb {limb})"
            tables[name] = {g: [(_label(r), float(r[metric])) for r in rows
                                if r["status"] == "ok" and r["group"] == g and in_stratum(r, timepoint, limb)
                                and isinstance(r.get(metric), (int, float))]
                            for g in groups}
    return write_pzfx(path, tables)


def _write_plots(folder: Path, rows, key, groups, stats, timepoints, last_tp, limbs=(None,)) -> list[tuple[str, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for metric in key:
        tp = last_tp
        for limb in limbs:
            comps = [(s["group_b"], s["group_a"], s["p_adj"]) for s in stats
                     if s["metric"] == metric and s["test"] == "welch_t" and s["comparison"] != "omnibus"
                     and (tp is None or s["timepoint"] == tp) and (limb is None or s.get("limb") == limb)]
            parts = [f"timepoint {tp}"] * (tp is not None) + [f"limb {limb}"] * (limb is not None)
            title = metric + (f" ({', '.join(parts)})" if parts else "")
            stem = safe_name(metric) + ("" if limb is None else f"_limb_{safe_name(limb)}")
            paths = group_plot(metric, {g: group_samples(rows, metric, g, tp, limb) for g in groups}, folder / stem,
                               comparisons=comps, title=title)
            out.append((title, paths["png"]))
        if tp is not None:
            series = {g: {} for g in groups}
            for r in rows:
                if r["status"] == "ok" and isinstance(r.get(metric), (int, float)):
                    label = "_".join(p for p in (str(r["animal_id"]), str(r.get("limb") or "")) if p)
                    series[r["group"]].setdefault(label, []).append((str(r.get("timepoint") or ""), float(r[metric])))
            paths = longitudinal_plot(metric, series, timepoints, folder / f"{safe_name(metric)}_over_time")
            out.append((f"{metric} over time", paths["png"]))
    return out


def _copy_snapshots(manifest, rows, scans_dir: Path, folder: Path) -> dict[str, Path]:
    out = {}
    for mrow, row in zip(manifest.rows, rows):
        src = scans_dir / mrow.name / "snapshot.png"
        if row["status"] == "ok" and src.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            out[mrow.name] = atomic_copy(src, folder / f"{mrow.name}.png")
    return out


def _write_montages(folder: Path, rows, snapshots: dict, groups, scans_dir: Path) -> list[tuple[str, Path]]:
    """One figure per group: every animal re-rendered from its masks at one common scale (same camera
    convention), or — without VTK — the snapshots tiled as they are."""
    try:
        from ..render import montage_from_masks
    except ImportError:
        montage_from_masks = None
    out = []
    for g in groups:
        members = [(r["_name"], _label(r)) for r in rows if r["group"] == g and r["_name"] in snapshots]
        if not members:
            continue
        labels = [label for _, label in members]
        path = folder / f"montage_{safe_name(g)}.png"
        try:
            if montage_from_masks is not None:
                montage_from_masks([scans_dir / name / "masks" for name, _ in members], path, labels=labels,
                                   title=str(g))
            else:
                image_grid([snapshots[name] for name, _ in members], path, labels=labels, title=g)
        except Exception as exc:  # noqa: BLE001 - a montage is decoration; the numbers are already written
            log.warning("montage of group %s not written (%s)", g, exc)
            continue
        out.append((g, path))
    return out


def _key_table(rows, key, groups, limbs=(None,)) -> str:
    """Group (x limb) x key metric: mean ± SD (n), over ok rows (the last timepoint when there are several)."""
    tps = timepoint_order(rows)
    last = tps[-1] if has_timepoints(rows) else None
    table = []
    for g in groups:
        for limb in limbs:
            cells = {"group": g} if limb is None else {"group": g, "limb": limb}
            for metric, values in ((m, group_samples(rows, m, g, last, limb)) for m in key):
                d = describe(values)
                sd = "" if math.isnan(d["sd"]) else f" ± {d['sd']:.3g}"
                cells[metric] = f"{d['mean']:.3g}{sd} (n={d['n']})" if d["n"] else "–"
            table.append(cells)
    note = f"<p>Timepoint {H.esc(last)}.</p>" if last is not None else ""
    return note + H.table_html(table, ["group", *(["limb"] if limbs != [None] else []), *key])


def _qc_pictures(manifest, rows, scans_dir: Path) -> dict[str, Path]:
    """Scan name -> its qc_slices.png, for the ok scans that have one."""
    pictures = {}
    for mrow, row in zip(manifest.rows, rows):
        src = scans_dir / mrow.name / "qc_slices.png"
        if row["status"] == "ok" and src.is_file():
            pictures[mrow.name] = src
    return pictures


def _write_qc_page(path, manifest, rows, pictures: dict, groups) -> Path:
    """qc.html: every scan's QC slices on one page, group by group, each with its notes, to review a study's
    segmentations in one scroll (the pictures embedded: the page stands alone, as the report does)."""
    esc = H.esc
    sections = []
    for g in groups:
        parts = []
        for r in rows:
            if r["group"] != g or r["_name"] not in pictures:
                continue
            notes = "".join(f"<li>{esc(note)}</li>" for note in r.get("_notes", []))
            parts.append(f"<h3>{esc(_label(r))}</h3>" + (f"<ul>{notes}</ul>" if notes else "")
                         + H.img_tag(pictures[r["_name"]], alt=f"QC slices of {r['_name']}", width=1100))
        if parts:
            sections.append((f"Group {g}", "".join(parts)))
    summary = ("<p>Each analysed scan's QC slices: gray values with the bone (green), the periosteal envelope "
               "(yellow) and the marrow cavity (cyan) outlined, lytic bone and cortical defects (red, pink) and "
               "blastic bone (blue) filled, the lesion stage's modelled intact cortex dashed (bone missing inside it "
               "reads lytic, bone beyond it blastic); axial slices spread along the bone and through the largest "
               "lesion of each kind, and a long section. Check that the outlines follow the bone before trusting a scan's "
               "numbers.</p>")
    return H.write_report(path, title=f"ctbone QC slices: {manifest.path.parent.name}", summary=summary,
                          sections=sections)


def _write_html(path, manifest, rows, metric_names, key, summary, stats, plots, montages, *, parameters, version,
                control, limbs=(None,), qc=False):
    esc = H.esc
    n_ok = sum(r["status"] == "ok" for r in rows)
    failed = [r for r in rows if r["status"] != "ok"]
    groups = group_order(rows)
    counts = ", ".join(f"{esc(g)}: {sum(r['group'] == g for r in rows)}" for g in groups)
    summary_html = (f"<p>Manifest <code>{esc(manifest.path)}</code>: {len(rows)} scans ({counts}); "
                    f"{n_ok} analysed, <span class=\"{'err' if failed else ''}\">{len(failed)} failed</span>. "
                    f"Control group: {esc(control)}. ctbone {esc(version)}.</p>")
    if list(limbs) != [None]:
        summary_html += ("<p>Some animals have several limbs as rows: group statistics, plots and Prism tables are "
                         f"per limb ({esc(', '.join(limbs))}), so that no animal counts twice and injected and "
                         "contralateral limbs are not pooled.</p>")
    if len(limbs) == 2:
        summary_html += (f"<p>Each animal's limbs are also compared: paired tests ({esc(limbs[0])} vs "
                         f"{esc(limbs[1])}) in the statistics, and the % difference "
                         f"({esc(limbs[0])} − {esc(limbs[1])}) / {esc(limbs[1])} × 100 per animal in "
                         "limb_difference.csv, summarised and compared between groups (metrics ending in "
                         f"<code>{LIMB_DIFF_SUFFIX}</code>). The first limb named in the manifest is taken as "
                         "the tumour limb.</p>")
    sections = [("Key metrics", _key_table(rows, key, groups, limbs))] if key else []
    if plots:
        sections.append(("Group plots", "".join(f"<figure>{H.img_tag(p, alt=t, width=420)}"
                                                f"<figcaption>{esc(t)}</figcaption></figure>" for t, p in plots)))
    if montages:
        sections.append(("Snapshots", "".join(f"<h3>{esc(g)}</h3><div class=\"grid\">{H.img_tag(p, alt=g)}</div>"
                                              for g, p in montages)))
    key_stats = [s for s in stats if s["metric"] in key] or stats
    sections.append(("Statistics", H.table_html(key_stats, stats_columns(rows))
                     + "<p>All metrics: group_stats.csv.</p>"))
    key_summary = [s for s in summary if s["metric"] in key] or summary
    sections.append(("Group summary", H.table_html(key_summary, list(dict.fromkeys(k for s in summary for k in s)))))
    columns = [*IDENTITY, "status", *ACQUISITION[:3], *key]
    columns = [c for c in dict.fromkeys(columns) if any(c in r for r in rows)]
    qc_html = ("<p>Each scan's QC slices (gray values with the bone, envelope and marrow outlined and the lesions "
               "filled; check them before trusting a scan's numbers): qc.html, and scans/NAME/qc_slices.png.</p>"
               if qc else "")
    sections.append(("Per animal", H.table_html(rows, columns) + "<p>All columns: per_animal.csv.</p>" + qc_html))
    notes = [(r["_name"], note) for r in rows for note in r.get("_notes", [])]
    if notes:
        sections.append(("Notes", "<ul>" + "".join(f"<li><b>{esc(name)}</b>: {esc(note)}</li>" for name, note in notes)
                         + "</ul>"))
    if failed:
        items = "".join(f"<li>line {esc(m.line)}: <b>{esc(r['_name'])}</b> ({esc(r.get('scan'))}): "
                        f"<span class=\"err\">{esc(r['error'])}</span></li>"
                        for m, r in zip(manifest.rows, rows) if r["status"] != "ok")
        sections.append(("Failed scans", f"<ul>{items}</ul>"))
    thresholds = []
    for r in rows:
        if r["status"] == "ok":
            col = _threshold_column(r)
            thresholds.append((r["_name"], H.format_cell(r.get(col)) if col else "", r.get("threshold_method") or ""))
    sections.append(("Methods", H.methods_paragraph(version=version, parameters=parameters, thresholds=thresholds,
                                                    n_scans=len(rows), control=control)
                     + "<h3>Metric definitions</h3>" + H.definitions_html(metric_names)))
    title = f"ctbone study report: {manifest.path.parent.name}"
    return H.write_report(path, title=title, summary=summary_html, sections=sections)
