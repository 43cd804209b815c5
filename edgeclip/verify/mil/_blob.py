"""Reader for the MIL blob storage file (``weights/weight.bin``) of an mlprogram package.

Layout (coremltools ``mlmodel/src/MILBlob/Blob/StorageFormat.hpp``), little-endian, 64-byte
aligned: a 64-byte header ``{uint32 count, uint32 version=2, 7 x uint64 reserved}``, then per
blob a 64-byte metadata record ``{uint32 sentinel=0xDEADBEEF, uint32 mil_dtype, uint64
size_in_bytes, uint64 data_offset, 5 x uint64 reserved}`` followed by the data. A program's
``blobFileValue.offset`` points at the metadata record.

Parsed here rather than with ``coremltools.libmilstoragepython``: every inconsistency (bad
sentinel, wrong dtype, a blob running past the end of a truncated file) becomes one clear
``ExportError`` instead of a native abort, and the reader needs nothing but numpy.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from ...errors import ExportError

__all__ = ["BlobFile", "BLOB_DTYPES", "unpack_bits"]

_SENTINEL = 0xDEADBEEF
_HEADER = struct.Struct("<II")
_META = struct.Struct("<IIQQ")

# BlobDataType enum -> (name, numpy storage dtype, bits per element)
BLOB_DTYPES: dict[int, tuple[str, np.dtype, int]] = {
    1: ("fp16", np.dtype("<f2"), 16), 2: ("fp32", np.dtype("<f4"), 32),
    3: ("uint8", np.dtype("u1"), 8), 4: ("int8", np.dtype("i1"), 8),
    5: ("bf16", np.dtype("<u2"), 16), 6: ("int16", np.dtype("<i2"), 16),
    7: ("uint16", np.dtype("<u2"), 16), 8: ("int4", np.dtype("i1"), 4),
    9: ("uint1", np.dtype("u1"), 1), 10: ("uint2", np.dtype("u1"), 2),
    11: ("uint4", np.dtype("u1"), 4), 12: ("uint3", np.dtype("u1"), 3),
    13: ("uint6", np.dtype("u1"), 6), 14: ("int32", np.dtype("<i4"), 32),
    15: ("uint32", np.dtype("<u4"), 32),
}


def unpack_bits(packed: np.ndarray, nbits: int, count: int, signed: bool = False) -> np.ndarray:
    """Sub-byte elements packed LSB-first (MIL's layout) -> one uint8/int8 per element.

    Vectorized over groups of ``nbits / gcd(nbits, 8)`` bytes, each holding a whole number of
    elements (1 byte for 1/2/4 bits, 3 bytes for 3/6 bits), so no per-bit arrays are built.
    """
    raw = np.ascontiguousarray(packed).view(np.uint8).reshape(-1)
    if raw.size * 8 < count * nbits:
        raise ExportError(f"packed {nbits}-bit data holds {raw.size * 8 // nbits} elements, "
                          f"{count} expected; the weights are damaged, re-export the model")
    group = nbits // math.gcd(nbits, 8)          # bytes per group
    per = group * 8 // nbits                     # elements per group
    n_groups = -(-count // per)
    raw = np.pad(raw[: n_groups * group], (0, max(0, n_groups * group - raw.size)))
    words = np.zeros(n_groups, dtype=np.uint32)
    for i in range(group):                       # little-endian bytes of each group
        words |= raw[i::group].astype(np.uint32) << np.uint32(8 * i)
    shifts = (np.arange(per, dtype=np.uint32) * np.uint32(nbits))[None, :]
    vals = ((words[:, None] >> shifts) & np.uint32((1 << nbits) - 1)).reshape(-1)[:count]
    if signed:  # two's complement within nbits
        vals = vals.astype(np.int16)
        return np.where(vals >= 1 << (nbits - 1), vals - (1 << nbits), vals).astype(np.int8)
    return vals.astype(np.uint8)


class BlobFile:
    """One weight file, read once into memory; ``read(offset, dtype, count)`` returns a blob."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._buf = self.path.read_bytes()
        except OSError as e:
            raise ExportError(f"cannot read MIL weights {self.path}: {e}; re-export the model") from e
        if len(self._buf) < 64:
            raise ExportError(f"MIL weights {self.path} has {len(self._buf)} bytes, less than its "
                              "64-byte header; the file is truncated, re-export the model")
        self.count, self.version = _HEADER.unpack_from(self._buf, 0)
        if self.version != 2:
            raise ExportError(f"MIL weights {self.path} has storage version {self.version}, "
                              "only version 2 is known; re-export with coremltools >= 7")

    def __len__(self) -> int:
        return len(self._buf)

    def metadata(self, offset: int) -> tuple[str, int, int]:
        """(dtype name, size in bytes, data offset) of the blob whose metadata is at ``offset``."""
        where = f"{self.path.name} offset {offset}"
        if offset < 64 or offset + _META.size > len(self._buf):
            raise ExportError(f"MIL blob at {where} lies outside the {len(self._buf)}-byte file; "
                              "the weights are truncated or do not belong to this model, re-export it")
        sentinel, code, size, data_offset = _META.unpack_from(self._buf, offset)
        if sentinel != _SENTINEL:
            raise ExportError(f"MIL blob at {where} has no 0xDEADBEEF sentinel (found {sentinel:#x}); "
                              "the weights are damaged, re-export the model")
        if code not in BLOB_DTYPES:
            raise ExportError(f"MIL blob at {where} has unknown data type code {code}; "
                              "re-export with the coremltools version edgeclip pins")
        if data_offset + size > len(self._buf):
            raise ExportError(f"MIL blob at {where} needs bytes {data_offset}..{data_offset + size} "
                              f"but the file has {len(self._buf)}; it is truncated, re-export the model")
        return BLOB_DTYPES[code][0], size, data_offset

    def entries(self) -> list[tuple[int, str, int, int]]:
        """``(metadata offset, dtype, size in bytes, data offset)`` of every blob, in file order."""
        out, offset = [], 64
        for _ in range(self.count):
            name, size, start = self.metadata(offset)
            out.append((offset, name, size, start))
            offset = -(-(start + size) // 64) * 64  # entries are 64-byte aligned
        return out

    def read(self, offset: int, dtype: str, count: int) -> np.ndarray:
        """``count`` elements of MIL type ``dtype`` (sub-byte types unpacked to one byte each)."""
        name, size, start = self.metadata(offset)
        if name != dtype:
            raise ExportError(f"MIL blob at {self.path.name} offset {offset} holds {name}, the program "
                              f"expects {dtype}; the weights do not belong to this model, re-export it")
        code = next(k for k, v in BLOB_DTYPES.items() if v[0] == name)
        _, np_dtype, nbits = BLOB_DTYPES[code]
        need = (count * nbits + 7) // 8
        if size < need:
            raise ExportError(f"MIL blob at {self.path.name} offset {offset} has {size} bytes, "
                              f"{need} expected for {count} {dtype} values; re-export the model")
        raw = np.frombuffer(self._buf, dtype=np.uint8, count=need, offset=start)
        if nbits < 8:
            return unpack_bits(raw, nbits, count, signed=name.startswith("int"))
        if name == "bf16":  # bfloat16 is the top half of a float32
            return (raw.view("<u2").astype(np.uint32) << np.uint32(16)).view(np.float32)
        return raw.view(np_dtype).copy()
