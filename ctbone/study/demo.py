"""`ctbone demo`: write the demo phantom study and run the batch on it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..options import AnalysisOptions
from .runner import run_batch

log = logging.getLogger(__name__)

# the demo's lytic cavities open the cortex over up to ~0.6 mm: the envelope must bridge wider than the
# widest opening (METHODS-NOTES: closing radius >= half the widest perforation); a narrower one leaves it
# open there, and segment bridges it from the slices around it, with a warning
DEMO_BRIDGE_MM = 0.9


def run_demo(outdir, *, workers: int = 1, quiet: bool = False, seed: int = 0) -> int:
    """Generate the demo study into ``outdir/study`` and analyse it into ``outdir``.

    Parameters
    ----------
    outdir : path
        Output folder; the phantom scans go to ``outdir/study`` (reused when already written).
    workers : int, keyword-only
        Local worker processes for the batch.
    quiet : bool, keyword-only
        No progress bar.
    seed : int, keyword-only
        Noise seed of the phantoms.

    Returns
    -------
    int
        The batch exit status (0 ok, 1 some scans failed).
    """
    outdir = Path(outdir)
    study = outdir / "study"
    manifest = study / "manifest.csv"
    if not manifest.is_file():
        log.info("writing the demo phantom study to %s", study)
        manifest = write_phantom_study(study, seed=seed, quiet=quiet)
    options = AnalysisOptions(max_defect_diameter_mm=DEMO_BRIDGE_MM)
    return run_batch(manifest, outdir, options=options, workers=workers, quiet=quiet, control="control")


def write_phantom_study(study: Path, *, seed: int, quiet: bool) -> Path:
    """`phantoms.write_study` with a progress bar: the twelve scans take about half a minute (for `ctbone demo`,
    before the batch's own bar, and `ctbone phantom --study`)."""
    from tqdm import tqdm

    from .. import phantoms

    bar = tqdm(total=len(phantoms.study_scans()), file=sys.stderr, disable=quiet, unit="scan",
               desc="demo phantoms", dynamic_ncols=True)

    def written(name: str) -> None:
        bar.set_postfix_str(name, refresh=False)
        bar.update(1)

    try:
        manifest = phantoms.write_study(study, seed=seed, progress=written)
    finally:
        bar.close()
    return manifest
