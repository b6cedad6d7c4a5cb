"""Phantoms on disk: a real DICOM series with distractors and ``truth.json``.

``write_phantom`` makes the kind of folder a scanner export gives: the CT
series under random file names, a small scout series with another UID and a
non-DICOM reconstruction log beside it, so the reader is exercised on every
phantom.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..volume import Volume
from .build import make_phantom
from .spec import PhantomSpec

log = logging.getLogger(__name__)


def _dicom_writer():
    from ..io.dicom_write import write_dicom_series

    return write_dicom_series


def _uid(prefix_seed: str) -> str:
    """A deterministic DICOM UID (2.25 = UUID-derived root) so a rerun writes identical files."""
    import hashlib

    return "2.25." + str(int(hashlib.sha256(prefix_seed.encode()).hexdigest()[:30], 16))


def _scout(volume: Volume) -> Volume:
    """A few-slice low-resolution localizer: a coarse view of the volume, another series."""
    step = 4
    small = volume.array[::step, ::step, ::step]
    z_mid = small.shape[0] // 2
    array = np.ascontiguousarray(small[max(0, z_mid - 1):z_mid + 2])
    origin = volume.index_to_physical((max(0, z_mid - 1) * step, 0, 0))
    return Volume(array, spacing=tuple(s * step for s in volume.spacing), origin=tuple(origin),
                  direction=volume.direction, unit=volume.unit, meta={"source": "scout"})


def write_phantom(spec: PhantomSpec, outdir, *, seed: int = 0, distractors: bool = True,
                  patient_id: str | None = None) -> Path:
    """Write a phantom as a DICOM folder (``outdir/dicom/``) plus ``outdir/truth.json``.

    Parameters
    ----------
    spec : PhantomSpec
    outdir : path
        Created if needed; ``dicom/`` inside it holds the series (random file names, int16
        HU), and with ``distractors`` a 3-slice scout series (other UID), a ``.log`` file and a
        ``preview.png``.
    seed : int, keyword-only
        Noise seed, also used to shuffle file names and derive the UIDs.
    distractors : bool, keyword-only
    patient_id : str, optional
        Patient ID written to the files (default "PHANTOM-<side>-<seed>").

    Returns
    -------
    Path
        ``outdir``.
    """
    write_dicom_series = _dicom_writer()
    outdir = Path(outdir)
    folder = outdir / "dicom"
    volume, truth = make_phantom(spec, seed=seed)  # first: an impossible spec fails before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    key = f"{spec.to_json(sort_keys=True)}|{seed}"
    pid = patient_id or f"PHANTOM-{spec.side}-{seed}"
    study_uid = _uid(key + "|study")
    write_dicom_series(volume, folder, series_uid=_uid(key + "|ct"), study_uid=study_uid, series_number=1,
                       series_description=f"ctbone phantom {spec.side} limb", patient_name="PHANTOM",
                       patient_id=pid, modality="CT", dtype="int16", shuffle_seed=seed, file_names="random")
    if distractors:
        write_dicom_series(_scout(volume), folder, series_uid=_uid(key + "|scout"), study_uid=study_uid,
                           series_number=99,
                           series_description="localizer", patient_name="PHANTOM", patient_id=pid,
                           modality="CT", dtype="int16", shuffle_seed=seed + 1, file_names="random")
        (folder / "reconstruction.log").write_text(
            "[Reconstruction]\nctbone synthetic phantom: not an image, the reader must skip this file\n"
            f"Pixel Size (um)={spec.voxel_mm * 1000:g}\n")
        _write_thumbnail(volume, folder / "preview.png")
    truth["dicom_folder"] = "dicom"
    truth["series_uid"] = _uid(key + "|ct")
    (outdir / "truth.json").write_text(json.dumps(truth, indent=1, default=_json_default))
    log.info("wrote phantom %s to %s", volume, outdir)
    return outdir


def _write_thumbnail(volume: Volume, path: Path) -> None:
    """A PNG of the middle slice, as scanner software leaves beside its exports (another file to skip)."""
    import imageio.v3 as iio

    middle = volume.array[volume.shape[0] // 2]
    scaled = np.clip((middle + 1000.0) / 2600.0 * 255.0, 0, 255).astype(np.uint8)
    iio.imwrite(path, scaled)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
