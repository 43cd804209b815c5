"""Per-op profiles through each runtime's own profiler (``edgeclip.verify.profile``): op types
named and timed, glue found where the graph moves data and not where it does not."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeclip.verify.profile import is_glue, op_type, per_type_ms, profile_artifact, profile_md, summarize


def test_op_types_and_glue_across_the_runtimes_vocabularies():
    assert op_type("Transpose (ND, X32) #3") == "Transpose (ND, X32)"
    assert op_type("native_call__to_dim_order_copy.out") == "_to_dim_order_copy"
    glue = ["Transpose (ND, X32)", "_to_dim_order_copy", "Convert (NC, F32, QDU8)", "QuantizeLinear",
            "DequantizeLinear", "DynamicQuantizeLinear", "Cast", "ReorderOutput", "TRANSPOSE", "DEQUANTIZE"]
    compute = ["Convolution (NHWC, F32) IGEMM", "Fully Connected (NC, F32) GEMM", "Conv", "ConvInteger",
               "MatMulInteger", "DynamicQuantizeMatMul", "QLinearConv", "CONV_2D", "FULLY_CONNECTED", "Softmax (NC, F32)", "add"]
    assert [op for op in glue if not is_glue(op)] == []
    assert [op for op in compute if is_glue(op)] == []


def test_summary_adds_up():
    p = summarize({"Conv": 3.0, "Transpose": 1.0}, 5.0, "ort-profiler", 4, {"Conv": 2, "Transpose": 1})
    assert p["ops_ms"] == 4.0 and p["other_ms"] == 1.0 and p["glue_fraction"] == 0.25
    assert [o["op"] for o in p["by_op_type"]] == ["Conv", "Transpose"] and p["glue_ops"] == 1 and p["ops"] == 3
    untimed = summarize({}, None, "op-count", 0, {"CONV_2D": 2, "QUANTIZE": 1})
    assert not untimed["timed"] and "glue_fraction" not in untimed and untimed["glue_ops"] == 1
    md = profile_md([("litert image int8-static", untimed), ("x", None), ("onnx image fp32", {"error": "OSError: gone"})])
    assert "(untimed)" in md and "| onnx image fp32 | failed | - | - | OSError: gone |" in md


def test_per_op_times_survive_a_microsecond_clock():
    """The profilers tick in whole microseconds. 40 ops of 0.4 us each, read off such a clock
    at random phases, read 0 us per op in most runs, so per-event medians lose most of them; summed
    within each run first, the median keeps their real 16 us (and a 5 us op beside them)."""
    rng = np.random.default_rng(0)
    runs = 21

    def read(true_us):  # a microsecond clock read before and after, at a random phase; in ms
        start = rng.uniform(0, 1, runs)
        return list((np.floor(start + true_us) - np.floor(start)) / 1e3)

    durations = {f"Convert #{i}": read(0.4) for i in range(40)}
    durations["FC #0"] = read(5.0)
    per_op, counts = per_type_ms(durations, op_type)
    assert counts == {"Convert": 40, "FC": 1}
    assert per_op["Convert"] == pytest.approx(0.016, rel=0.25) and per_op["FC"] == pytest.approx(0.005)
    per_event_medians = sum(np.median(v[1:]) for k, v in durations.items() if k.startswith("Convert"))
    assert abs(per_event_medians - 0.016) > 0.4 * 0.016  # what per-event medians made of the same readings


class Mlp(nn.Module):  # channels stay put: nothing to transpose
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 256), nn.Linear(256, 64)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class Permuting(nn.Module):  # NCHW conv, then channels-last for a Linear: the graph must move data
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(8, 32, 3, padding=1), nn.Linear(32, 32)

    def forward(self, x):
        y = self.conv(x).permute(0, 2, 3, 1).contiguous()
        return self.fc(y).permute(0, 3, 1, 2).contiguous().mean((2, 3))


def _export(backend, tower, x, tmp_path, quant="fp32"):
    from edgeclip.backends import BACKENDS, ExportSpec
    return BACKENDS.get(backend).export(tower.eval(), (x,), ExportSpec(
        tower="image", quant=quant, name=f"{backend}-{type(tower).__name__}-{quant}", input_names=("x",),
        calibration=[(x,)] * 2), tmp_path)


@pytest.mark.toolchain
@pytest.mark.parametrize("backend,source", [("executorch", "etdump"), ("onnx", "ort-profiler")])
def test_runtime_profiles_find_the_transposes_a_graph_needs(backend, source, tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    flat = _export(backend, Mlp(), rng.standard_normal((1, 16, 64)).astype(np.float32), tmp_path)
    # large enough that each transpose takes microseconds: ETDump rounds XNNPACK kernels to 1 us
    perm_x = rng.standard_normal((1, 8, 64, 64)).astype(np.float32)
    perm = _export(backend, Permuting(), perm_x, tmp_path)
    p_flat = profile_artifact(flat, (rng.standard_normal((1, 16, 64)).astype(np.float32),), runs=3)
    p_perm = profile_artifact(perm, (perm_x,), runs=3)
    for p in (p_flat, p_perm):
        assert p["source"] == source and p["timed"] and p["runs"] == 3
        assert 0 < p["ops_ms"] <= p["total_ms"] * 1.05
        assert sum(o["ms"] for o in p["by_op_type"]) == pytest.approx(p["ops_ms"], rel=1e-6)
    assert p_flat["glue_ops"] == 0 and p_flat["glue_fraction"] == 0.0
    assert p_perm["glue_ops"] >= 1 and p_perm["glue_fraction"] > 0.0
    kinds = " ".join(o["op"] for o in p_perm["by_op_type"]).lower()
    assert "conv" in kinds and ("gemm" in kinds or "matmul" in kinds or "fully connected" in kinds)


@pytest.mark.toolchain
def test_litert_profile_is_the_op_mix_with_its_quantize_glue(tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)
    art = _export("litert", Permuting(), x, tmp_path, quant="int8-static")
    p = profile_artifact(art, (x,))
    ops = {o["op"]: o["count"] for o in p["by_op_type"]}
    assert p["source"] == "op-count" and not p["timed"]
    assert ops.get("CONV_2D") == 1 and ops.get("QUANTIZE", 0) >= 1 and p["glue_ops"] >= 1
