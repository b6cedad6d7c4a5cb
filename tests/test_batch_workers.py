"""Process workers run compiled (numba, OpenMP) kernels even when this process already ran them."""

import numpy as np

from ctbone.measure.thickness import local_thickness
from ctbone.options import AnalysisOptions
from ctbone.study import run_batch
from test_batch_fakes import fake_analyze, fake_read, write_fake_scan


def analyze_with_kernel(volume, reference=None, **kw):
    # a parallel compiled kernel inside the worker: with a forked pool its OpenMP runtime killed the worker
    plate = np.zeros((8, 9, 10), bool)
    plate[2:6] = True
    assert float(local_thickness(plate, spacing_mm=(1, 1, 1))[4, 4, 4]) == 4.0
    return fake_analyze(volume, reference, **kw)


def test_workers_after_kernels_in_this_process(tmp_path):
    local_thickness(np.ones((6, 7, 8), bool), spacing_mm=(1, 1, 1))  # OpenMP now initialised here
    lines = ["animal_id,group,scan"]
    for i, value in enumerate([1.0, 2.0, 3.0]):
        write_fake_scan(tmp_path / "study" / "scans" / f"A{i}", value)
        lines.append(f"A{i},g,scans/A{i}")
    manifest = tmp_path / "study" / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    outs = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        assert run_batch(manifest, out, options=AnalysisOptions(), workers=workers, render=False, quiet=True,
                         analyze_fn=analyze_with_kernel, read_fn=fake_read) == 0
        outs[workers] = (out / "per_animal.csv").read_text()
    assert outs[2] == outs[1]  # one row per scan, whatever the worker count
