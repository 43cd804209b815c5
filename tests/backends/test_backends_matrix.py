"""Every backend x tower kind x supported quant mode: export, run the real runtime, compare
with torch eager on real photos / real captions.

Thresholds are per mode, set a little under what was measured here (numbers in the report):
fp32 must match to 0.999; quantized modes get the floor their method earns on these tiny,
random-init towers, which are harsher on int8 than trained CLIP weights.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from _backends_cases import BUILTIN_KINDS, LOCAL_KINDS

pytestmark = pytest.mark.toolchain

# min cosine over the 8 eval samples, per quant mode (and a mean floor)
MIN_COS = {"fp32": 0.999, "fp16": 0.999, "int8-weight": 0.995, "int8-dynamic": 0.99,
           "8da4w": 0.98, "int8-static": 0.95}
MEAN_COS = {"fp32": 0.9995, "fp16": 0.999, "int8-weight": 0.998, "int8-dynamic": 0.995,
            "8da4w": 0.99, "int8-static": 0.97}

RUNNABLE = {
    "executorch": ("fp32", "int8-dynamic", "int8-static", "8da4w"),
    "litert": ("fp32", "fp16", "int8-dynamic", "int8-static", "int8-weight"),
    "onnx": ("fp32", "int8-dynamic", "int8-static"),
}
# builtin towers (edgeclip.models) are larger: fp32 everywhere, plus a compressed mode where it
# is cheap (LiteRT quantizes its cached fp32 flatbuffer; ORT quantization takes seconds)
BUILTIN_QUANTS = {"executorch": ("fp32",), "litert": ("fp32", "int8-static"),
                  "onnx": ("fp32", "int8-static"), "coreml": ("fp32",)}
COREML_QUANTS = ("fp32", "fp16", "int8-weight", "pal4", "pal6", "pal8", "w8a8")
COMPRESSION_OP = {"int8-weight": "constexpr_affine_dequantize", "pal4": "constexpr_lut_to_dense",
                  "pal6": "constexpr_lut_to_dense", "pal8": "constexpr_lut_to_dense",
                  "w8a8": "quantize"}


# ExecuTorch lowering costs 10-30 s per export here (it interprets the graph node by node),
# so the builtin ViT towers are left to the android build in tests/test_pipeline.py, which
# lowers the same architecture.
SKIP = {("executorch", "builtin-vit-image", "fp32"), ("executorch", "builtin-vit-text", "fp32")}


def _cases(table, kinds, slow=False):
    out = []
    for backend, quants in table.items():
        for kind in kinds:
            for q in quants:
                if (backend, kind, q) in SKIP:
                    continue
                marks = [pytest.mark.slow] if slow or backend == "executorch" else []
                out.append(pytest.param(backend, kind, q, id=f"{backend}-{kind}-{q}", marks=marks))
    return out


RUN_CASES = _cases(RUNNABLE, LOCAL_KINDS) + _cases(
    {b: q for b, q in BUILTIN_QUANTS.items() if b != "coreml"}, BUILTIN_KINDS, slow=True)


@pytest.mark.parametrize("backend,kind,quant", RUN_CASES)
def test_runtime_matches_eager(exports, backend, kind, quant):
    from _backends_cases import get_case

    res = exports.get(backend, kind, quant)
    case = get_case(kind)
    art = res.artifact
    assert res.runner is not None, f"{backend} has a runtime here"
    assert res.cos is not None and len(res.cos) == len(case.inputs) == 8
    assert res.cos.min() >= MIN_COS[quant], f"min cosine {res.cos.min():.5f} < {MIN_COS[quant]}"
    assert res.cos.mean() >= MEAN_COS[quant], f"mean cosine {res.cos.mean():.5f} < {MEAN_COS[quant]}"
    # the artifact describes itself: shapes/dtypes an app can use without our code
    assert art.path.exists() and art.size_bytes > 0
    assert art.input_shapes == [list(case.example[0].shape)]
    assert art.input_dtypes == [case.example[0].dtype.name]
    assert art.output_shapes == [list(case.reference[0].shape)] and art.output_dtypes == ["float32"]
    assert 0.0 < art.delegated_fraction <= 1.0
    assert json.loads(json.dumps(art.to_dict()))["quant"] == quant  # manifest-ready
    out = res.runner(*case.inputs[0])
    assert out.dtype == np.float32 and out.shape == case.reference[0].shape
    assert np.isfinite(out).all()


@pytest.mark.parametrize("backend,kind,quant", [c for c in RUN_CASES if c.values[2] != "fp32"])
def test_quantized_artifact_is_smaller(exports, backend, kind, quant):
    """A quantized artifact must actually carry narrower weights than the fp32 one."""
    from _backends_cases import get_case

    art = exports.get(backend, kind, quant).artifact
    q, f = art.size_bytes, exports.get(backend, kind, "fp32").artifact.size_bytes
    if quant == "8da4w" and "conv" in kind:  # torchao 8da4w only touches Linear layers
        assert q < f and "head" not in art.not_quantized and "stem.0" in art.not_quantized
        return
    if (backend, quant) == ("onnx", "int8-dynamic") and "conv" in kind:  # convs stay float (no ConvInteger)
        assert q < f and any(s.startswith("Conv ") for s in art.not_quantized), art.not_quantized
        assert not any(s.startswith(("Gemm ", "MatMul ")) for s in art.not_quantized), art.not_quantized
        return
    # a vocab table the backend left float (reported in not_quantized) is excluded
    tower = get_case(kind).tower
    name = _embedding_name(tower)
    kept = bool(name) and any("embedding" in n for n in art.not_quantized)
    table = tower.get_submodule(name).weight.numel() * 4 if kept else 0
    assert q - table < 0.8 * (f - table), f"{quant} {q} B vs fp32 {f} B (float table {table} B)"


def _embedding_name(tower) -> str:
    import torch

    return next((n for n, m in tower.named_modules() if isinstance(m, torch.nn.Embedding)), "")


@pytest.mark.parametrize(
    "kind,quant",
    [pytest.param(k, q, id=f"{k}-{q}") for k in LOCAL_KINDS for q in COREML_QUANTS]
    + [pytest.param(k, q, id=f"{k}-{q}", marks=pytest.mark.slow)
       for k in BUILTIN_KINDS for q in BUILTIN_QUANTS["coreml"]],
)
def test_coreml_converts_with_compression_ops(exports, kind, quant):
    from _backends_cases import get_case

    from edgeclip.backends import BACKENDS
    from edgeclip.backends.coreml import mil_op_types

    res = exports.get("coreml", kind, quant)
    art = res.artifact
    ops = mil_op_types(art.path)
    assert art.path.suffix == ".mlpackage" and art.path.is_dir()
    assert ops["const"] > 0 and sum(ops.values()) > 5
    if quant in COMPRESSION_OP:
        assert ops[COMPRESSION_OP[quant]] > 0, f"{quant}: no {COMPRESSION_OP[quant]} in {dict(ops)}"
    else:
        assert not set(ops) & {"constexpr_lut_to_dense", "constexpr_affine_dequantize", "quantize"}
    if quant == "w8a8":
        assert ops["dequantize"] > 0 and ops["constexpr_affine_dequantize"] > 0
    case = get_case(kind)
    assert art.input_names == ["input_ids" if case.tower_name == "text" else "pixel_values"]
    assert art.input_shapes == [list(case.example[0].shape)]
    # no CoreML runtime off macOS: the runner is None and says why
    assert res.runner is None and res.cos is None
    assert json.loads(json.dumps(art.to_dict()))["extra"]["compression_ops"] == art.extra["compression_ops"]
    assert "macOS" in BACKENDS.get("coreml").why_no_runner(art)
