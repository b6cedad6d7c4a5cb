"""The unit of batch work: one manifest row read, analysed and written out.

`run_job` never raises for a bad scan: it returns an outcome with
``status="error"`` and a one-line ``error`` so the other scans go on.
It is a top-level function so process pools and dask can ship it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CtboneError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Everything a worker needs for one row (picklable)."""

    name: str
    scan: Path
    reference: Path | None
    options: object  # AnalysisOptions with the row's overrides applied
    outdir: Path
    render: bool
    extra: dict = field(default_factory=dict)
    analyze_fn: object = None
    read_fn: object = None
    verbose: bool = False
    # the fraction of the machine's available memory this job may count on (1 / local workers)
    memory_share: float = 1.0


def one_line(exc: BaseException) -> str:
    """An exception as one line: the message of ctbone errors, 'Type: message' otherwise."""
    text = str(exc).strip().replace("\r", " ").replace("\n", " ")
    if isinstance(exc, CtboneError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Warnings(logging.Handler):
    """Collects the messages of ctbone's warnings logged by this thread while attached (a dask worker may run
    several jobs at once, each in its own thread)."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record):
        if record.thread == self.thread:
            self.messages.append(record.getMessage())

    def __enter__(self):
        logging.getLogger("ctbone").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("ctbone").removeHandler(self)


def run_job(job: Job) -> dict:
    """Read, analyse and write one scan; returns {"name", "status", "error", "seconds", "warnings", "pid"}.

    The warnings logged while reading and analysing (one message each) also go into the scan's
    metrics.json (``info["warnings"]``): a worker process's log does not reach the batch's."""
    from ..io.stacks import is_stack
    from ..report.scan_outputs import write_scan_outputs

    t0 = time.perf_counter()
    import ctbone

    # the scan slab by slab when it would not fit in memory; a reference is registered to the scan
    # as a whole, so it is always read in memory
    read = job.read_fn or ctbone.open_scan
    read_reference = job.read_fn or ctbone.read_scan
    analyze = job.analyze_fn or ctbone.analyze
    with _Warnings() as caught:
        try:
            _clean_partial(job.outdir)
            # reading options travel in the analysis options (one frozen object per row); passed only when set,
            # so replacement readers with the plain read_scan(path) signature keep working
            read_kwargs = {"allow_nonuniform": True} if getattr(job.options, "allow_nonuniform", False) else {}
            scan_kwargs = dict(read_kwargs)
            memory = getattr(job.options, "memory", "auto")
            if memory != "auto":
                scan_kwargs["memory"] = memory
            elif job.memory_share < 1.0 and job.read_fn is None:  # ctbone.open_scan decides on its share
                scan_kwargs["memory_share"] = job.memory_share
            # a voxel size for image stacks: refused, in one line, for a scan carrying its own; a reference that
            # carries its own (DICOM) keeps it
            spacing = getattr(job.options, "spacing_mm", None)
            ref_kwargs = dict(read_kwargs)
            if spacing is not None:
                scan_kwargs["spacing"] = spacing
                if job.reference is not None and is_stack(job.reference):
                    ref_kwargs["spacing"] = spacing
            volume = read(job.scan, **scan_kwargs)
            reference = read_reference(job.reference, **ref_kwargs) if job.reference is not None else None
            if job.analyze_fn is None:  # ctbone's own analysis drops each once it has cut out or found the bone
                volume = ctbone.HandedOver(volume)
                reference = ctbone.HandedOver(reference) if reference is not None else None
            kwargs = {"progress": lambda stage: log.info("%s: %s", job.name, stage)} if job.verbose else {}
            result = analyze(volume, reference=reference, options=job.options, **kwargs)
            check_mode_applied(result, job.options)
            if isinstance(getattr(result, "info", None), dict):
                result.info["warnings"] = list(caught.messages)
            write_scan_outputs(result, job.outdir, render=job.render, extra=job.extra,
                               inputs=[p for p in (job.scan, job.reference) if p is not None])
            status, error = "ok", ""
        except Exception as exc:  # noqa: BLE001 - fault isolation: any failure of one scan is its row's error
            status, error = "error", one_line(exc)
            log.debug("%s failed:\n%s", job.name, traceback.format_exc())
            _remove_stale_outputs(job.outdir)
    return {"name": job.name, "status": status, "error": error, "seconds": round(time.perf_counter() - t0, 3),
            "warnings": list(caught.messages), "pid": os.getpid()}


def check_mode_applied(result, options) -> None:
    """Refuse a result segmented in another mode than the options asked for (never a wrong number).

    The segmentation records its mode; a pipeline that does not pass ``options.mode`` on
    would silently measure a trabecular cube as a long bone.
    """
    wanted = getattr(options, "mode", "long-bone")
    if wanted == "long-bone":
        return
    info = getattr(result, "info", None) or {}
    got = info.get("mode", "long-bone")
    if got != wanted:
        raise CtboneError(f"analysis ran in mode {got!r}, not the requested {wanted!r}: this ctbone's pipeline does "
                          f"not pass the mode to the segmentation. Potential fix: update ctbone, or analyse the "
                          f"scan without --mode")


def _clean_partial(folder: Path) -> None:
    """Remove a previous incomplete attempt's temporary files and completeness marker."""
    if not folder.is_dir():
        return
    # every temporary name of write_scan_outputs starts with a dot
    for tmp in list(folder.glob(".*")) + list(folder.glob("masks/.*")):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def _remove_stale_outputs(folder: Path) -> None:
    """After a failure, drop an earlier run's outputs so nobody reads old numbers as this run's."""
    from ..report.scan_outputs import COMPLETE_MARKER

    if not folder.is_dir():
        return
    for name in (COMPLETE_MARKER, "metrics.csv", "lesions.csv", "snapshot.png"):
        (folder / name).unlink(missing_ok=True)
    for mask in folder.glob("masks/*.nii.gz"):
        mask.unlink()
