#!/usr/bin/env python
"""Batch throughput: the demo phantom study with 1 and N local workers and on a dask LocalCluster (issue 7).

Usage:  python scripts/bench_batch.py [--workers 1,2] [--no-dask] [--study demo|256x8]
Writes the study once under .bench-cache/, runs `run_batch` (no rendering, --force so every scan is analysed)
for each setting into a temporary folder, and prints a Markdown table: wall time, scans per minute and the
speed-up over one worker. Each setting's per_animal.csv must equal the 1-worker one.

Studies:
* ``demo``: the demo study (6 small scans, each registered to its contralateral limb);
* ``256x8``: eight animals whose scan is bench.py's 256^3 phantom series (no reference), scans large enough
  that one scan leaves a core idle part of the time (see docs/performance.md, "Batch").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench-cache"


def study_manifest(study: str) -> Path:
    if study == "demo":
        from ctbone.phantoms.study import write_study

        folder = CACHE / "demo_study"
        manifest = folder / "manifest.csv"
        if not manifest.is_file():
            manifest = write_study(folder, seed=0)
        return manifest
    size, _, copies = study.partition("x")
    return repeated_scan_manifest(size, int(copies))


def repeated_scan_manifest(size: str, copies: int) -> Path:
    """A manifest of ``copies`` animals (two groups) that all point at bench.py's cached phantom series."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from bench import phantom_folder

    series = phantom_folder(size)
    manifest = CACHE / f"study_{size}x{copies}.csv"
    rows = ["animal_id,group,scan"] + [f"A{i},{'control' if i % 2 else 'treated'},{series.relative_to(CACHE)}" for i in range(copies)]
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def per_animal_rows(out: Path) -> list[str]:
    # drop the timing column(s): they differ run to run
    import pandas as pd

    table = pd.read_csv(out / "per_animal.csv")
    table = table[[c for c in table.columns if "second" not in c and c != "started"]]
    return table.to_csv(index=False).splitlines()


def main(argv=None) -> None:
    from ctbone.memory import retain_freed_memory
    from ctbone.options import AnalysisOptions
    from ctbone.study.runner import run_batch

    retain_freed_memory()  # as the ctbone command does: --workers 1 runs the scans in this process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--study", default="demo", help="demo, or SIZExN: N animals on bench.py's SIZE phantom")
    args = parser.parse_args(argv)
    manifest = study_manifest(args.study)
    n_scans = sum(1 for _ in open(manifest)) - 1
    settings = [(f"--workers {w}", {"workers": int(w)}) for w in args.workers.split(",")]
    if not args.no_dask:
        settings.append(("dask LocalCluster, 2 workers x 1 thread", "dask"))
    rows, reference, base = [], None, None
    for label, kw in settings:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            t0 = time.perf_counter()
            if kw == "dask":
                from distributed import LocalCluster

                with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
                    t0 = time.perf_counter()  # cluster start-up is not the batch's cost
                    status = run_batch(manifest, out, options=AnalysisOptions(render=False), scheduler=cl.scheduler_address,
                                       quiet=True, force=True, control="control")
                    seconds = time.perf_counter() - t0
            else:
                status = run_batch(manifest, out, options=AnalysisOptions(render=False), quiet=True, force=True,
                                   control="control", **kw)
                seconds = time.perf_counter() - t0
            table = per_animal_rows(out)
        reference = reference or table
        base = base or seconds
        rows.append((label, seconds, status, table == reference))
    print(f"{n_scans} scans of the {args.study} study, no rendering\n")
    print("| setting | wall s | scans / min | speed-up | exit status | same per_animal.csv |")
    print("|---|---|---|---|---|---|")
    for label, seconds, status, same in rows:
        print(f"| {label} | {seconds:.1f} | {60 * n_scans / seconds:.1f} | {base / seconds:.2f}× | {status} | "
              f"{'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
