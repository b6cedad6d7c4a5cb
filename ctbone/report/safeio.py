"""Safe output writing: atomic files, spreadsheet-safe CSV cells, fixed float format, no writes into inputs.

Every output of ctbone goes through here so that a killed run never leaves a
half-written file under the final name, re-runs give byte-identical CSVs, and
untrusted text (animal IDs, DICOM PatientName) cannot become a spreadsheet formula.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..atomic_write import FILE_MODE, atomic_write_bytes, replace_into, written_into  # noqa: F401 (re-exported)
from ..errors import OutputError

# cells starting with one of these are executed as formulas by Excel / LibreOffice / Sheets
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# significant digits of every float written to CSV/JSON: enough for any metric, fixed so re-runs match byte for byte
FLOAT_DIGITS = 10


def format_float(value: float) -> str:
    """A float as text with `FLOAT_DIGITS` significant digits ('' for NaN, 'inf'/'-inf' kept)."""
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:.{FLOAT_DIGITS}g}"
    return "0" if text == "-0" else text


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def format_cell(value) -> str:
    """One CSV cell: numbers in the fixed format, text neutralised against formula injection.

    A text cell that starts with ``= + - @`` (or tab / carriage return) gets a leading single
    quote, unless the text is a plain number such as ``-3.5`` (a real negative value).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return str(int(value))
    if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f"):
        return format_float(float(value))
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    if text.startswith(FORMULA_PREFIXES) and not _is_number_text(text):
        text = "'" + text
    return text


def atomic_write_text(path, text: str) -> Path:
    """`atomic_write_bytes` for UTF-8 text with \\n line endings."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_png(fig, path) -> Path:
    """A matplotlib figure as one PNG file, written atomically (no half-written picture is ever left at ``path``)."""
    with written_into(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return Path(path)


def atomic_copy(src, dst) -> Path:
    """Copy a file atomically (read fully, then `atomic_write_bytes`)."""
    return atomic_write_bytes(dst, Path(src).read_bytes())


def csv_text(rows: Iterable[Mapping], columns: Sequence[str]) -> str:
    """Rows as CSV text: header ``columns``, cells via `format_cell`, missing keys empty, \\n line ends."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([format_cell(c) for c in columns])
    for row in rows:
        writer.writerow([format_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def write_csv(path, rows: Iterable[Mapping], columns: Sequence[str]) -> Path:
    """Write rows to ``path`` atomically (see `csv_text`)."""
    return atomic_write_text(path, csv_text(list(rows), columns))


def json_ready(value):
    """``value`` with numpy scalars/arrays, tuples, Paths and non-finite floats made JSON-safe and stable."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)) and not isinstance(value, str):
        items = sorted(value, key=str) if isinstance(value, set) else value
        return [json_ready(v) for v in items]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return json_ready(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(format_float(value))
    if isinstance(value, Path):
        return str(value)
    return str(value)


def write_json(path, data) -> Path:
    """Write ``data`` as indented JSON atomically (keys in insertion order, floats fixed)."""
    return atomic_write_text(path, json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n")


def _input_folders(inputs: Iterable) -> list[Path]:
    folders = []
    for item in inputs:
        if item is None or item == "":
            continue
        p = Path(item).expanduser().resolve()
        # a DICOM or image-stack folder is an input folder; a single-file input protects only the file itself
        folders.append(p)
    return folders


def check_dir_can_be_made(outdir) -> Path:
    """``outdir`` as a Path, or `OutputError` when it cannot become a folder: it, or a folder on its way, is a
    file, or the nearest existing folder is not writable. Nothing is created (a command checks before its work)."""
    outdir = Path(outdir)
    existing = outdir
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "a file of that name is in the way" if existing == outdir else f"{existing} is a file, not a folder"
        raise OutputError(f"{outdir}: cannot create the output folder ({where}). Potential fix: choose another "
                          f"-o folder")
    if existing != outdir and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{outdir}: cannot create the output folder (no permission to write in {existing}). "
                          f"Potential fix: choose a writable -o folder")
    return outdir


def make_output_dir(outdir) -> Path:
    """Create the output folder (and its parents) if need be; `OutputError` saying why when it cannot be."""
    outdir = check_dir_can_be_made(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{outdir}: cannot create the output folder ({exc.strerror}). Potential fix: choose a "
                          f"writable -o folder") from exc
    return outdir


def check_output_dir(outdir, inputs: Iterable, *, what: str = "output folder") -> Path:
    """Refuse an output folder that is an input, or lies inside an input folder.

    Parameters
    ----------
    outdir : path
        Where outputs will go.
    inputs : iterable of path
        Scan paths (folders or files) and other inputs that must never be written into.

    Returns
    -------
    Path
        ``outdir`` resolved.

    Raises
    ------
    OutputError
    """
    out = Path(outdir).expanduser().resolve()
    for src in _input_folders(inputs):
        if out == src:
            raise OutputError(f"{out}: the {what} is an input ({src}); ctbone never writes into its inputs. "
                              f"Potential fix: choose another -o folder, e.g. {src.parent / (src.name + '_ctbone')}")
        if src.is_dir() and out.is_relative_to(src):
            raise OutputError(f"{out}: the {what} is inside the input folder {src}; ctbone never writes into its "
                              f"inputs. Potential fix: choose an -o folder outside {src}")
        if not src.is_dir() and out.is_relative_to(src):
            raise OutputError(f"{out}: the {what} is under the input file {src}. "
                              f"Potential fix: choose another -o folder")
    return out
