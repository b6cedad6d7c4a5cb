"""Study manifest: read a CSV of scans, validate every row, report all problems at once.

Required columns: animal_id, group, scan (path relative to the manifest's folder).
Optional: limb, timepoint, reference, roi_mm ("START:END" in mm, or "metaphyseal"), threshold ("auto" or a
value), mirror_reference (yes/no), bone and reference_bone (which bone of a scan holding several: 1, 2, ...
along x), spacing_mm (the voxel size of an image stack, which carries none: one value or "Z Y X" in mm). Any
other column is carried through unchanged.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ManifestError

REQUIRED = ("animal_id", "group", "scan")
OPTIONAL = ("limb", "timepoint", "reference", "roi_mm", "threshold", "mirror_reference", "bone", "reference_bone",
            "spacing_mm")
_TRUE = {"yes", "y", "true", "1"}
_FALSE = {"no", "n", "false", "0", ""}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ManifestRow:
    """One validated manifest row.

    Attributes
    ----------
    line : int
        Line number in the CSV file (header = 1).
    columns : dict
        Every column as read (text), in file order: carried to the outputs.
    scan, reference : Path
        Resolved input paths (reference None when absent).
    roi_mm : (float, float), "metaphyseal" or None
    threshold : "auto", float or None (None: use the batch option)
    mirror_reference : bool or None (None: use the batch option)
    bone, reference_bone : int or None (None: use the batch option)
    spacing_mm : (z, y, x) floats or None (None: use the batch option)
    """

    line: int
    columns: dict
    animal_id: str
    group: str
    scan: Path
    limb: str = ""
    timepoint: str = ""
    reference: Path | None = None
    roi_mm: tuple[float, float] | str | None = None
    threshold: str | float | None = None
    mirror_reference: bool | None = None
    bone: int | None = None
    reference_bone: int | None = None
    spacing_mm: tuple[float, float, float] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.animal_id, self.limb, self.timepoint)

    @property
    def name(self) -> str:
        """Filesystem-safe ``ANIMAL[_LIMB][_TIMEPOINT]`` used for the per-scan folder and snapshot."""
        parts = [p for p in self.key if p]
        return "_".join(_UNSAFE.sub("-", p).strip(".-") or "x" for p in parts)

    def overrides(self) -> dict:
        """Per-row analysis option overrides (only those set in the manifest)."""
        out = {}
        if self.roi_mm is not None:
            out["roi_mm"] = self.roi_mm
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.mirror_reference is not None:
            out["mirror_reference"] = self.mirror_reference
        for name in ("bone", "reference_bone", "spacing_mm"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: its path, folder, column names (file order) and rows (file order)."""

    path: Path
    columns: list[str]
    rows: list[ManifestRow] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(r.group for r in self.rows))


AUTOMATIC_ROIS = ("metaphyseal",)


def parse_roi_mm(text: str) -> tuple[float, float] | str:
    """``"START:END"`` (mm from the first slice, 0 <= START < END) or an automatic ROI name ("metaphyseal").

    Raises ValueError for anything else (the caller words the message for its context).
    """
    name = text.strip().lower()
    if name in AUTOMATIC_ROIS:
        return name
    parts = name.replace(",", ":").split(":")
    if len(parts) != 2:
        raise ValueError
    start, end = (float(p) for p in parts)
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise ValueError
    return start, end



def parse_bone(text: str) -> int:
    """A bone number (1, 2, ... counted along x); ValueError otherwise."""
    value = float(text)
    if not (math.isfinite(value) and value == int(value) and value >= 1):
        raise ValueError
    return int(value)


def parse_spacing_mm(text: str) -> tuple[float, float, float]:
    """A voxel size: one value (isotropic) or three (z, y, x), mm, separated by commas, semicolons, spaces or 'x';
    ValueError otherwise."""
    values = [float(v) for v in re.split(r"[,;\sx]+", text.strip()) if v]
    if len(values) not in (1, 3) or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError
    return (values[0],) * 3 if len(values) == 1 else tuple(values)


def _delimiter(text: str) -> str:
    """The cell separator: ',' unless the header names the required columns only when split at ';' (what
    spreadsheet programs write as "CSV" in locales with a decimal comma) or at a tab."""
    first = text.splitlines()[0] if text else ""
    for delimiter in (",", ";", "\t"):
        if set(REQUIRED) <= {cell.strip() for cell in next(csv.reader([first], delimiter=delimiter), [])}:
            return delimiter
    return ","


def _parse_threshold(text: str) -> str | float:
    if text.lower() == "auto":
        return "auto"
    value = float(text)
    if not math.isfinite(value):
        raise ValueError
    return value


def _resolve(text: str, folder: Path, allow_absolute: bool) -> tuple[Path, str | None]:
    """The path of a manifest cell and a problem (None when fine)."""
    if "\x00" in text:  # no file system takes it (and pathlib raises ValueError on it)
        return Path(text.replace("\x00", "")), f"path {text!r} holds a NUL character (a damaged file?)"
    raw = Path(text).expanduser()
    if raw.is_absolute():
        if not allow_absolute:
            return raw, f"absolute path {text!r} not allowed (pass --allow-absolute-paths)"
        return raw.resolve(), None
    path = (folder / raw).resolve()
    if not allow_absolute and not path.is_relative_to(folder.resolve()):
        return path, f"path {text!r} leaves the study folder {folder} (pass --allow-absolute-paths)"
    return path, None


