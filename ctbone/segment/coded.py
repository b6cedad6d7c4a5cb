"""A calibrated crop held as codes into a table of its distinct values: half its memory or less, the same bits.

A scan's calibrated image is float32 (4 bytes a voxel) but holds few distinct values: a DICOM series stores
integers, and rescale and calibration map each to one float. The crop the segmentation hands to the lesion and
morphometry stages (0.3 GB as float32 for a 512^3 bone, held through both) is therefore kept as uint16 codes
into its table of distinct float32 values, when there are at most 65 536 of them (the bench's 512^3 phantom
holds 2 963), or as uint8 codes when there are at most 256 (an 8-bit scan: a quarter of its float32 memory). A value
read back is the table's entry: the very float32 that was stored, so every result made from it is bit for bit the
one made from the float32 crop. A crop with more distinct values stays float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, types
from numba.extending import overload

from ..parallel import contiguous_copy, run_in_chunks, thread_count

MAX_CODES = 1 << 16
# open addressing over the values' bit patterns, at most half full
_TABLE_SLOTS = 1 << 17


@dataclass(frozen=True, eq=False)
class CodedValues:
    """A float32 (Z, Y, X) image as ``palette[codes]``.

    Attributes
    ----------
    codes : (Z, Y, X) uint8 or uint16 ndarray
        Each voxel's index into ``palette`` (uint8 when it holds at most 256 values; may be a view of a larger
        array).
    palette : (n,) float32 ndarray
        The distinct values, n <= 65 536.
    """

    codes: np.ndarray
    palette: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    def __getitem__(self, box) -> CodedValues:
        """The values on ``box`` (basic slices): a view of the codes, the same table."""
        return CodedValues(self.codes[box], self.palette)

    def decoded(self) -> np.ndarray:
        """The float32 values, a new C-contiguous array."""
        out = np.empty(self.codes.shape, np.float32)
        if out.size:
            run_in_chunks(_look_up_slices, out.shape[0], self.codes, self.palette, out)
        return out

    def at(self, mask: np.ndarray) -> np.ndarray:
        """The values where ``mask`` holds (1-D float32, in ``array[mask]``'s order)."""
        return self.palette[self.codes[mask]]

    def compacted(self) -> CodedValues:
        """A C-contiguous copy of the codes (a view would keep the whole array it was cut from alive)."""
        return CodedValues(contiguous_copy(self.codes), self.palette)


def encode_values(array: np.ndarray) -> CodedValues | None:
    """``array`` (3-D float32, any strides) as `CodedValues`, or None when it holds more than 65 536 distinct values.

    Each thread codes its own slab of slices with its own table (the tables then merged, the later slabs' codes
    renumbered): ~0.2 s for a 512^3 bone's crop on two threads.
    """
    array = np.asarray(array)
    if array.dtype != np.float32 or array.ndim != 3:
        raise ValueError(f"encode_values takes a 3-D float32 array, got {array.dtype} {array.shape}")
    codes = np.empty(array.shape, np.uint16)
    parts = max(1, min(thread_count(), array.shape[0]))
    keys = np.zeros((parts, _TABLE_SLOTS), np.uint32)
    slots = np.full((parts, _TABLE_SLOTS), -1, np.int32)
    palettes = np.empty((parts, MAX_CODES), np.uint32)
    counts = np.zeros(parts, np.int64)
    run_in_chunks(_encode_parts, parts, array.view(np.uint32), codes, keys, slots, palettes, counts)
    if (counts < 0).any():
        return None
    del keys, slots
    # the tables merged in the slabs' order: the first slab's codes stand, the others' are renumbered
    merged: dict[int, int] = {}
    renumbered = [np.array([merged.setdefault(int(b), len(merged)) for b in palettes[p, :counts[p]]], np.int64)
                  for p in range(parts)]
    if len(merged) > MAX_CODES:
        return None
    # at most 256 values (an 8-bit scan, a binary one): a byte a voxel, the slabs renumbered on the way
    out = np.empty(array.shape, np.uint8) if len(merged) <= 256 else codes
    for p in range(parts):
        if out is not codes or not np.array_equal(renumbered[p], np.arange(len(renumbered[p]))):
            z0, z1 = _part_slices(array.shape[0], parts, p)
            run_in_chunks(_look_up_slices, z1 - z0, codes[z0:z1], renumbered[p].astype(out.dtype), out[z0:z1])
    palette = np.fromiter(merged.keys(), np.uint32, len(merged)).view(np.float32)
    return CodedValues(out, palette)


def decoded_values(values) -> np.ndarray:
    """The float32 values of ``values``: an array as it is, `CodedValues` decoded (a new array)."""
    return values.decoded() if isinstance(values, CodedValues) else values


def values_where(values, mask: np.ndarray) -> np.ndarray:
    """``values[mask]`` (1-D float32) of an array or of `CodedValues`."""
    return values.at(mask) if isinstance(values, CodedValues) else values[mask]


def codes_and_palette(values) -> tuple[np.ndarray, np.ndarray | None]:
    """(codes, palette) of `CodedValues`, (the array, None) of an array: the arguments of a kernel that reads
    either through `stored_value` / `row_value`."""
    return (values.codes, values.palette) if isinstance(values, CodedValues) else (values, None)


def stored_value(values, palette, z, y, x):  # pragma: no cover - compiled: the overload below is what runs
    """In a compiled kernel: ``values[z, y, x]``, or ``palette[values[z, y, x]]`` when ``palette`` is not None."""


@overload(stored_value)
def _stored_value(values, palette, z, y, x):
    if isinstance(palette, types.NoneType):
        return lambda values, palette, z, y, x: values[z, y, x]
    return lambda values, palette, z, y, x: palette[values[z, y, x]]


def row_value(row, palette, x):  # pragma: no cover - compiled: the overload below is what runs
    """In a compiled kernel: ``row[x]`` as float64, through ``palette`` when it is not None."""


@overload(row_value)
def _row_value(row, palette, x):
    if isinstance(palette, types.NoneType):
        return lambda row, palette, x: np.float64(row[x])
    return lambda row, palette, x: np.float64(palette[row[x]])


def _part_slices(nz: int, parts: int, p: int) -> tuple[int, int]:
    return nz * p // parts, nz * (p + 1) // parts


@njit(cache=True, nogil=True)
def _encode_parts(bits, codes, keys, slots, palettes, counts, p0, p1):  # pragma: no cover - compiled
    nz = bits.shape[0]
    parts = counts.size
    mask = keys.shape[1] - 1
    for p in range(p0, p1):
        n = 0
        last, last_code = np.uint32(0), -1
        for z in range(nz * p // parts, nz * (p + 1) // parts):
            for y in range(bits.shape[1]):
                for x in range(bits.shape[2]):
                    b = bits[z, y, x]
                    if last_code >= 0 and b == last:  # runs of one value (air, a mask's 0 and 1) skip the table
                        codes[z, y, x] = last_code
                        continue
                    h = np.int64((b * np.uint32(2654435761)) >> np.uint32(15)) & mask
                    while True:
                        c = slots[p, h]
                        if c < 0:
                            if n >= palettes.shape[1]:
                                counts[p] = -1
                                return
                            keys[p, h] = b
                            slots[p, h] = n
                            palettes[p, n] = b
                            c = n
                            n += 1
                            break
                        if keys[p, h] == b:
                            break
                        h = (h + 1) & mask
                    codes[z, y, x] = c
                    last, last_code = b, c
        counts[p] = n


@njit(cache=True, nogil=True)
def _look_up_slices(codes, table, out, z0, z1):  # pragma: no cover - compiled
    # out = table[codes] over slices z0 .. z1 - 1: the values (a palette), or new codes (out may then be codes itself:
    # each voxel is read before it is written)
    for z in range(z0, z1):
        for y in range(codes.shape[1]):
            for x in range(codes.shape[2]):
                out[z, y, x] = table[codes[z, y, x]]
