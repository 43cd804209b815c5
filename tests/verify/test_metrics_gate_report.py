"""Metrics against hand-computed cases; gates collect every shortfall; reports round-trip."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgeclip.config import Thresholds
from edgeclip.verify.gate import check_accuracy, format_shortfalls
from edgeclip.verify.metrics import (
    cosine_rows, embedding_metrics, psnr_db, retrieval_agreement, top1_agreement, zero_shot_accuracy,
)
from edgeclip.verify.report import SCHEMA, Record, read_report, write_report


def test_cosine_hand_cases():
    ref = np.array([[1.0, 0.0], [0.0, 2.0]])
    out = np.array([[1.0, 1.0], [0.0, -1.0]])
    np.testing.assert_allclose(cosine_rows(ref, out), [1 / math.sqrt(2), -1.0])
    with pytest.raises(ValueError, match="shape mismatch"):
        cosine_rows(ref, out[:1])


def test_psnr_hand_case():
    ref = np.array([0.0, 1.0, 0.0, 1.0])          # peak-to-peak 1
    out = ref + np.array([0.1, -0.1, 0.1, -0.1])  # mse 0.01 -> 20 dB
    assert psnr_db(ref, out) == pytest.approx(20.0)
    assert psnr_db(ref, ref) == float("inf")


def test_top1_and_zero_shot():
    ref = np.array([[2, 1, 0], [0, 1, 2], [1, 3, 0]])
    out = np.array([[5, 1, 0], [3, 1, 2], [1, 3, 0]])
    assert top1_agreement(ref, out) == pytest.approx(2 / 3)
    assert zero_shot_accuracy(out, np.array([0, 2, 1])) == pytest.approx(2 / 3)


def test_retrieval_agreement_k():
    q = np.eye(3)
    g = np.eye(3)
    g_swapped = g[[1, 0, 2]] + 0.0
    assert retrieval_agreement(q, g, q, g) == 1.0
    assert retrieval_agreement(q, g, q, g_swapped) == pytest.approx(1 / 3)
    near = np.array([[0.9, 1.0, 0.0], [1.0, 0.9, 0.0], [0.0, 0.0, 1.0]])
    assert retrieval_agreement(q, g, q, near, k=1) == pytest.approx(1 / 3)
    assert retrieval_agreement(q, g, q, near, k=2) == 1.0


def test_embedding_metrics_detect_noise():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(8, 16))
    good = embedding_metrics(ref, ref + 1e-4 * rng.normal(size=ref.shape))
    bad = embedding_metrics(ref, ref + 1.0 * rng.normal(size=ref.shape))
    assert good["cosine_min"] > 0.9999 and bad["cosine_mean"] < 0.9
    assert good["psnr_db"] > bad["psnr_db"] + 40


def _rec(quant, metric, value, backend="onnx", tower="image"):
    return Record("m", "web", backend, tower, quant, "onnxruntime", False, metric, value)


def test_gate_collects_every_shortfall():
    recs = [_rec("fp32", "cosine_mean", 0.9999), _rec("fp32", "psnr_db", 50.0),
            _rec("int8-dynamic", "cosine_mean", 0.90), _rec("int8-dynamic", "psnr_db", 10.0)]
    th = Thresholds(cosine_mean=0.98, psnr_db=15.0, r1_agreement=0.9)
    short = check_accuracy(recs, {"onnx/image/fp32": th, "onnx/image/int8-dynamic": th})
    got = {(s.artifact, s.metric) for s in short}
    # both int8 metrics fail, and r1_agreement is missing for both artifacts
    assert got == {("onnx/image/int8-dynamic", "cosine_mean"), ("onnx/image/int8-dynamic", "psnr_db"),
                   ("onnx/image/fp32", "r1_agreement"), ("onnx/image/int8-dynamic", "r1_agreement")}
    table = format_shortfalls(short)
    assert "onnx/image/int8-dynamic" in table and ">= 0.98" in table and "missing" in table


def test_nan_metric_fails_its_gate():
    """An fp16 overflow gives NaN embeddings; NaN compares false both ways and must not pass."""
    recs = [_rec("fp16", "cosine_mean", float("nan")), _rec("fp16", "psnr_db", 40.0)]
    short = check_accuracy(recs, {"onnx/image/fp16": Thresholds(cosine_mean=0.98, psnr_db=15.0)})
    assert [(s.metric, math.isnan(s.value)) for s in short] == [("cosine_mean", True)]


def test_record_rejects_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric"):
        Record("m", "t", "onnx", "image", "fp32", "ort", False, "speed", 1.0)


def test_report_files(tmp_path):
    recs = [_rec("fp32", "cosine_mean", 0.9999), _rec("fp32", "latency_p50_ms", 3.2),
            _rec("fp32", "size_mb", 1.5)]
    write_report(tmp_path, recs, machine={"cpu": "test", "cores": 2})
    data = read_report(tmp_path / "report.json")
    assert data["schema"] == SCHEMA and len(data["results"]) == 3
    assert data["results"][1]["unit"] == "ms"
    md = (tmp_path / "report.md").read_text()
    assert "| onnx | image | fp32 |" in md and "0.9999" in md
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "other"}))
    from edgeclip.errors import InputError
    with pytest.raises(InputError, match="not an edgeclip.report/1"):
        read_report(tmp_path / "bad.json")


def test_front_keeps_only_passing_candidates_nothing_beats(tmp_path):
    from edgeclip.verify.front import candidate, pareto_front

    def c(name, size, p50, passed=True, shipped=False):
        return candidate(name, "litert", "image", name, size, p50, 0.999, 0.95, passed, shipped, False, None)
    cands = [c("fp32", 4.0, 1.0), c("int8", 1.0, 0.8, shipped=True), c("int8+float1", 1.2, 0.7),
             c("int8-slow", 1.1, 0.9), c("pal4", 0.5, 0.6, passed=False), c("same-as-int8", 1.0, 0.8),
             c("untimed", 0.1, None)]
    front = pareto_front(cands)
    # fp32 and int8-slow are beaten on both axes, pal4 failed its gates, untimed has no latency;
    # an exact tie is beaten by neither
    assert [x["name"] for x in front] == ["int8+float1", "int8", "same-as-int8"]
    recs = [_rec("fp32", "cosine_mean", 0.9999), _rec("fp32", "latency_p50_ms", 3.2), _rec("fp32", "size_mb", 1.5)]
    write_report(tmp_path, recs, machine={"cpu": "test", "cores": 2}, extra={"selection": cands})
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert [x["name"] for x in read_report(tmp_path / "report.json")["selection"]] == [x["name"] for x in cands]