def read_manifest(path, *, allow_absolute_paths: bool = False, control: str | None = None) -> Manifest:
    """Read and validate a study manifest; every problem is reported in one `ManifestError`.

    Parameters
    ----------
    path : path
        The manifest CSV (UTF-8, optional BOM). Scan paths are relative to its folder.
    allow_absolute_paths : bool, keyword-only
        Accept absolute scan/reference paths and paths outside the manifest's folder.
    control : str, keyword-only
        The control group; an error when no row has this group.

    Returns
    -------
    Manifest

    Raises
    ------
    ManifestError
        Its message lists every problem with its line number; ``.problems`` holds them as a list.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found. Potential fix: give the path of the study CSV")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest as UTF-8 text ({exc}). "
                            f"Potential fix: save it as CSV UTF-8") from exc
    delimiter = _delimiter(text)
    # a ';' file comes from a decimal-comma locale: its numbers may read 0,5 (a single spacing_mm too)
    number = (lambda t: t.replace(",", ".")) if delimiter == ";" else (lambda t: t)
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise ManifestError(f"{path}: the manifest is empty. Potential fix: add a header line "
                            f"'{','.join(REQUIRED)}' and one row per scan")
    columns = [h.strip() for h in header]
    problems: list[str] = []
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        problems.append(f"line 1: missing column(s) {', '.join(missing)}")
    dup_cols = sorted({c for c in columns if columns.count(c) > 1})
    if dup_cols:
        problems.append(f"line 1: repeated column(s) {', '.join(dup_cols)}")
    if problems:
        _raise(path, problems)

    folder = path.parent
    rows: list[ManifestRow] = []
    seen: dict[tuple, int] = {}
    names: dict[str, int] = {}
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(f"line {line}: {exc}")
            break
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) > len(columns):
            problems.append(f"line {line}: {len(cells)} cells but {len(columns)} columns")
            continue
        values = {c: (cells[i].strip() if i < len(cells) else "") for i, c in enumerate(columns)}
        row_problems = []
        for c in REQUIRED:
            if not values[c]:
                row_problems.append(f"empty {c}")
        scan = reference = None
        if values["scan"]:
            scan, problem = _resolve(values["scan"], folder, allow_absolute_paths)
            if problem:
                row_problems.append(f"scan {problem}")
            elif not scan.exists():
                row_problems.append(f"scan {values['scan']!r} not found (looked for {scan})")
        if values.get("reference"):
            reference, problem = _resolve(values["reference"], folder, allow_absolute_paths)
            if problem:
                row_problems.append(f"reference {problem}")
            elif not reference.exists():
                row_problems.append(f"reference {values['reference']!r} not found (looked for {reference})")
        roi = threshold = mirror = None
        if values.get("roi_mm"):
            try:
                roi = parse_roi_mm(number(values["roi_mm"]))
            except ValueError:
                row_problems.append(f"roi_mm {values['roi_mm']!r} is not START:END in mm with 0 <= START < END, "
                                    f"nor 'metaphyseal'")
        if values.get("threshold"):
            try:
                threshold = _parse_threshold(number(values["threshold"]))
            except ValueError:
                row_problems.append(f"threshold {values['threshold']!r} is neither 'auto' nor a number")
        if "mirror_reference" in values:
            flag = values["mirror_reference"].lower()
            if flag in _TRUE:
                mirror = True
            elif flag in _FALSE:
                mirror = None if flag == "" else False
            else:
                row_problems.append(f"mirror_reference {values['mirror_reference']!r} is not yes/no")
        per_row = {}  # bone, reference_bone, spacing_mm
        for name in ("bone", "reference_bone"):
            if values.get(name):
                try:
                    per_row[name] = parse_bone(values[name])
                except ValueError:
                    row_problems.append(f"{name} {values[name]!r} is not a bone number (1, 2, ... along x)")
        if values.get("spacing_mm"):
            try:
                cell = values["spacing_mm"]
                per_row["spacing_mm"] = parse_spacing_mm(number(cell) if cell.count(",") == 1 else cell)
            except ValueError:
                row_problems.append(f"spacing_mm {values['spacing_mm']!r} is not one or three positive sizes in mm")
        key = (values["animal_id"], values.get("limb", ""), values.get("timepoint", ""))
        if all(values[c] for c in REQUIRED):
            if key in seen:
                row_problems.append(f"duplicate of line {seen[key]} (same animal_id, limb, timepoint)")
            else:
                seen[key] = line
        problems.extend(f"line {line}: {p}" for p in row_problems)
        if row_problems:
            continue
        row = ManifestRow(line=line, columns=values, animal_id=values["animal_id"], group=values["group"], scan=scan,
                          limb=values.get("limb", ""), timepoint=values.get("timepoint", ""), reference=reference,
                          roi_mm=roi, threshold=threshold, mirror_reference=mirror, **per_row)
        # folders must differ on case-insensitive file systems too (macOS, Windows)
        if row.name.lower() in names:
            problems.append(f"line {line}: output folder name {row.name!r} clashes with line {names[row.name.lower()]}")
            continue
        names[row.name.lower()] = line
        rows.append(row)

    if not rows and not problems:
        problems.append("no scan rows after the header")
    if control is not None and rows and not problems and control not in {r.group for r in rows}:
        groups = ", ".join(dict.fromkeys(r.group for r in rows))
        problems.append(f"control group {control!r} not in the manifest (groups: {groups})")
    if problems:
        _raise(path, problems)
    return Manifest(path=path, columns=columns, rows=rows)


def _raise(path: Path, problems: list[str]):
    n = len(problems)
    error = ManifestError(f"{path}: {n} problem{'s' if n > 1 else ''}: " + "; ".join(problems)
                          + ". Potential fix: correct these rows and run again (nothing was analysed)")
    error.problems = list(problems)
    raise error
