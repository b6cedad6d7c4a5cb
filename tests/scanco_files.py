"""Scanco ISQ and AIM files (AIM masks run-length compressed too) written to the layouts `ctbone.io.scanco`
documents, for the reader's tests.

Only what the reader needs is filled in; the other header fields are left at zero, as on files written by
other tools (ITK writes the same 512-byte header with no extended blocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

BLOCK = 512


def vax_g_bytes(value: float) -> bytes:
    """``value`` as the 8 bytes of a VAX G-float in a Scanco header (the inverse of `scanco.vax_float`)."""
    ieee = np.array([value * 4.0], ">f8").tobytes()
    return bytes(ieee[i ^ 1] for i in range(8))


def _put_int(buf: bytearray, at: int, value: int) -> None:
    buf[at:at + 4] = int(value).to_bytes(4, "little", signed=True)


def write_isq(path, voxels_zyx: np.ndarray, spacing_um: float, *, mu_scaling: int = 8192, calibration=None,
              multiheader: bool = True, entry_before: int = 0, patient: str = "MOUSE 07", data_type: int = 3) -> Path:
    """Write ``voxels_zyx`` (int16) as an ISQ. ``calibration``: (slope, intercept, mu_water) in a "Calibration"
    block of the extended header, laid out as ITK's writer lays it out: a "MultiHeader" block, a directory whose
    second entry names the two calibration blocks that follow. ``entry_before`` > 0 gives the directory's first
    entry that many blocks of its own, before the calibration's."""
    path = Path(path)
    voxels = np.ascontiguousarray(voxels_zyx, dtype="<i2")
    nz, ny, nx = voxels.shape
    blocks = []  # extended header blocks after the first
    if calibration is not None:
        directory = bytearray(BLOCK)
        for i, (name, size) in enumerate((("Scan info" if entry_before else "", entry_before), ("Calibration", 2))):
            directory[128 * i + 8:128 * i + 24] = name.ljust(16).encode()
            _put_int(directory, 128 * i + 24, size)
        cal = bytearray(2 * BLOCK)
        cal[28:92] = b"70 kVp, BH: 200 mg HA/ccm, Scaling 8192".ljust(64)
        _put_int(cal, 632, 2)  # rescale type
        cal[648:664] = b"mg HA/ccm".ljust(16)
        for at, value in zip((664, 672, 688), calibration):
            cal[at:at + 8] = vax_g_bytes(value)
        lead = bytearray(BLOCK)
        lead[8:24] = b"MultiHeader     "
        blocks = ([lead] if multiheader else []) + [directory, bytearray(BLOCK * entry_before), cal]
    head = bytearray(BLOCK)
    head[0:16] = b"CTDATA-HEADER_V1"
    _put_int(head, 16, data_type)
    _put_int(head, 20, voxels.nbytes)
    _put_int(head, 24, voxels.nbytes // BLOCK)
    _put_int(head, 28, 77)  # patient index
    for i, n in enumerate((nx, ny, nz)):
        _put_int(head, 44 + 4 * i, n)
        _put_int(head, 56 + 4 * i, round(n * spacing_um))
    _put_int(head, 68, round(spacing_um))
    _put_int(head, 72, round(spacing_um))
    _put_int(head, 76, 12_500)  # first slice at 12.5 mm
    _put_int(head, 80, int(voxels.min()))
    _put_int(head, 84, int(voxels.max()))
    _put_int(head, 88, mu_scaling)
    _put_int(head, 112, 4255)  # measurement index
    head[128:168] = patient.encode().ljust(40)
    _put_int(head, 168, 70_000)  # 70 kV
    _put_int(head, 172, 114)     # 114 µA
    _put_int(head, 508, sum(len(b) for b in blocks) // BLOCK)  # data offset: the blocks after the first
    path.write_bytes(bytes(head) + b"".join(bytes(b) for b in blocks) + voxels.tobytes())
    return path


AIM_TYPE_CODES = {"int8": 0x00010001, "uint8": 0x00160001, "int16": 0x00020002, "uint16": 0x00170002,
                  "int32": 0x00030004, "float32": 0x001A0004}


def vax_f_bytes(value: float) -> bytes:
    """``value`` as the 4 bytes of a VAX F-float (an AIM 020 voxel size)."""
    ieee = np.array([value * 4.0], ">f4").tobytes()
    return bytes(ieee[i ^ 1] for i in range(4))


def _log_text(entries: dict) -> bytes:
    """A processing log as Scanco writes it: comment lines, then "key  value" lines padded to columns."""
    lines = ["!", "! Processing Log", "!", "!" + "-" * 79]
    lines += [f"{key:<30}{value:>20}" for key, value in entries.items()]
    return ("\n".join(lines) + "\n").encode("latin-1")


AIM_RUN_LENGTH_CODES = {"run-length bits": 0x00150001, "run-length bytes": 0x00080002}


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value, length) of each maximal run of equal values along ``flat``."""
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    return flat[starts], np.diff(np.r_[starts, flat.size])


def run_length_stream(voxels: np.ndarray, compression: str, size_field_bytes: int) -> bytes:
    """``voxels`` (int8) as the data of a run-length compressed AIM: its length (counting this field), then
    (count, value) pairs ("run-length bytes"), or the mask's two values and one count per run, 255 standing for
    254 voxels after which the same value goes on ("run-length bits")."""
    values, lengths = _runs(np.ascontiguousarray(voxels, np.int8).ravel())
    out = bytearray()
    if compression == "run-length bytes":
        for value, length in zip(values.tolist(), lengths.tolist()):
            while length > 0:
                step = min(length, 255)
                out += bytes([step, value & 0xFF])
                length -= step
    else:
        pair = sorted(set(values.tolist()))  # a mask: its background (the lower value) first
        if len(pair) > 2:
            raise ValueError("a run-length-bits AIM holds two values")
        if len(pair) == 1:  # one value throughout: the second is never switched to
            pair *= 2
        out += bytes([pair[0] & 0xFF, pair[1] & 0xFF])
        current = pair[0]
        for value, length in zip(values.tolist(), lengths.tolist()):
            if value != current:  # the volume starts with the second value: an empty first run switches to it
                out.append(0)
                current = value
            while length > 254:
                out.append(255)  # 254 voxels, the same value goes on
                length -= 254
            out.append(length)  # then the other value
            current = pair[1] if current == pair[0] else pair[0]
    return (len(out) + size_field_bytes).to_bytes(size_field_bytes, "little") + bytes(out)


def write_aim(path, voxels_zyx: np.ndarray, spacing_um: float, *, version: str = "030", position=(0, 0, 0),
              log: dict | None = None, type_code: int | None = None, compression: str | None = None) -> Path:
    """Write ``voxels_zyx`` as an AIM of ``version`` "020" or "030" (its dtype's type code unless ``type_code``),
    the volume's first voxel at ``position`` (x, y, z voxels) of the scan it was cut from, ``log`` the processing
    log's entries (key -> value text); ``compression`` "run-length bits" or "run-length bytes" writes int8
    voxels as IPL writes segmented masks."""
    path = Path(path)
    voxels = np.ascontiguousarray(voxels_zyx)
    voxels = voxels.astype(voxels.dtype.newbyteorder("<"))
    code = AIM_TYPE_CODES[voxels.dtype.name] if type_code is None else type_code
    if compression is not None:
        code = AIM_RUN_LENGTH_CODES[compression]
        data = run_length_stream(voxels, compression, 8 if version == "030" else 4)
    else:
        data = voxels.tobytes()
    nz, ny, nx = voxels.shape
    log_bytes = _log_text(log or {})
    if version == "030":
        image = bytearray(224)
        image[12:16] = code.to_bytes(4, "little")
        image[16:40] = np.array(position, "<i8").tobytes()
        image[40:64] = np.array((nx, ny, nz), "<i8").tobytes()
        image[184:208] = np.array([round(spacing_um * 1000)] * 3, "<i8").tobytes()  # 1e-6 mm
        pre = np.array([40, len(image), len(log_bytes), len(data), 0], "<i8").tobytes()
        head = b"AIMDATA_V030   \0" + pre
    else:
        image = bytearray(140)
        image[20:24] = code.to_bytes(4, "little")
        image[24:36] = np.array(position, "<i4").tobytes()
        image[36:48] = np.array((nx, ny, nz), "<i4").tobytes()
        image[108:120] = vax_f_bytes(spacing_um / 1000.0) * 3
        head = np.array([20, len(image), len(log_bytes), len(data), 0], "<i4").tobytes()
    path.write_bytes(head + bytes(image) + log_bytes + data)
    return path
