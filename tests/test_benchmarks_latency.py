"""benchmarks/latency.py's own logic (no timing asserted: wall clock is noise here): the Linear
stack's FLOPs, the peak probe only ever raises the peak, and the #5 target verdicts."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def latency():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("latency")
    finally:
        sys.path.remove(str(BENCH))


def _rec(backend, quant, metric, value, model="openclip:ViT-B-32"):
    return {"model": model, "backend": backend, "quant": quant, "metric": metric, "value": value}


def test_gemm_stack_counts_its_flops(latency):
    tower, inputs, calib = latency.load_tower("gemm:10x32", "image")
    assert inputs[0][0].shape == (1, 10, 32) and len(calib) == 4
    # 6 pairs x 2 Linears x 2 FLOP x 10 tokens x 32 x 128 (biases are not counted)
    assert latency.tower_gflop(tower, inputs[0]) == pytest.approx(6 * 2 * 2 * 10 * 32 * 128 / 1e9)


def test_peak_probe_keeps_the_best_seen(latency):
    import _machine

    probe = _machine.PeakProbe(start=1e9, n=64)  # an impossible start stays the best
    assert probe.measure() == 1e9
    probe = _machine.PeakProbe(start=0.0, n=64)
    first = probe.measure()
    assert first > 0 and probe.measure() >= first


def test_targets_name_what_is_met_and_what_is_not(latency, capsys):
    recs = [_rec("torch-eager", "fp32", "roofline_ratio", 3.0),
            _rec("onnx", "fp32", "roofline_ratio", 1.2),          # 83%: met
            _rec("litert", "fp32", "roofline_ratio", 1.5),        # 67%: not met
            _rec("onnx", "int8-dynamic", "roofline_ratio", 0.4),  # fast but inaccurate: ignored
            _rec("onnx", "int8-dynamic", "cosine_min", 0.99),
            _rec("executorch", "int8-static", "roofline_ratio", 0.7),
            _rec("executorch", "int8-static", "cosine_min", 0.998),
            _rec("executorch", "int8-static", "compute_delegated_fraction", 0.9),
            _rec("onnx", "fp32", "roofline_ratio", 0.1, model="openclip:other")]
    got = dict((t.split(" at ")[0].split(":")[0], ok) for t, ok in latency.print_targets(recs, "openclip:ViT-B-32"))
    assert got == {"onnx fp32": True, "litert fp32": False,
                   "best int8 with cosine_min >= 0.995": False, "executorch int8-static": False}
    out = capsys.readouterr().out
    assert "executorch int8-static at 0.70x roofline time" in out and "[NOT MET]" in out and "torch-eager" not in out


def test_conv_stack_runs_the_towers_own_convs_on_its_activations(latency):
    """``convs:ARCH``: one input per distinct conv input shape, the tower's activations as
    inputs, every conv of the tower once, and an output that moves with each conv's weights."""
    import numpy as np
    import torch
    from torch import nn

    torch.manual_seed(0)
    tower = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1, groups=8),
                          nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1)).eval()
    rng = np.random.default_rng(0)
    photos = [(rng.standard_normal((1, 3, 16, 16)).astype(np.float32),) for _ in range(2)]

    def load(arch, which):
        assert (arch, which) == ("tiny", "image")
        return tower, photos[:1], photos[1:]
    stack, inputs, calib = latency.ConvStack.build("convs:tiny", load)
    assert len(stack.convs) == 4 and stack.input_names == ("x0", "x1", "x2")  # 8x8x8 is shared
    assert [x.shape for x in inputs[0]] == [(1, 3, 16, 16), (1, 8, 8, 8), (1, 16, 8, 8)] and len(calib) == 1
    with torch.no_grad():
        h0 = tower[0](torch.from_numpy(photos[0][0]))
        np.testing.assert_allclose(inputs[0][1], torch.relu(h0).numpy(), rtol=1e-6)  # the tower's own activation
        out = stack(*(torch.from_numpy(x) for x in inputs[0]))
        assert out.shape == (1, 8 + 8 + 16 + 16)
        stack.convs[3].weight.mul_(2)
        assert not torch.allclose(stack(*(torch.from_numpy(x) for x in inputs[0])), out)
    assert latency.tower_gflop(stack, inputs[0]) > 0


def test_conv_time_is_read_off_a_profile(latency):
    prof = {"timed": True, "by_op_type": [{"op": "Convolution (NHWC, F32) IGEMM", "ms": 2.0},
                                          {"op": "ConvInteger", "ms": 1.0}, {"op": "Transpose (ND, X32)", "ms": 0.5}]}
    assert latency.conv_ms(prof) == 3.0
