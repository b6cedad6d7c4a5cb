"""`run_batch`: a whole study from a manifest to per-animal tables, statistics, plots and report.html.

Order of work: validate the manifest (all problems at once) → refuse outputs
inside inputs → skip rows whose outputs are complete and unchanged (run.json)
→ run the rest (serial, processes or dask) with fault isolation → build every
study output from the per-scan files in manifest order, so results never depend
on completion order, worker count or scheduler.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..errors import OutputError
from ..options import AnalysisOptions
from ..report.safeio import check_output_dir, make_output_dir
from ..report.scan_outputs import COMPLETE_MARKER, ctbone_version, read_scan_record
from .backends import run_dask, run_processes, run_serial
from .job import Job
from .manifest import Manifest, read_manifest
from .resume import code_digest, input_checksum, load_run, row_fingerprint, save_run

log = logging.getLogger(__name__)
_pkg_log = logging.getLogger("ctbone")
SCANS_DIR = "scans"
LOG_FILE = "batch.log"


def _record_readable(scan_dir: Path, name: str) -> bool:
    """Whether a scan's completed record can be read back; a damaged one is analysed again, not reported as failed."""
    try:
        read_scan_record(scan_dir)
    except ValueError as exc:
        if (scan_dir / COMPLETE_MARKER).exists():
            log.warning("%s: its outputs are damaged (%s); analysed again", name, exc)
        return False
    return True


def _row_options(options: AnalysisOptions, row) -> AnalysisOptions:
    return replace(options, **row.overrides())


def _parameters(options: AnalysisOptions, render: bool) -> dict:
    params = options.to_dict()
    params["render"] = bool(render)
    return json.loads(json.dumps(params, default=list))


def _validate_summary(manifest: Manifest, outdir: Path, stream) -> None:
    groups = manifest.groups
    print(f"{manifest.path}: OK, {len(manifest.rows)} scans, {len(groups)} groups ({', '.join(groups)}); "
          f"outputs would go to {outdir}", file=stream)
    for row in manifest.rows:
        ref = f" reference={row.reference}" if row.reference else ""
        print(f"  line {row.line}: {row.name} [{row.group}] {row.scan}{ref}", file=stream)


class _FileLog:
    """Attach a file handler for OUTDIR/batch.log to the 'ctbone' logger for the duration of a batch."""

    def __init__(self, path: Path, verbose: bool):
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.old_level = _pkg_log.level

    def __enter__(self):
        effective = _pkg_log.getEffectiveLevel()
        self.old_handler_levels = [(h, h.level) for h in _pkg_log.handlers]
        if effective > self.handler.level:
            # the file wants more detail than the console: keep the console handlers at their old threshold
            for h, level in self.old_handler_levels:
                h.setLevel(max(level, effective))
            _pkg_log.setLevel(self.handler.level)
        _pkg_log.addHandler(self.handler)
        return self

    def record_warnings(self, name: str, messages) -> None:
        """Write warnings a worker process or a cluster logged for scan ``name`` to batch.log only (the worker's
        own console, if any, showed them already)."""
        for message in messages:
            self.handler.handle(_pkg_log.makeRecord(_pkg_log.name + ".worker", logging.WARNING, __file__, 0,
                                                    "%s: %s", (name, message), None))

    def __exit__(self, *exc):
        _pkg_log.removeHandler(self.handler)
        _pkg_log.setLevel(self.old_level)
        for h, level in self.old_handler_levels:
            h.setLevel(level)
        self.handler.close()


def run_batch(manifest_path, outdir, *, options: AnalysisOptions | None = None, workers: int = 1, scheduler=None,
              force: bool = False, quiet: bool = False, verbose: bool = False, control: str | None = None,
              render: bool = True, validate_only: bool = False, allow_absolute_paths: bool = False,
              analyze_fn=None, read_fn=None) -> int:
    """Analyse every scan of a study manifest and write the study outputs (SPEC.md "Batch outputs").

    Parameters
    ----------
    manifest_path : path
        Study CSV (animal_id, group, scan[, limb, timepoint, reference, roi_mm, threshold, ...]).
    outdir : path
        Output folder; refused when it is, or is inside, an input folder.
    options : AnalysisOptions, keyword-only
        Analysis parameters for every row; the manifest's roi_mm / threshold / mirror_reference override per row.
    workers : int, keyword-only
        Local worker processes (1: in this process). Scans start only while their estimated memory fits.
    scheduler : str or distributed.Client, keyword-only
        A dask.distributed scheduler address: run the scans on that cluster instead.
    force : bool, keyword-only
        Recompute every row, even those whose outputs are complete and unchanged.
    quiet, verbose : bool, keyword-only
        No progress bar / per-stage progress and debug lines in batch.log.
    control : str, keyword-only
        Control group of the statistics (default: the first group of the manifest).
    render : bool, keyword-only
        Render per-scan snapshots (also off when ``options.render`` is False).
    validate_only : bool, keyword-only
        Only validate the manifest and the output folder, print what would be done, return 0.
    allow_absolute_paths : bool, keyword-only
        Accept manifest paths that are absolute or leave the manifest's folder.
    analyze_fn, read_fn : callable, keyword-only
        Replacements for `ctbone.analyze` / `ctbone.read_scan` (tests, custom pipelines).

    Returns
    -------
    int
        0 when every scan succeeded, 1 when some failed.

    Raises
    ------
    ManifestError
        The manifest is invalid (every problem listed, nothing analysed).
    OutputError
        ``outdir`` is an input folder or inside one.
    """
    options = options or AnalysisOptions()
    render = bool(render and options.render)
    manifest = read_manifest(manifest_path, allow_absolute_paths=allow_absolute_paths, control=control)
    inputs = [p for row in manifest.rows for p in (row.scan, row.reference) if p is not None]
    outdir = check_output_dir(outdir, inputs)
    if outdir == manifest.folder.resolve() or outdir == manifest.path:
        raise OutputError(f"{outdir}: the output folder is the study folder of {manifest.path.name}; outputs would "
                          f"mix with the inputs. Potential fix: choose a subfolder, e.g. {outdir / 'ctbone_out'}")
    if validate_only:
        _validate_summary(manifest, outdir, sys.stdout)
        return 0
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    make_output_dir(outdir)
    make_output_dir(outdir / SCANS_DIR)

    with _FileLog(outdir / LOG_FILE, verbose) as file_log:
        return _run(manifest, outdir, options=options, workers=workers, scheduler=scheduler, force=force,
                    quiet=quiet, verbose=verbose, control=control, render=render, analyze_fn=analyze_fn,
                    read_fn=read_fn, file_log=file_log)


