"""report.html: one self-contained file (images base64-embedded) summarising a study.

Every piece of text that came from outside ctbone (animal IDs, groups, manifest
columns, error messages, DICOM descriptions) goes through `html.escape`; the
page has no scripts and loads nothing.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from .safeio import atomic_write_text, format_cell

METRIC_DEFINITIONS = {
    "tv_mm3": "total volume: the periosteal envelope (cortical openings bridged) inside the ROI",
    "bv_mm3": "bone volume: voxels at or above the bone threshold inside the ROI",
    "bv_tv_pct": "BV/TV × 100",
    "tmd": "tissue mineral density: mean value of bone voxels in the image unit (blank for binary input)",
    "tb_bv_tv_pct": "trabecular bone volume fraction within the marrow cavity",
    "tb_th_mm": "trabecular thickness: mean local thickness (Hildebrand & Rüegsegger 1997)",
    "tb_sp_mm": "trabecular separation: mean local thickness of the marrow space",
    "ct_th_mm": "cortical thickness: mean local thickness of the cortex",
    "ct_po_pct": "cortical porosity: pores / cortical compartment × 100 (canals under ~4 voxels across are not resolved)",
    "cortical_defect_count": "openings through the whole cortex, each at least the minimum defect area on the "
                             "periosteal surface",
    "cortical_defect_area_mm2": "total area of the cortical openings on the bridged periosteal surface",
    "cortical_defect_pct": "cortical defect area as % of the periosteal surface",
    "lytic_volume_mm3": "bone missing where intact cortex is expected (inside the bridged envelope, outside the "
                        "marrow cavity), in regions of at least the minimum lesion volume",
    "blastic_volume_mm3": "abnormal bone outside the smooth periosteal envelope",
    "bone_lost_mm3": "reference bone absent in the registered scan (contralateral limb or baseline)",
    "bone_gained_mm3": "bone present in the scan and absent in the registered reference",
}

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;line-height:1.4}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f3f3f3}td.t{text-align:left}.err{color:#b00}.grid img{max-width:380px;margin:4px}
.scroll{overflow-x:auto}h2{border-bottom:1px solid #ddd;margin-top:2em}figure{display:inline-block;margin:4px}"""


def esc(value) -> str:
    """HTML-escaped text of any value (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def img_tag(path, *, alt: str = "", width: int | None = None) -> str:
    """An <img> with the PNG file embedded as a data: URI ('' when the file is missing)."""
    path = Path(path)
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}"{size}>'


def table_html(rows, columns, *, text_columns=()) -> str:
    """A table of rows (dicts), floats to 4 significant digits, every cell escaped."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if isinstance(value, float) and math.isfinite(value):
                text = f"{value:.4g}"  # for reading; the CSVs keep full precision
            else:
                text = value if isinstance(value, str) else format_cell(value)
            cls = ' class="t"' if (c in text_columns or isinstance(value, str)) else ""
            cells.append(f"<td{cls}>{esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def methods_paragraph(*, version: str, parameters: dict, thresholds: list[tuple[str, str, str]], n_scans: int,
                      control: str | None) -> str:
    """The methods text: software version, every parameter, the threshold used per scan, and the statistics."""
    params = ", ".join(f"{esc(k)} = {esc(v)}" for k, v in parameters.items())
    per_scan = "; ".join(f"{esc(name)}: {esc(value)} ({esc(method)})" for name, value, method in thresholds)
    return (
        f"<p>Micro-CT scans ({n_scans}) were analysed with ctbone {esc(version)}. Images were smoothed with a "
        f"Gaussian filter and segmented at a global bone threshold; the periosteal envelope was computed with "
        f"cortical openings up to the maximum defect diameter bridged; cortex, marrow cavity and trabecular bone "
        f"were separated inside it, channels narrower than 70 µm through the cortex (vascular canals) being cortex. "
        f"Cortical porosity counts the cortex's non-bone voxels below its surface layer, lesion regions excluded. "
        f"Standard morphometry follows the ASBMR nomenclature (Bouxsein et al., J Bone "
        f"Miner Res 2010); thicknesses and separations are direct 3D local-thickness means (Hildebrand &amp; "
        f"Rüegsegger, J Microsc 1997). Parameters: {params}.</p>"
        f"<p>Threshold used per scan (value, method): {per_scan or 'none'}.</p>"
        f"<p>Statistics: per metric, groups were compared with Welch's t-test and the Mann–Whitney U test (two "
        f"groups), or Welch's ANOVA and the Kruskal–Wallis test followed by pairwise comparisons of each group "
        f"with the control group ({esc(control)}) (three or more groups); pairwise p-values were adjusted with "
        f"Holm's method within each metric and test. Effect sizes are Hedges' g (group − control) with 95 % "
        f"confidence intervals (Hedges &amp; Olkin 1985). Summary statistics use the sample SD (n − 1).</p>"
    )


def definitions_html(metrics) -> str:
    """A list of the definitions of those ``metrics`` that have one in `METRIC_DEFINITIONS`."""
    items = [f"<li><b>{esc(m)}</b>: {esc(METRIC_DEFINITIONS[m])}</li>" for m in metrics if m in METRIC_DEFINITIONS]
    return f"<ul>{''.join(items)}</ul>" if items else ""


def write_report(path, *, title: str, summary: str, sections: list[tuple[str, str]]) -> Path:
    """Assemble and write report.html atomically.

    Parameters
    ----------
    title : str
        Untrusted text allowed (escaped here).
    summary : str
        Already-safe HTML (built with `esc`).
    sections : list of (heading, safe HTML)
        Headings are escaped here; bodies must be built with `esc` / `table_html` / `img_tag`.
    """
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
             f"style-src 'unsafe-inline'\"><title>{esc(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1>", summary]
    for heading, body in sections:
        anchor = esc(heading.lower().replace(" ", "-"))
        parts.append(f'<h2 id="{anchor}">{esc(heading)}</h2>\n{body}')
    parts.append("</body></html>\n")
    return atomic_write_text(path, "\n".join(parts))
