"""GraphPad Prism ``.pzfx`` (XML) export: one Column table per key metric, groups as columns, animals as rows.

Written with xml.etree so every text (group names, animal IDs) is escaped.
Prism reads the ``Table`` elements of the ``GraphPadPrismFile`` (format 5.00)
schema: ``YColumn`` per group with a ``Title`` and one ``d`` per row; row
titles go in a ``RowTitlesColumn``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from .safeio import atomic_write_bytes, format_float


def _column(parent, tag: str, title: str | None, values, *, width: int = 81):
    if title is None:  # the row-title column has neither title nor number format
        col = ET.SubElement(parent, tag, {"Width": str(width)})
    else:
        col = ET.SubElement(parent, tag, {"Width": str(width), "Decimals": "6", "Subcolumns": "1"})
        ET.SubElement(col, "Title").text = title
    sub = ET.SubElement(col, "Subcolumn")
    for v in values:
        d = ET.SubElement(sub, "d")
        if isinstance(v, float):
            if math.isfinite(v):
                d.text = format_float(v)
        elif v is not None:
            d.text = str(v)
    return col


def pzfx_bytes(tables: dict[str, dict[str, list[tuple[str, float]]]], *, title: str = "ctbone study") -> bytes:
    """The XML of a Prism file.

    Parameters
    ----------
    tables : dict
        Metric name -> {group -> [(animal label, value), ...]} (groups in column order).
    """
    root = ET.Element("GraphPadPrismFile", {"PrismXMLVersion": "5.00"})
    created = ET.SubElement(root, "Created")
    ET.SubElement(created, "OriginalVersion", {"CreatedByProgram": "ctbone", "CreatedByVersion": "1",
                                               "Login": "", "DateTime": ""})
    info_seq = ET.SubElement(root, "InfoSequence")
    ET.SubElement(info_seq, "Ref", {"ID": "Info0", "Selected": "1"})
    info = ET.SubElement(root, "Info", {"ID": "Info0"})
    ET.SubElement(info, "Title").text = title
    ET.SubElement(info, "Notes").text = "Written by ctbone: one column table per metric; rows are animals."
    seq = ET.SubElement(root, "TableSequence")
    for i in range(len(tables)):
        ET.SubElement(seq, "Ref", {"ID": f"Table{i}", **({"Selected": "1"} if i == 0 else {})})
    for i, (metric, groups) in enumerate(tables.items()):
        table = ET.SubElement(root, "Table", {"ID": f"Table{i}", "XFormat": "none", "TableType": "OneWay",
                                              "EVFormat": "AsteriskAfterNumber"})
        ET.SubElement(table, "Title").text = metric
        n_rows = max((len(v) for v in groups.values()), default=0)
        # Prism rows are shared by all columns: a row title is the list of the animals on that row
        titles = [" / ".join(vals[r][0] for vals in groups.values() if r < len(vals)) for r in range(n_rows)]
        _column(table, "RowTitlesColumn", None, titles, width=120)
        for group, vals in groups.items():
            values = [float(v) for _, v in vals] + [None] * (n_rows - len(vals))
            _column(table, "YColumn", group, values)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode("utf-8") + b"\n"


def write_pzfx(path, tables, *, title: str = "ctbone study"):
    """Write `pzfx_bytes` atomically to ``path``."""
    return atomic_write_bytes(path, pzfx_bytes(tables, title=title))
