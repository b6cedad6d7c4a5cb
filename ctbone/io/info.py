"""`scan_info`: what a path holds, without decoding the whole scan (for ``ctbone info``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GeometryError, ScanReadError, SeriesError, VoxelSizeMissingError


def _dicom_info(path: Path, series, allow_nonuniform: bool = False) -> dict:
    from .dicom import _attach_frame_data, _decode, choose_series, group_series, scan_headers, slice_geometry
    from .formats import no_dicom_fix
    from .units import decide_unit

    headers, skipped = scan_headers(path)
    if not headers:
        raise SeriesError(f"{path}: no DICOM image files found ({len(skipped)} file(s) skipped). "
                          f"Potential fix: {no_dicom_fix(path)}; --verbose lists the files.")
    groups = group_series(headers)
    info = {"path": str(path), "format": "dicom", "series": [g.describe() for g in groups],
            "skipped": [{"file": f, "reason": r} for f, r in skipped], "chosen": None, "problem": None}
    try:
        chosen = choose_series(groups, series, path)
    except SeriesError as exc:
        info["problem"] = str(exc)
        return info
    info["chosen"] = chosen.key
    info["chosen_reason"] = "requested with --series" if series is not None else "largest 3D series"
    h = chosen.first
    try:
        _attach_frame_data(chosen)
        geometry = slice_geometry(chosen, path, allow_nonuniform=allow_nonuniform)
        if not geometry.uniform:  # read_scan resamples onto the median spacing over the same extent
            along = geometry.positions @ geometry.direction[:, 2]
            n_resampled = int(np.floor((along[-1] - along[0]) / geometry.spacing_z + 1e-6)) + 1
            info["nonuniform"] = {"slices_in_files": len(geometry.order), "resampled_slices": n_resampled,
                                  "gaps_mm": sorted({round(float(g), 6) for g in np.diff(along)})[:10]}
        info["geometry"] = {
            "shape_zyx": [info["nonuniform"]["resampled_slices"] if "nonuniform" in info else len(geometry.order),
                          h.rows, h.cols],
            "spacing_zyx_mm": [geometry.spacing_z, *h.pixel_spacing],
            "origin_xyz_mm": [float(v) for v in geometry.positions[0]],
            "direction": geometry.direction.round(6).tolist(),
        }
    except GeometryError as exc:
        info["problem"] = str(exc)
    middle_header, frame = (geometry.order[len(geometry.order) // 2] if info["problem"] is None
                            else (h, 0))
    slopes = sorted({x.slope for x in chosen.headers})
    intercepts = sorted({x.intercept for x in chosen.headers})
    info["rescale"] = {"slopes": slopes[:5], "intercepts": intercepts[:5], "rescale_type": h.rescale_type,
                       "varies_per_slice": len(slopes) > 1 or len(intercepts) > 1}
    try:
        _, pixels = _decode(middle_header.path, middle_header.transfer_syntax)
        sample = pixels.reshape(-1, h.rows, h.cols)[frame].astype(np.float32) * middle_header.slope \
            + middle_header.intercept
        unit, reason = decide_unit(modality=h.modality, rescale_type=h.rescale_type, manufacturer=h.manufacturer,
                                   intercepts=np.array(intercepts), array=sample[None], extra=h.extra)
    except ScanReadError as exc:
        unit, reason = "unknown", str(exc)
    if info.get("geometry"):
        slab_capable = info["problem"] is None and "nonuniform" not in info and all(x.frames == 1 for x in chosen.headers)
        info["reading"] = _reading_plan(int(np.prod(info["geometry"]["shape_zyx"])), slab_capable)
    info.update({"unit": unit, "unit_reason": reason, "vendor": h.manufacturer, "modality": h.modality,
                 "series_uid": h.series_uid, "series_description": h.description,
                 "scanco": {k: v for k, v in h.extra.items() if k.startswith("scanco")} or None})
    return info


def _reading_plan(n_voxels: int, slab_capable: bool) -> dict:
    """How `open_scan` would read a scan of ``n_voxels``: in memory, or slab by slab (and why)."""
    from .slabs import IN_MEMORY_BYTES_PER_VOXEL, available_memory_bytes, fits_in_memory

    available = available_memory_bytes()
    by_slabs = slab_capable and not fits_in_memory(n_voxels)
    return {"mode": "slab by slab" if by_slabs else "in memory",
            "in_memory_need_gb": round(n_voxels * IN_MEMORY_BYTES_PER_VOXEL / 1e9, 2),
            "available_gb": round(available / 1e9, 2) if available is not None else None,
            "slabs_possible": slab_capable}


def _stand_in_voxel_size(path: Path):
    """(None, None), or for an image stack that carries no voxel size and has no Bruker log: (1.0, what is
    missing). Such a stack is described all the same (slices, shape, values), its voxel size unknown."""
    from .bruker_log import read_rec_log
    from .stacks import is_stack, stack_spacing

    if not is_stack(path):
        return None, None
    try:
        stack_spacing(path, None, read_rec_log(path if path.is_dir() else path.parent))
    except VoxelSizeMissingError as exc:
        return 1.0, str(exc)
    return None, None


def _volume_info(path: Path, scan, problem, *, stack: bool) -> dict:
    """What a read volume or a `ScanSlabs` says of itself (a file or an image stack, not DICOM): format, unit,
    geometry (the voxel size None when ``problem`` says it is unknown), the stack's slice files when ``stack``."""
    return {"path": str(path), "format": scan.meta.get("format"), "series": [], "skipped": [], "chosen": str(path),
            "problem": problem, "unit": scan.unit, "unit_reason": scan.meta.get("unit_reason"),
            "geometry": {"shape_zyx": list(scan.shape), "spacing_zyx_mm": None if problem else list(scan.spacing),
                         "origin_xyz_mm": list(scan.origin), "direction": scan.direction.round(6).tolist(),
                         "spacing_source": None if problem else scan.meta.get("spacing_source")},
            "attenuation_range": scan.meta.get("attenuation_range"), "vendor": scan.meta.get("vendor") or None,
            "scanco": {k: v for k, v in scan.meta.items() if k.startswith("scanco")} or None,
            "stack": _stack_description(path) if stack else None}


