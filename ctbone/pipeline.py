"""`analyze`: one scan through segment → measure (→ compare with a reference).

Orchestration only: every step lives in its own stage module; this function
wires them in data-flow order and collects metrics, masks and provenance.
"""

from __future__ import annotations

import logging
import time
from dataclasses import fields, replace
from functools import partial
from pathlib import Path

from .errors import SegmentationError
from .options import AnalysisOptions
from .result import AnalysisResult, MaskSet
from .volume import HandedOver, Volume

log = logging.getLogger(__name__)

# below this many slices there is no 3D structure to measure (local thickness,
# connectivity and the bridged envelope all need some depth)
MIN_SLICES = 5


def make_options(options: AnalysisOptions | None = None, **overrides) -> AnalysisOptions:
    """An `AnalysisOptions` from defaults (or ``options``) with keyword overrides; unknown names are refused."""
    base = options or AnalysisOptions()
    known = {f.name for f in fields(AnalysisOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown analysis option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _json_safe(value):
    """``value`` with numpy scalars/arrays as Python numbers/lists, tuples as lists and NaN/inf as None."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _check_inputs(volume, reference) -> None:
    """TypeError saying the fix when ``analyze`` is handed a bare array (or something else) instead of a scan."""
    from .io.slabs import ScanSlabs

    volume, reference = _peek(volume), _peek(reference)
    if not isinstance(volume, (Volume, ScanSlabs)):
        raise TypeError(f"analyze needs a ctbone.Volume (voxels with their geometry), got {type(volume).__name__}. "
                        "Potential fix: ctbone.read_scan(path), or ctbone.Volume(array, spacing=(z, y, x) in mm, "
                        "unit='HU')")
    if reference is not None and not isinstance(reference, (Volume, str, Path)):
        raise TypeError(f"reference must be a ctbone.Volume or the path of a scan, got {type(reference).__name__}")


def _peek(volume):
    """The scan itself, without taking it out of a `HandedOver` (segmentation takes it)."""
    return volume.peek() if isinstance(volume, HandedOver) else volume


def _check_measurable(volume: Volume) -> None:
    source = volume.meta.get("source", "the volume")
    if min(volume.shape) < MIN_SLICES:
        raise SegmentationError(
            f"{source}: volume of shape {volume.shape} (z, y, x) is too thin to measure in 3D "
            f"(need at least {MIN_SLICES} voxels along every axis). Potential fix: pass the whole series, not one slice."
        )


def analyze(volume: Volume, reference: Volume | HandedOver | str | Path | None = None, *,
            options: AnalysisOptions | None = None, progress=None, **overrides) -> AnalysisResult:
    """Segment one scan and measure morphometry and bone destruction.

    Parameters
    ----------
    volume : Volume, ScanSlabs or HandedOver
        The scan, e.g. from `ctbone.read_scan` or `ctbone.phantoms.make_phantom`; from `ctbone.open_scan`, a
        scan too large for memory is read slab by slab. ``HandedOver(scan)``, of a scan no one else holds, lets
        the analysis drop the whole scan once the bone is cut out (less memory; the ``ctbone`` command does).
    reference : Volume, HandedOver or path, optional
        Contralateral (set ``mirror_reference=True``) or baseline scan of the same animal;
        adds bone_lost_mm3 / bone_gained_mm3 and their _pct. Read from a path, or handed over, it is let go
        once its bone is found.
    options : AnalysisOptions, optional
        Base options; keyword arguments override single fields (``threshold=2000``).
    progress : callable, optional
        Called with a short stage name before each stage (for progress bars).

    Returns
    -------
    AnalysisResult

    Examples
    --------
    >>> from ctbone.phantoms import PhantomSpec, make_phantom
    >>> vol, truth = make_phantom(PhantomSpec(), seed=0)     # doctest: +SKIP
    >>> res = analyze(vol)                                   # doctest: +SKIP
    >>> res.metrics["cortical_defect_count"]                 # doctest: +SKIP
    """
    from .measure.lesions import measure_lesions
    from .measure.morphometry import standard_morphometry
    from .segment import segment
    from .segment.checks import check_cortex_resolution

    opts = make_options(options, **overrides)
    _check_inputs(volume, reference)
    scan_meta = dict(_peek(volume).meta)
    _check_measurable(_peek(volume))
    stage = progress or (lambda name: None)
    timings: dict[str, float] = {}

    def timed(name, fn, *args):
        stage(name)
        t0 = time.perf_counter()
        out = fn(*args)
        timings[name] = round(time.perf_counter() - t0, 3)
        log.info("%s: %.2f s", name, timings[name])
        return out

    seg = timed("segment", partial(segment, mode=opts.mode), volume, opts)
    # lesions first: Ct.Po keeps them out of the cortex's pores
    lesions = timed("lesions", measure_lesions, seg, opts)
    metrics = dict(timed("morphometry", standard_morphometry, seg, lesions))
    metrics.update(lesions.metrics)
    resolution: dict = {}
    if seg.mode == "long-bone":
        check_cortex_resolution(metrics.get("ct_th_mm", float("nan")), seg.bone.spacing, resolution,
                                scan_meta.get("source", "the scan"))

    masks = seg.mask_makers()  # the compartments made when read: the result holds their bits, not the masks
    masks.update(lesions.masks)
    info = {
        "threshold_method": seg.threshold_method,
        "roi_mm": list(seg.roi_mm) if seg.roi_mm is not None else None,
        "source": scan_meta.get("source"),
        "series_uid": scan_meta.get("series_uid"),
        "unit": seg.unit,
        "mode": seg.mode,
        "segmentation": _json_safe(seg.info),
        "lesions": _json_safe(lesions.info),
        **resolution,
    }

    if reference is not None:
        from .measure.reference import compare_to_reference

        if isinstance(reference, (str, Path)):  # read here, so ours: let go once its bone is found
            from .io import read_scan

            reference = HandedOver(timed("read reference", partial(read_scan, allow_nonuniform=opts.allow_nonuniform),
                                         reference))
        comparison = timed("reference", compare_to_reference, seg, reference, opts)
        metrics.update(comparison.metrics)
        masks.update(comparison.masks)
        info["registration"] = comparison.info

    info["timings_s"] = timings
    return AnalysisResult(
        metrics=metrics, masks=MaskSet(masks), image=seg.raw_image, lesions=list(lesions.lesions), options=opts,
        info=info, cortex_model=lesions.cortex_model,
    )
