"""Whether ctbone's compiled kernels are in numba's on-disk cache yet.

The kernels are compiled for the machine the first time they run and cached beside the code (or under
``NUMBA_CACHE_DIR``), so the first analysis after installing or updating ctbone takes longer: `ctbone analyze` of a
256³ scan took 19-24 s with an empty cache against 5.9-7.9 s once cached, on the 2-core machine of
docs/performance.md. The command says so before it happens, so that nobody takes it for the
analysis' own speed.
"""

from __future__ import annotations

import importlib

# kernels every long-bone analysis runs, from four modules: when they are cached, the run is not a first run
SENTINELS = (("ctbone.segment.distance", "_along_z"), ("ctbone.measure._thickness_paint", "_paint_balls_iso"),
             ("ctbone.measure._band_normals", "_slab_normals"), ("ctbone.measure.lesions_polar", "_between_bins"))


def is_cached(kernel) -> bool | None:
    """True when numba's cache holds code of ``kernel`` (a numba dispatcher) compiled from its current source,
    False when it holds none, None when that cannot be told (caching off, or numba's internals have moved)."""
    try:
        # numba's own index: empty when missing, or written for another version of the source
        return bool(kernel._cache._cache_file._load_index())
    except Exception:  # noqa: BLE001 - numba internals: this check must never break a run
        return None


def kernels_cached() -> bool | None:
    """True when every kernel of `SENTINELS` is cached, False when one is not, None when it cannot be told."""
    states = []
    for module, name in SENTINELS:
        try:
            kernel = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            return None
        states.append(is_cached(kernel))
    if None in states:
        return None
    return all(states)


FIRST_RUN_NOTE = ("ctbone: first run since installing or updating ctbone: compiling its kernels for this machine "
                  "(about half a minute, once; later runs use the cache)")