def _run(manifest, outdir, *, options, workers, scheduler, force, quiet, verbose, control, render, analyze_fn,
         read_fn, file_log=None) -> int:
    from tqdm import tqdm

    from ..report.study_outputs import write_study_outputs

    version = ctbone_version()
    parameters = _parameters(options, render)
    previous = load_run(outdir)
    prev_rows = previous.get("rows", {}) if isinstance(previous.get("rows"), dict) else {}
    log.info("ctbone %s batch: %s (%d scans) -> %s", version, manifest.path, len(manifest.rows), outdir)

    run = {"ctbone_version": version, "ctbone_code_sha256": code_digest(), "manifest": str(manifest.path),
           "parameters": parameters,
           "control": control, "workers": workers, "scheduler": str(scheduler) if scheduler else None,
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": {}}
    # local worker processes share this machine's memory: each decides in-memory or slab reading on
    # its share of it (a cluster's workers each have their own machine)
    share = 1.0 / min(workers, len(manifest.rows)) if scheduler is None and workers > 1 else 1.0
    jobs, skipped = [], 0
    for row in manifest.rows:
        row_opts = _row_options(options, row)
        checksums = {"scan": input_checksum(row.scan)}
        if row.reference is not None:
            checksums["reference"] = input_checksum(row.reference)
        fingerprint = row_fingerprint(version=version, parameters=parameters,
                                      overrides=json.loads(json.dumps(row.overrides(), default=list)),
                                      checksums=checksums)
        scan_dir = outdir / SCANS_DIR / row.name
        entry = {"line": row.line, "scan": str(row.scan), "reference": str(row.reference or ""),
                 "checksums": checksums, "fingerprint": fingerprint, "status": "pending", "error": ""}
        prev = prev_rows.get(row.name, {})
        if (not force and prev.get("fingerprint") == fingerprint and prev.get("status") == "ok"
                and _record_readable(scan_dir, row.name)):
            entry.update(status="ok", seconds=prev.get("seconds"), skipped=True)
            skipped += 1
        else:
            extra = {"animal_id": row.animal_id, "group": row.group, "limb": row.limb, "timepoint": row.timepoint}
            jobs.append(Job(name=row.name, scan=row.scan, reference=row.reference, options=row_opts, outdir=scan_dir,
                            render=render, extra=extra, analyze_fn=analyze_fn, read_fn=read_fn, verbose=verbose,
                            memory_share=share))
        run["rows"][row.name] = entry
    if skipped:
        log.info("%d scan(s) unchanged since the last run: skipped (use --force to recompute)", skipped)
    save_run(outdir, run)

    bar = tqdm(total=len(manifest.rows), initial=skipped, file=sys.stderr, disable=quiet, unit="scan",
               desc="ctbone batch", dynamic_ncols=True)
    try:
        if scheduler is not None:
            outcomes = run_dask(jobs, scheduler=scheduler)
        elif workers > 1 and len(jobs) > 1:
            outcomes = run_processes(jobs, workers=workers)
        else:
            outcomes = run_serial(jobs, stage=(lambda name: bar.set_postfix_str(name)) if not quiet else None)
        for outcome in outcomes:
            entry = run["rows"][outcome["name"]]
            entry.update(status=outcome["status"], error=outcome["error"], seconds=outcome["seconds"])
            if file_log is not None and outcome.get("pid", os.getpid()) != os.getpid():
                # another process's warnings (a worker, a cluster); this process's reached batch.log as they came
                file_log.record_warnings(outcome["name"], outcome.get("warnings", ()))
            if outcome["status"] == "ok":
                log.info("%s: ok (%.1f s)", outcome["name"], outcome["seconds"])
            else:
                log.error("%s: %s", outcome["name"], outcome["error"])
            save_run(outdir, run)  # after every scan, so a killed run resumes where it stopped
            bar.update(1)
    finally:
        bar.close()

    run["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save_run(outdir, run)
    statuses = {name: (e["status"], e["error"]) for name, e in run["rows"].items()}
    write_study_outputs(manifest, outdir, statuses=statuses, options=options, parameters=parameters, control=control,
                        version=version, scans_dir=outdir / SCANS_DIR)
    failed = [n for n, (s, _) in statuses.items() if s != "ok"]
    if failed:
        log.warning("%d of %d scans failed: %s (see per_animal.csv, column error)", len(failed), len(statuses),
                    ", ".join(failed))
    log.info("done: %s", outdir / "report.html")
    return 1 if failed else 0