def _slabs_info(path: Path, scan, problem=None) -> dict:
    """An image stack or a MetaImage too large for memory, or a Scanco file, described from its `ScanSlabs` (its
    header or first page and the slices the unit test needs; no full read)."""
    return {**_volume_info(path, scan, problem, stack=bool(scan.meta.get("files"))),
            "reading": _reading_plan(scan.n_voxels, True)}


def _stack_description(path: Path) -> dict:
    """An image stack's slice files: how many, the first and last, and the pictures left out (a preview)."""
    from .stacks import stack_listing

    files, left_out = stack_listing(path)
    return {"files": len(files), "first": files[0].name, "last": files[-1].name, "left_out": left_out}


def scan_info(path, series=None, *, spacing=None, allow_nonuniform: bool = False) -> dict:
    """A JSON-able description of the scan(s) at ``path``: series, choice, geometry, rescale, unit, vendor.

    DICOM folders are described from their headers (plus one decoded slice to tell HU from raw gray), Scanco
    files from their header (their voxels memory-mapped, not read: ISQ files run to gigabytes); other formats
    are read. With ``allow_nonuniform`` a DICOM series with non-uniform slice spacing is
    described as `read_scan` would resample it (``"nonuniform"`` lists the gaps) instead of as a problem.
    """
    from .formats import is_volume_file, resolve_scan_path
    from .scanco import is_scanco
    from .slabs import slabs_if_too_big
    from .stacks import is_image_stack, is_stack_file

    path = resolve_scan_path(path, spacing)
    if is_scanco(path):  # RSQ and RAD files are refused by name there
        from .scanco import open_scanco_slabs

        return _slabs_info(path, open_scanco_slabs(path))
    single_file = is_volume_file(path) or is_stack_file(path)
    is_stack_dir = is_image_stack(path)
    problem = None
    if spacing is None and (single_file or is_stack_dir):
        spacing, problem = _stand_in_voxel_size(path)
    big = slabs_if_too_big(path, spacing=spacing)  # described without reading it all
    if big is not None:
        return _slabs_info(path, big, problem)
    if single_file or is_stack_dir:
        from . import read_scan

        volume = read_scan(path, spacing=spacing)
        return {**_volume_info(path, volume, problem, stack=is_stack_dir),
                "value_range": [float(volume.array.min()), float(volume.array.max())],
                "is_binary": volume.meta.get("is_binary"),
                "reading": _reading_plan(int(np.prod(volume.shape)), is_stack_dir and volume.meta.get("files", 1) > 1)}
    if path.is_dir() and not any(path.iterdir()):
        raise ScanReadError(f"{path}: folder is empty. Potential fix: point to the folder of the scan's files.")
    return _dicom_info(path, series, allow_nonuniform)


