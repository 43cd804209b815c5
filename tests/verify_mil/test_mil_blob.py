"""The weight.bin reader and the compressed-weight decoders, against hand-built files and
coremltools' own writer and reference decompression."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from edgeclip.errors import ExportError
from edgeclip.verify.mil import BlobFile
from edgeclip.verify.mil._blob import unpack_bits
from edgeclip.verify.mil._table import OPS


def _blob_file(path, blobs: list[tuple[int, bytes]], sentinel: int = 0xDEADBEEF) -> list[int]:
    """Write a storage-format file by hand; returns the metadata offset of each blob."""
    out, offsets = bytearray(struct.pack("<II", len(blobs), 2).ljust(64, b"\0")), []
    for code, data in blobs:
        offsets.append(len(out))
        out += struct.pack("<IIQQ", sentinel, code, len(data), len(out) + 64).ljust(64, b"\0")
        out += data.ljust(-(-len(data) // 64) * 64, b"\0")
    path.write_bytes(bytes(out))
    return offsets


def test_reads_hand_built_file_and_lists_entries(tmp_path):
    f32 = np.array([1.5, -2.0, 3.25], np.float32)
    u4 = np.array([0x21, 0x03], np.uint8)  # 4-bit elements 1, 2, 3 (LSB first)
    offs = _blob_file(tmp_path / "w.bin", [(2, f32.tobytes()), (11, u4.tobytes())])
    b = BlobFile(tmp_path / "w.bin")
    np.testing.assert_array_equal(b.read(offs[0], "fp32", 3), f32)
    np.testing.assert_array_equal(b.read(offs[1], "uint4", 3), [1, 2, 3])
    assert [(o, d, n) for o, d, n, _ in b.entries()] == [(offs[0], "fp32", 12), (offs[1], "uint4", 2)]
    with pytest.raises(ExportError, match="holds fp32, the program expects fp16"):
        b.read(offs[0], "fp16", 3)
    with pytest.raises(ExportError, match="has 12 bytes, 16 expected"):
        b.read(offs[0], "fp32", 4)
    with pytest.raises(ExportError, match="outside"):
        b.read(10_000, "fp32", 1)


def test_bad_sentinel_and_truncation(tmp_path):
    offs = _blob_file(tmp_path / "s.bin", [(2, b"\0" * 16)], sentinel=0x12345678)
    with pytest.raises(ExportError, match="sentinel"):
        BlobFile(tmp_path / "s.bin").read(offs[0], "fp32", 4)
    offs = _blob_file(tmp_path / "t.bin", [(2, b"\0" * 256)])
    data = (tmp_path / "t.bin").read_bytes()
    (tmp_path / "t.bin").write_bytes(data[:200])
    with pytest.raises(ExportError, match="truncated"):
        BlobFile(tmp_path / "t.bin").read(offs[0], "fp32", 64)
    (tmp_path / "h.bin").write_bytes(data[:20])
    with pytest.raises(ExportError, match="64-byte header"):
        BlobFile(tmp_path / "h.bin")


@pytest.mark.parametrize("nbits", [1, 2, 3, 4, 6])
def test_unpack_bits_known_layout(nbits):
    """Elements packed LSB-first into a little-endian bit stream, as MIL stores them."""
    vals = np.random.default_rng(nbits).integers(0, 1 << nbits, 37)
    bits = np.array([(v >> i) & 1 for v in vals for i in range(nbits)], np.uint8)
    packed = np.packbits(bits, bitorder="little")
    np.testing.assert_array_equal(unpack_bits(packed, nbits, vals.size), vals)
    signed = np.where(vals >= 1 << (nbits - 1), vals - (1 << nbits), vals) if nbits > 1 else vals
    if nbits > 1:
        np.testing.assert_array_equal(unpack_bits(packed, nbits, vals.size, signed=True), signed)


@pytest.mark.toolchain
def test_matches_coremltools_blob_writer(tmp_path):
    writer_mod = pytest.importorskip("coremltools.libmilstoragepython")
    rng = np.random.default_rng(0)
    cases = {"fp32": rng.standard_normal(50).astype(np.float32),
             "fp16": rng.standard_normal(33).astype(np.float16),
             "int8": rng.integers(-128, 128, 70).astype(np.int8),
             "uint8": rng.integers(0, 256, 9).astype(np.uint8),
             "uint4": rng.integers(0, 16, 101).astype(np.uint8),
             "int4": rng.integers(-8, 8, 45).astype(np.int8),
             "uint6": rng.integers(0, 64, 31).astype(np.uint8),
             "uint3": rng.integers(0, 8, 29).astype(np.uint8),
             "uint1": rng.integers(0, 2, 13).astype(np.uint8)}
    path = tmp_path / "weight.bin"
    w = writer_mod._BlobStorageWriter(str(path))
    method = {"fp32": "write_float_data", "fp16": "write_fp16_data"}
    offsets = {}
    for name, v in cases.items():
        data = v.view(np.uint16) if name == "fp16" else v
        offsets[name] = getattr(w, method.get(name, f"write_{name}_data"))(np.ascontiguousarray(data))
    del w  # flushes the file
    b = BlobFile(path)
    for name, v in cases.items():
        np.testing.assert_array_equal(b.read(offsets[name], name, v.size), v, err_msg=name)


@pytest.mark.toolchain
@pytest.mark.parametrize("seed", [0, 1])
def test_decompression_matches_coremltools_reference(seed):
    pytest.importorskip("coremltools")
    from coremltools.converters.mil.mil.ops.defs.iOS16 import constexpr_ops as c16
    from coremltools.converters.mil.mil.ops.defs.iOS18 import compression as c18

    def run(op_type, **a):
        return OPS.get(op_type)(a, [])

    rng = np.random.default_rng(seed)
    # iOS18 per-grouped-channel scalar LUT (2 groups of rows) and vector LUT along axis 1
    idx = rng.integers(0, 16, (8, 6)).astype(np.uint8)
    lut = rng.standard_normal((2, 1, 16, 1)).astype(np.float16)
    np.testing.assert_array_equal(run("constexpr_lut_to_dense", indices=idx, lut=lut),
                                  c18.constexpr_lut_to_dense.decompress(idx, lut, None))
    lut_v = rng.standard_normal((1, 2, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(run("constexpr_lut_to_dense", indices=idx, lut=lut_v, vector_axis=np.int32(1)),
                                  c18.constexpr_lut_to_dense.decompress(idx, lut_v, np.int32(1)))
    # iOS18 block-wise int8 with offsets, blocks of 4 along the input dim
    data = rng.integers(-128, 128, (6, 16)).astype(np.int8)
    scale = rng.random((6, 4)).astype(np.float32)
    offset = rng.integers(-3, 3, (6, 4)).astype(np.int8)
    np.testing.assert_allclose(run("constexpr_blockwise_shift_scale", data=data, scale=scale, offset=offset),
                               c18.constexpr_blockwise_shift_scale.decompress(data, scale, offset), rtol=1e-6)
    # iOS16 per-channel affine and packed 6-bit LUT
    zp = rng.integers(-2, 2, 6).astype(np.int8)
    sc = rng.random(6).astype(np.float32)
    np.testing.assert_allclose(run("constexpr_affine_dequantize", quantized_data=data, zero_point=zp, scale=sc,
                                   axis=np.int32(0)),
                               c16.constexpr_affine_dequantize.decompress(data, zp, sc, 0), rtol=1e-6)
    lut16 = rng.standard_normal(64).astype(np.float16)
    packed = rng.integers(0, 256, 3 * 10).astype(np.uint8)  # 40 six-bit indices
    shape = np.array([5, 8], np.uint32)
    np.testing.assert_array_equal(run("constexpr_lut_to_dense", indices=packed, lut=lut16, shape=shape),
                                  c16.constexpr_lut_to_dense.decompress(lut16, packed, shape))
