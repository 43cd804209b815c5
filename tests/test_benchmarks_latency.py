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
