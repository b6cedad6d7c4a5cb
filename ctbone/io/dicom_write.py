"""Write a `Volume` as a real DICOM CT series (one file per slice, or one Enhanced CT file).

Used by the phantoms and the tests: the files carry full geometry
(ImagePositionPatient, ImageOrientationPatient, PixelSpacing), the rescale
tags, and valid UIDs, so that 3D Slicer, SimpleITK and ctbone read them alike.
Stored values are ``round((value - intercept) / slope)`` in the chosen integer
type, clipped to its range.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np

from ..volume import Volume

_DTYPES = {"int16": (np.int16, 1), "uint16": (np.uint16, 0), "uint8": (np.uint8, 0), "int32": (np.int32, 1),
           "uint32": (np.uint32, 0)}


def _file_meta(sop_class: str, sop_instance: str, transfer_syntax):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _stored(values: np.ndarray, dtype: str, slope: float, intercept: float) -> np.ndarray:
    kind, _ = _DTYPES[dtype]
    info = np.iinfo(kind)
    scaled = np.rint((values.astype(np.float64) - intercept) / slope)
    return np.clip(scaled, info.min, info.max).astype(kind)


def _common(ds, volume: Volume, *, study_uid, series_uid, series_number, series_description, patient_name,
            patient_id, modality, manufacturer, dtype, slope, intercept):
    now = datetime.datetime(2026, 1, 1)  # fixed, so that rewriting gives identical files
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = series_uid + ".1" if len(series_uid) < 62 else series_uid
    ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
    ds.Modality = modality
    ds.Manufacturer = manufacturer
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    kind, signed = _DTYPES[dtype]
    bits = np.dtype(kind).itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = signed
    ds.RescaleSlope = f"{slope:.10g}"
    ds.RescaleIntercept = f"{intercept:.10g}"
    ds.RescaleType = "HU" if volume.unit == "HU" else "US"


def _orientation(volume: Volume) -> list[str]:
    row_dir, col_dir = volume.direction[:, 0], volume.direction[:, 1]
    return [f"{v:.8g}" for v in (*row_dir, *col_dir)]


def _pixel_spacing(volume: Volume) -> list[str]:
    # DICOM PixelSpacing = [between rows (y), between columns (x)]
    return [f"{volume.spacing[1]:.8g}", f"{volume.spacing[2]:.8g}"]


def _write_atomic(ds, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    ds.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, path)


def _names(n: int, file_names: str, rng) -> list[str]:
    if file_names == "random":
        return [f"{rng.integers(0, 2**48):012x}.dcm" for _ in range(n)]
    return [f"IM{i + 1:05d}.dcm" for i in range(n)]


def write_dicom_series(volume: Volume, folder, *, series_uid: str | None = None, series_number: int = 1,
                       series_description: str = "", patient_name: str = "PHANTOM", patient_id: str = "",
                       study_uid: str | None = None, modality: str = "CT", dtype: str = "int16",
                       rescale_slope: float = 1.0, rescale_intercept: float = 0.0, shuffle_seed: int | None = None,
                       file_names: str = "instance", transfer_syntax=None, manufacturer: str = "ctbone",
                       multiframe: bool = False, first_index: int = 0) -> list[Path]:
    """Write ``volume`` as a DICOM CT series into ``folder``.

    Parameters
    ----------
    volume : Volume
        Image in HU (or raw gray); geometry is written as DICOM geometry.
    folder : path
        Created if needed.
    series_uid, study_uid : str, optional
        Default: new UIDs.
    dtype : {"int16", "uint16", "uint8", "int32", "uint32"}
        Stored pixel type.
    rescale_slope, rescale_intercept : float
        Written as RescaleSlope/RescaleIntercept; values are stored as
        ``round((value - intercept) / slope)``.
    shuffle_seed : int, optional
        Seeds random file names (``file_names="random"``) and the order files are written in.
    file_names : {"instance", "random"}
    transfer_syntax : UID, optional
        Default Explicit VR Little Endian; RLE, JPEG-LS, JPEG 2000 lossless and Deflated
        Explicit VR Little Endian are encoded by pydicom's encoders.
    multiframe : bool
        One Enhanced CT file with per-frame functional groups instead of one file per slice.
    first_index : int
        Index of ``volume``'s first slice in the whole series (instance numbers and file names start
        there): a series too large for memory is written one slab at a time with the same UIDs.

    Returns
    -------
    list of Path
        The files written, in slice order.
    """
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    transfer_syntax = transfer_syntax or ExplicitVRLittleEndian
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    rng = np.random.default_rng(shuffle_seed)
    stored = _stored(volume.array, dtype, rescale_slope, rescale_intercept)
    common = dict(study_uid=study_uid, series_uid=series_uid, series_number=series_number,
                  series_description=series_description, patient_name=patient_name, patient_id=patient_id,
                  modality=modality, manufacturer=manufacturer, dtype=dtype, slope=rescale_slope,
                  intercept=rescale_intercept)
    if multiframe:
        return [_write_enhanced(volume, stored, folder, transfer_syntax, rng, file_names, common)]

    if first_index and (multiframe or file_names != "instance"):
        raise ValueError("first_index needs one file per slice named by instance number")
    paths = [folder / name for name in _names(first_index + volume.shape[0], file_names, rng)[first_index:]]
    order = rng.permutation(volume.shape[0]) if shuffle_seed is not None else range(volume.shape[0])
    for z in order:
        sop_uid = generate_uid()
        ds = Dataset()
        ds.file_meta = _file_meta("1.2.840.10008.5.1.4.1.1.2", sop_uid, ExplicitVRLittleEndian)
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = sop_uid
        _common(ds, volume, **common)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = first_index + int(z) + 1
        ds.ImagePositionPatient = [f"{v:.8g}" for v in volume.index_to_physical((z, 0, 0))]
        ds.ImageOrientationPatient = _orientation(volume)
        ds.PixelSpacing = _pixel_spacing(volume)
        ds.SliceThickness = f"{volume.spacing[0]:.8g}"
        ds.PixelData = np.ascontiguousarray(stored[z]).tobytes()
        if transfer_syntax != ExplicitVRLittleEndian:
            _encode(ds, transfer_syntax, stored[z])
        _write_atomic(ds, paths[z])
    return paths


def _encode(ds, transfer_syntax, frames: np.ndarray) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        return
    ds.compress(transfer_syntax, np.ascontiguousarray(frames), generate_instance_uid=False)


def _write_enhanced(volume, stored, folder, transfer_syntax, rng, file_names, common) -> Path:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_class = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_uid, ExplicitVRLittleEndian)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    _common(ds, volume, **common)
    for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
        delattr(ds, keyword)  # in the functional groups for Enhanced CT
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = volume.shape[0]

    measures = Dataset()
    measures.PixelSpacing = _pixel_spacing(volume)
    measures.SliceThickness = f"{volume.spacing[0]:.8g}"
    orientation = Dataset()
    orientation.ImageOrientationPatient = _orientation(volume)
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    transform = Dataset()
    transform.RescaleSlope = f"{common['slope']:.10g}"
    transform.RescaleIntercept = f"{common['intercept']:.10g}"
    transform.RescaleType = "HU" if volume.unit == "HU" else "US"
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for z in range(volume.shape[0]):
        position = Dataset()
        position.ImagePositionPatient = [f"{v:.8g}" for v in volume.index_to_physical((z, 0, 0))]
        frame = Dataset()
        frame.PlanePositionSequence = Sequence([position])
        per_frame.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    if transfer_syntax != ExplicitVRLittleEndian:
        _encode(ds, transfer_syntax, stored)
    path = folder / _names(1, file_names, rng)[0]
    _write_atomic(ds, path)
    return path
