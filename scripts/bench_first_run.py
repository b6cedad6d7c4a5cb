#!/usr/bin/env python
"""What a first run pays to compile ctbone's kernels (docs/performance.md, "First run").

Times `ctbone analyze` of the bench's 256³ phantom (scripts/bench.py writes it to .bench-cache/) in fresh
processes: first with an empty numba cache (NUMBA_CACHE_DIR set to a new temporary folder, so the kernels are
compiled), then twice more with that cache filled. Nothing in the checkout's own cache is touched.

Usage:  python scripts/bench_first_run.py [--size 256]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def timed_analyze(series: Path, cache: Path, out: Path) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ctbone.cli", "analyze", str(series), "-o", str(out), "-q"], env=env,
                   check=True)
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="256", help="a size of scripts/bench.py (default 256)")
    args = parser.parse_args()
    from bench import phantom_folder

    series = phantom_folder(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "numba-cache"
        cache.mkdir()
        cold = timed_analyze(series, cache, Path(tmp) / "cold")
        warm = [timed_analyze(series, cache, Path(tmp) / f"warm{i}") for i in range(2)]
    print(f"| scan | ctbone analyze, empty numba cache | cached |\n|---|---|---|\n"
          f"| {args.size} | {cold:.1f} s | {min(warm):.1f}–{max(warm):.1f} s |")


if __name__ == "__main__":
    main()