def format_scan_info(info: dict, *, verbose: bool = False) -> str:
    """Human-readable text of `scan_info`'s dict."""
    lines = [f"{info['path']}  ({info['format']})"]
    for s in info.get("series", []):
        mark = "*" if s["key"] == info.get("chosen") else " "
        sp = s["pixel_spacing_mm"]
        lines.append(f" {mark} series {s['series_number']}: {s['slices']} slice(s) of {s['rows']}x{s['columns']}"
                     f"{f', pixel {sp[0]:g}x{sp[1]:g} mm' if sp else ''}, {s['modality'] or '?'}, "
                     f"{s['description']!r}  uid {s['key']}")
    if info.get("chosen"):
        lines.append(f"chosen: {info['chosen']} ({info.get('chosen_reason', 'single volume')})")
    geometry = info.get("geometry")
    if geometry:
        source = {"rec.log": " (from the *_rec.log)", "given": " (as given: --spacing)"}.get(
            geometry.get("spacing_source") or "", "")
        spacing = geometry["spacing_zyx_mm"]
        spacing = tuple(round(v, 6) for v in spacing) if spacing is not None else "unknown"
        lines.append(f"shape (z, y, x): {tuple(geometry['shape_zyx'])}  spacing (z, y, x) mm: {spacing}{source}")
        lines.append(f"origin (x, y, z) mm: {tuple(round(v, 4) for v in geometry['origin_xyz_mm'])}")
    if "unit" in info:
        lines.append(f"values: {info['unit']} ({info.get('unit_reason')})")
    if info.get("stack"):
        st = info["stack"]
        left = f"; left out: {', '.join(st['left_out'])}" if st["left_out"] else ""
        lines.append(f"slices: {st['files']} files, {st['first']} .. {st['last']}{left}")
    if info.get("attenuation_range"):
        low, high = info["attenuation_range"]
        lines.append(f"gray values map the attenuation range {low:g}-{high:g} (the *_rec.log's CS to image conversion)")
    if info.get("nonuniform"):
        n = info["nonuniform"]
        lines.append(f"non-uniform slice spacing (gaps {n['gaps_mm']} mm): {n['slices_in_files']} slices resampled "
                     f"to {n['resampled_slices']}")
    if info.get("rescale"):
        r = info["rescale"]
        lines.append(f"rescale: slope {r['slopes']} intercept {r['intercepts']}"
                     f"{' (varies per slice)' if r['varies_per_slice'] else ''}")
    if info.get("vendor"):
        lines.append(f"vendor: {info['vendor']}")
    scanco = info.get("scanco") or {}
    slope, intercept = scanco.get("scanco_density_slope"), scanco.get("scanco_density_intercept")
    if slope is not None and intercept is not None:
        sign = "-" if intercept < 0 else "+"
        if info.get("unit") == "HU":  # a Scanco export in HU: the tags apply through mu of water
            lines.append(f"density calibration (Scanco, applied to HU through mu water "
                         f"{scanco.get('scanco_mu_water')}): mg HA/cm3 = mu x {slope:.6g} {sign} {abs(intercept):.6g}")
        elif scanco.get("scanco_mu_scaling"):
            lines.append(f"density calibration (Scanco): mg HA/cm3 = value / {float(scanco['scanco_mu_scaling']):g} x "
                         f"{slope:.6g} {sign} {abs(intercept):.6g}")
    if info.get("reading"):
        r = info["reading"]
        room = f"{r['available_gb']:g} GB available" if r["available_gb"] is not None else "memory available unknown"
        how = ("slab by slab: only the bone's rows and columns are held in memory" if r["mode"] == "slab by slab"
               else "in memory" + ("" if r["slabs_possible"] else " (slab by slab not possible for this scan)"))
        lines.append(f"reading: {how} (the in-memory path needs ~{r['in_memory_need_gb']:g} GB; {room})")
    if info.get("skipped"):
        lines.append(f"skipped {len(info['skipped'])} file(s)" + ("" if verbose else " (--verbose lists them)"))
        if verbose:
            lines.extend(f"  {s['file']}: {s['reason']}" for s in info["skipped"])
    if info.get("problem"):
        lines.append(f"PROBLEM: {info['problem']}")
    return "\n".join(lines)
