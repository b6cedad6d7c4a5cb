"""Speed and agreement of ctbone's local thickness vs the `localthickness` package and a brute-force reference.

Run once, at modest sizes (the machine is shared):  python scripts/bench_thickness.py [--sizes 64 128 192]

Structures (isotropic voxels so that `localthickness`, which knows no spacing, is comparable):
"bone" = a smoothed random field thresholded to 30 % (trabecular-like, radii up to ~8 voxels);
"marrow" = its complement at 15 % bone with a coarser field (thick spaces, radii up to ~25 voxels, like
the marrow space measured for Tb.Sp). The brute-force reference (same definition,
every voxel against every ball) runs only on the smallest size. Reported: wall time (after a JIT warm-up),
mean thickness over the structure (voxels), and relative differences.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from ctbone.measure._thickness_exact import local_thickness_exact
from ctbone.measure.thickness import local_thickness


def structure(n: int, *, seed: int = 0, fraction: float = 0.3, sigma: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((n, n, n)), sigma=sigma)
    return field > np.quantile(field, 1 - fraction)


KINDS = {
    "bone": lambda n: structure(n),
    "marrow": lambda n: ~structure(n, fraction=0.15, sigma=6.0),
}


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 128])
    parser.add_argument("--exact-max", type=int, default=48, help="largest size for the O(N²) brute force")
    args = parser.parse_args(argv)

    local_thickness(structure(16), spacing_mm=(1, 1, 1))  # JIT warm-up (numba cache)
    local_thickness_exact(structure(8), spacing_mm=(1, 1, 1))
    try:
        import localthickness
    except ImportError:  # optional: pip install localthickness
        localthickness = None

    print(f"{'kind':>7} {'size':>6} {'ctbone_s':>9} {'lt_pkg_s':>9} {'speedup':>8} {'ctbone_mean':>12} {'lt_pkg_mean':>12} "
          f"{'exact_mean':>11} {'vs_exact_%':>10} {'vs_lt_%':>8}")
    for kind, n in [(k, n) for k in KINDS for n in args.sizes]:
        mask = KINDS[kind](n)
        ours, t_ours = timed(local_thickness, mask, spacing_mm=(1, 1, 1))
        m_ours = float(ours[mask].mean())
        t_lt = m_lt = float("nan")
        if localthickness is not None:
            theirs, t_lt = timed(localthickness.local_thickness, mask)
            m_lt = float(2 * np.asarray(theirs)[mask].mean())  # the package returns radii
        m_exact = float("nan")
        if n <= args.exact_max:
            exact, _ = timed(local_thickness_exact, mask, spacing_mm=(1, 1, 1))
            m_exact = float(exact[mask].mean())
        print(f"{kind:>7} {n:>6} {t_ours:>9.3f} {t_lt:>9.3f} {t_lt / t_ours:>8.1f} {m_ours:>12.3f} {m_lt:>12.3f} "
              f"{m_exact:>11.3f} {100 * (m_ours / m_exact - 1):>10.2f} {100 * (m_ours / m_lt - 1):>8.2f}")


if __name__ == "__main__":
    main()
