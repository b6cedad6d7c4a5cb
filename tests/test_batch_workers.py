"""Process workers run compiled (numba, OpenMP) kernels even when this process already ran them."""

import numpy as np
import pytest

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


def test_tasks_per_host_counts_every_worker_thread_on_the_host():
    from ctbone.study.backends import tasks_per_host

    workers = {"tcp://a:1": {"host": "a", "nthreads": 1}, "tcp://a:2": {"host": "a", "nthreads": 3},
               "tcp://b:1": {"host": "b", "nthreads": 2}}
    assert tasks_per_host(workers) == {"tcp://a:1": 4, "tcp://a:2": 4, "tcp://b:1": 2}


def test_dask_task_gets_its_share_of_the_cores(monkeypatch):
    # two single-threaded workers on one 2-core host: each task's kernels get 1 thread, not one per core
    distributed = pytest.importorskip("distributed")
    numba = pytest.importorskip("numba")
    from ctbone.study import backends

    monkeypatch.setattr(backends, "_cpu_count", lambda: 2)
    monkeypatch.setattr(backends, "run_job", lambda job: numba.get_num_threads())
    before = numba.get_num_threads()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        tasks = backends.tasks_per_host(client.scheduler_info()["workers"])
        assert sorted(tasks.values()) == [2, 2]
        threads = client.gather([client.submit(backends.run_job_on_dask, None, tasks, pure=False) for _ in range(2)])
    assert threads == [1, 1]
    assert numba.get_num_threads() == before  # per task thread: this thread's setting is untouched
