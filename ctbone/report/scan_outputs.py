"""Outputs of one analysed scan: metrics.csv/json, lesions.csv, masks/*.nii.gz, snapshot.png.

Every file is written under a temporary name and renamed into place, so an
interrupted run leaves either the complete file or none. `SCAN_OUTPUT_FILES`
names the files whose presence marks a scan as complete for the batch resume.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..result import LESION_COLUMNS, AnalysisResult
from .safeio import (atomic_write_bytes, check_output_dir, csv_text, make_output_dir, write_csv, write_json,
                     written_into)

log = logging.getLogger(__name__)

# masks are compressed two at a time (SimpleITK's writer releases the GIL): the nine masks of the 512^3 bench
# scan took 1.55 s one after the other, 0.80 s so
MASK_WRITE_THREADS = 2
# written last: its presence means every other file of the scan is complete
COMPLETE_MARKER = "metrics.json"


def ctbone_version() -> str:
    """The installed ctbone version (``0.0.0+unknown`` from a bare source tree)."""
    from .. import __version__

    return __version__


def provenance(result: AnalysisResult) -> dict:
    """Acquisition columns of a result: voxel_mm (per axis), n_slices, series_uid, threshold_method, image_unit,
    input_format, voxel_size_from ("header", "rec.log" or "given": --spacing or spacing_mm)."""
    image = result.image
    meta = image.meta or {}
    # spacings often come from float32 headers (NIfTI): 7 significant digits is all they hold
    z, y, x = (float(f"{s:.7g}") for s in image.spacing)
    return {
        "voxel_mm": z if abs(z - y) < 1e-9 and abs(z - x) < 1e-9 else f"{z:.6g}x{y:.6g}x{x:.6g}",
        "voxel_z_mm": z, "voxel_y_mm": y, "voxel_x_mm": x,
        "n_slices": meta.get("n_slices", result.info.get("n_slices", image.shape[0])),
        "series_uid": result.info.get("series_uid") or meta.get("series_uid") or "",
        "series_description": meta.get("series_description", ""),
        "threshold_method": result.info.get("threshold_method", ""),
        "image_unit": image.unit,
        # where the scan and its voxel size came from: a stack's voxel size is the user's (--spacing) or a log's
        "input_format": meta.get("format", ""),
        "voxel_size_from": meta.get("spacing_source") or ("header" if meta.get("format") else ""),
    }


def lesion_columns(lesions) -> list[str]:
    """`LESION_COLUMNS` first, then any other keys the lesions carry, in first-seen order."""
    extra = [k for row in lesions for k in row if k not in LESION_COLUMNS]
    return list(LESION_COLUMNS) + list(dict.fromkeys(extra))


def _mask_image(volume):
    """The mask as a uint8 SimpleITK image (a copy of its array)."""
    import SimpleITK as sitk

    image = volume.to_sitk()
    return image if image.GetPixelID() == sitk.sitkUInt8 else sitk.Cast(image, sitk.sitkUInt8)


def _write_image(image, path: Path) -> None:
    import SimpleITK as sitk

    with written_into(path, suffix=".nii.gz") as tmp:
        sitk.WriteImage(image, tmp, True)


def _write_snapshot(result: AnalysisResult, path: Path) -> bool:
    try:
        from ..render import render_snapshot
    except ImportError:
        log.warning("ctbone.render.render_snapshot is not available; no snapshot for %s", path.parent)
        return False
    try:
        render_snapshot(result, path)  # written atomically (`render.snapshot.write_png`)
        return True
    except Exception as exc:  # noqa: BLE001 - a picture is never worth losing the numbers of a scan
        log.warning("%s: snapshot not rendered (%s: %s)", path, type(exc).__name__, exc)
        return False


def _write_qc_slices(result: AnalysisResult, path: Path) -> bool:
    """The 2D QC picture (`qc_slices.write_qc_slices`); a warning, not an error, when it cannot be drawn."""
    from .qc_slices import write_qc_slices

    try:
        write_qc_slices(result, path)
        return True
    except Exception as exc:  # noqa: BLE001 - a picture is never worth losing the numbers of a scan
        log.warning("%s: QC slices not drawn (%s: %s)", path, type(exc).__name__, exc)
        return False


# values of masks/lesions.nii.gz, one label map for 3D Slicer / ITK-SNAP (a defect is also lytic: it wins)
LESION_LABELS = {"lytic": 1, "blastic": 2, "defects": 3}


def lesion_label_map(masks: dict):
    """One uint8 label map of the lesion masks (`LESION_LABELS`), or None without lesion masks."""
    present = [name for name in LESION_LABELS if name in masks]
    if not present:
        return None
    first = masks[present[0]]
    labels = np.zeros(first.shape, np.uint8)
    for name in present:
        labels[np.asarray(masks[name].array) > 0] = LESION_LABELS[name]
    return first.with_array(labels, unit="mask")


def read_scan_record(folder) -> dict:
    """A scan folder's completed record (its ``metrics.json``) as a dict; ValueError saying why when it is missing,
    not JSON or not a ctbone record (a damaged or foreign file: the batch then analyses the scan again)."""
    path = Path(folder) / COMPLETE_MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"{path.name}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ValueError(f"{path.name}: not a ctbone scan record (no metrics)")
    return data


def write_scan_outputs(result: AnalysisResult, outdir, *, render: bool = True, extra: dict | None = None,
                       inputs=()) -> dict[str, Path]:
    """Write every output file of one analysed scan into ``outdir``.

    Parameters
    ----------
    result : AnalysisResult
        From `ctbone.analyze`.
    outdir : path
        Output folder (created). Refused when it is, or is inside, an input folder.
    render : bool, keyword-only
        Also write the pictures: ``snapshot.png`` via `ctbone.render.render_snapshot`, and ``qc_slices.png``
        (2D slices with the outlines and lesions, `ctbone.report.qc_slices`).
    extra : dict, keyword-only
        Identity columns (e.g. animal_id, group, limb) put first in metrics.csv and in metrics.json.
    inputs : iterable of path, keyword-only
        Further input paths that must not contain ``outdir`` (the scan source is always checked).

    Returns
    -------
    dict of str -> Path
        "metrics_csv", "metrics_json", "lesions_csv", "snapshot" and "qc_slices" (when rendered), "mask_<name>".

    Raises
    ------
    OutputError
        ``outdir`` is an input folder or inside one.
    """
    sources = [result.info.get("source"), (result.image.meta or {}).get("source"), *inputs]
    outdir = make_output_dir(check_output_dir(outdir, [s for s in sources if s]))
    extra = dict(extra or {})
    written: dict[str, Path] = {}
    # the completeness marker goes first to be removed, last to be written
    (outdir / COMPLETE_MARKER).unlink(missing_ok=True)

    prov = provenance(result)
    row = {**extra, **prov, **result.metrics}
    written["metrics_csv"] = write_csv(outdir / "metrics.csv", [row], list(row))
    lesions = list(result.lesions)
    written["lesions_csv"] = atomic_write_bytes(
        outdir / "lesions.csv", csv_text(lesions, lesion_columns(lesions)).encode("utf-8"))

    masks_dir = outdir / "masks"
    masks_dir.mkdir(exist_ok=True)
    label_map = lesion_label_map(result.masks)
    names = [*result.masks, *(["lesions"] if label_map is not None else [])]
    paths = {name: masks_dir / f"{name}.nii.gz" for name in names}
    with ThreadPoolExecutor(max_workers=MASK_WRITE_THREADS) as pool:
        # each mask read (the compartments are made from bits when read: `MaskSet`) and copied into its image here,
        # in this thread, as few at a time as are being compressed: not every mask at once
        pending = []
        for name in names:
            image = _mask_image(label_map if name == "lesions" else result.masks[name])
            pending.append(pool.submit(_write_image, image, paths[name]))
            del image
            if len(pending) == MASK_WRITE_THREADS:
                pending.pop(0).result()
        for job in pending:
            job.result()
    written.update({f"mask_{name}": path for name, path in paths.items()})

    if render and _write_snapshot(result, outdir / "snapshot.png"):
        written["snapshot"] = outdir / "snapshot.png"
    if render and _write_qc_slices(result, outdir / "qc_slices.png"):
        written["qc_slices"] = outdir / "qc_slices.png"

    info = dict(result.info)
    payload = {
        "ctbone_version": ctbone_version(),
        "extra": extra,
        "provenance": prov,
        "metrics": dict(result.metrics),
        "info": info,
        "options": result.options.to_dict() if result.options is not None else {},
        "image": {"shape_zyx": list(result.image.shape), "spacing_zyx_mm": list(result.image.spacing),
                  "origin_xyz_mm": list(result.image.origin), "unit": result.image.unit},
        "n_lesions": len(lesions),
        "files": sorted(p.relative_to(outdir).as_posix() for p in written.values()),
    }
    written["metrics_json"] = write_json(outdir / COMPLETE_MARKER, payload)
    return written
