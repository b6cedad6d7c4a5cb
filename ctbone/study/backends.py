"""Where batch jobs run: in this process, in local worker processes, or on a dask.distributed cluster.

Every back-end yields outcomes as jobs finish; the runner orders results by the
manifest, so the order of completion never shows in the outputs. The local
process pool starts a scan only when its estimated memory fits in the RAM
available (always at least one scan at a time).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .job import Job, one_line, run_job

log = logging.getLogger(__name__)
# peak memory of one job ≈ at most this many times its float32 image(s), scan and reference (image, smoothed
# copy, masks, distances, outputs and pictures, and the freed pages the worker keeps for reuse, ctbone.memory).
# The whole `ctbone analyze` command on the 512^3 bench scan: 6.9x in an earlier pass, 5.3x at the start of the
# fourteenth, 4.8x after it (3.8x of scan + reference with --reference); kept at 7: a calibration makes a
# float32 copy of the whole scan, and a real scan's bone may be larger than the bench's
MEMORY_FACTOR = 7.0
# dask retries a refused connection until this timeout
CONNECT_TIMEOUT_S = 20
# leave this fraction of the available RAM to the system and the parent process
RAM_FRACTION = 0.8


def input_bytes(path: Path | None) -> int:
    """Bytes on disk of a scan file or folder (0 for None or a missing path)."""
    if path is None or not Path(path).exists():
        return 0
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def image_bytes(path: Path | None) -> int:
    """Bytes of a scan as a float32 array: from the image header when SimpleITK can read it (NIfTI, MHA, NRRD),
    else from the bytes on disk (DICOM folders: 16-bit pixels, so x 2)."""
    if path is None or not Path(path).exists():
        return 0
    path = Path(path)
    if path.is_file():
        try:
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            return int(np.prod(reader.GetSize(), dtype=np.int64)) * 4 * reader.GetNumberOfComponents()
        except (ImportError, RuntimeError):
            pass
    return 2 * input_bytes(path)


def estimate_job_bytes(job: Job) -> int:
    """Estimated peak memory of a job: `MEMORY_FACTOR` × the float32 size of scan and reference."""
    return int(MEMORY_FACTOR * (image_bytes(job.scan) + image_bytes(job.reference)))


def available_bytes() -> int:
    """RAM the batch may use now (`RAM_FRACTION` of psutil's available memory)."""
    import psutil

    return int(RAM_FRACTION * psutil.virtual_memory().available)


def run_serial(jobs: Sequence[Job], *, stage: Callable | None = None) -> Iterator[dict]:
    """Run the jobs one after the other in this process."""
    for job in jobs:
        if stage:
            stage(job.name)
        yield run_job(job)


def run_processes(jobs: Sequence[Job], *, workers: int) -> Iterator[dict]:
    """Run the jobs in ``workers`` local processes, memory-aware."""
    names = {}
    import multiprocessing

    threads = max(1, _cpu_count() // workers)  # each worker's compiled kernels and EDTs share the cores
    # "spawn": a forked child inherits its parent's thread pools and runtimes without their threads (numba's
    # OpenMP runtime killed such children when the kernels used its parallel loops)
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_limit_threads, initargs=(threads,)) as pool:
        def submit(job):
            future = pool.submit(run_job, job)
            names[future] = job.name
            return future

        for future in _iter_gated(jobs, submit, lambda fs: cf.wait(fs, return_when=cf.FIRST_COMPLETED),
                                  max_running=workers, budget_bytes=available_bytes()):
            yield _outcome(future, names[future])


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _limit_threads(threads: int) -> None:
    """Worker initializer: numba kernels (and the EDTs, which follow numba) use ``threads`` threads, and the
    worker reuses its freed pages from scan to scan (`ctbone.memory`; not done on dask workers, whose
    memory the cluster's nannies watch and trim)."""
    from ..memory import retain_freed_memory

    retain_freed_memory()
    set_kernel_threads(threads)


def set_kernel_threads(threads: int) -> None:
    """This thread's numba kernels (and the distance transforms, which follow numba) use ``threads`` threads
    (at least 1, at most NUMBA_NUM_THREADS): batch workers, dask tasks and ``ctbone analyze --workers``."""
    try:
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    except (ImportError, ValueError):
        pass


def run_dask(jobs: Sequence[Job], *, scheduler) -> Iterator[dict]:
    """Run the jobs on a dask.distributed cluster (``scheduler``: address string or a Client)."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        from ..errors import CtboneError

        raise CtboneError("--scheduler needs dask.distributed. Potential fix: pip install 'ctbone[cluster]'") from exc
    from ..errors import CtboneError

    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s") if own else scheduler
    except (OSError, TimeoutError, ValueError) as exc:
        raise CtboneError(f"cannot connect to the dask scheduler {scheduler!r} ({exc}). Potential fix: check the "
                          f"address (tcp://HOST:8786) and that the scheduler is running") from exc
    run_id = uuid.uuid4().hex[:8]  # fresh keys: a long-lived cluster must not hand back an earlier run's result
    try:
        tasks = tasks_per_host(_cluster_workers(client))
        futures = {client.submit(run_job_on_dask, job, tasks, pure=False, key=f"ctbone-{run_id}-{i}-{job.name}"):
                   job.name for i, job in enumerate(jobs)}
        for future in as_completed(list(futures)):
            yield _outcome(future, futures[future])
    finally:
        if own:
            client.close()


def _cluster_workers(client) -> dict:
    """The scheduler's description of every worker (some dask versions return 5 unless asked for all)."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # dask.distributed before the n_workers argument: always all of them
        info = client.scheduler_info()
    return info.get("workers", {})


def tasks_per_host(workers: dict) -> dict[str, int]:
    """{worker address: how many tasks can run at once on that worker's host} (the threads of all workers
    on the host), from ``Client.scheduler_info()["workers"]``."""
    on_host: dict[str, int] = {}
    for info in workers.values():
        host = info.get("host", "")
        on_host[host] = on_host.get(host, 0) + int(info.get("nthreads", 1))
    return {address: on_host[info.get("host", "")] for address, info in workers.items()}


def run_job_on_dask(job: Job, tasks_by_worker: dict[str, int]) -> dict:
    """`run_job` on a dask worker, its compiled kernels given this task's share of the host's cores.

    Without it every task would start one numba thread per core: 8 single-threaded worker processes on a
    32-core node would run 256 threads. A worker that joined after the batch started counts its own
    threads only. The setting is per thread, so it holds for this task only.
    """
    try:
        from distributed import get_worker

        worker = get_worker()
        tasks = tasks_by_worker.get(worker.address, worker.state.nthreads)
    except (ImportError, ValueError, AttributeError):  # not on a worker (e.g. a test calling it directly)
        tasks = 1
    set_kernel_threads(_cpu_count() // max(1, int(tasks)))
    return run_job(job)


def _outcome(future, name: str) -> dict:
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a worker that died (e.g. killed for memory) fails only its scan
        return {"name": name, "status": "error", "error": one_line(exc), "seconds": float("nan")}


def _iter_gated(jobs, submit, wait, *, max_running, budget_bytes):
    pending = list(jobs)
    running: dict = {}
    while pending or running:
        while pending and len(running) < max_running:
            need = estimate_job_bytes(pending[0])
            used = sum(running.values())
            if running and used + need > budget_bytes:
                log.info("waiting for memory: %s needs ~%.0f MB; %.0f MB of %.0f MB in use", pending[0].name,
                         need / 1e6, used / 1e6, budget_bytes / 1e6)
                break
            running[submit(pending.pop(0))] = need
        done, _ = wait(list(running))
        for future in done:
            running.pop(future)
            yield future
