"""The mixed-precision search in a real build: a tiny ViT with a planted weight outlier in its
output projection (a column that reads an always-zero channel, so fp32 never sees it, while int8's
per-row scales lose every other weight of the row) misses the android gates in int8-static;
the search ranks ``encoder.proj`` first, keeps it float, and the rebuilt artifact passes and ships,
named in the manifest and the report. A floor that forbids even one float layer gives up, and
says so. The real build runs on LiteRT only (CI time: ExecuTorch's three exports of the same
search cost about 150 s there); the stage is backend-blind, ExecuTorch's per-layer float
override is tested in tests/backends/test_backends_executorch.py and its range estimator below."""
from __future__ import annotations

import json

import pytest
import torch

from _tiny_configs import build_mini

RECIPE = """
version: 1
name: planted
teacher: "file:{ckpt}"
seed: 0
data:
  eval:
    - {{source: synthetic, split: heldout, samples: 12, languages: [en]}}
quantization:
  calibration_samples: 8
"""

TARGET = """
version: 1
name: planted-{name}
platform: android
towers: [image]
select: smallest
backends:
{backends}
thresholds: {{cosine_mean: 0.98, cosine_min: 0.9, psnr_db: 15.0, top1_agreement: 0.9, r1_agreement: 0.85}}
mixed_precision: {{min_quantized_fraction: {floor}}}
bench: {{warmup: 1, runs: 3, rounds: 1, threads: 2}}
"""
_LITERT = "  - {backend: litert, quant: {image: [fp32, int8-static]}}"


def _build(work, recipe, capsys, target):
    work.mkdir()
    return build_mini(work, recipe, capsys, target)


def _planted(path):
    from edgeclip.models import build_builtin, save_model

    m = build_builtin("tiny-vit", seed=0)
    enc = m.image.encoder
    with torch.no_grad():
        enc.ln_post.weight[0] = 0.0
        enc.ln_post.bias[0] = 0.0            # channel 0 of proj's input is exactly 0 ...
        enc.proj.weight[:, 0] = 50.0 * enc.proj.weight.abs().max()  # ... and its weights huge
    return save_model(m, path)


def test_attempt_order_and_variant_names():
    from edgeclip.build.plan import PlannedArtifact
    from edgeclip.build.stages.mixed import _attempts

    assert list(_attempts(5, static=False)) == [((), 1), ((), 2), ((), 4), ((), 5)]
    assert list(_attempts(3, static=True)) == [((), 1), (("add",), 1), (("add",), 2), (("add",), 3)]
    p = PlannedArtifact("litert", "image", "int8-static")
    assert p.variant == "int8-static"
    assert PlannedArtifact("litert", "image", "int8-static", ("add", "encoder.proj")).variant == "int8-static+add+float1"
    assert PlannedArtifact("litert", "image", "int8-static", ("a", "b")).variant == "int8-static+float2"
    # what the backends get: the variant's layers in its layer_mode, op types and the recipe's keep_float in fp32
    from edgeclip.build.stages.artifact import quant_method
    from edgeclip.config import QuantizationConfig

    pal = PlannedArtifact("coreml", "image", "pal4", ("encoder.proj",), layer_mode="pal8")
    assert pal.variant == "pal4+pal8x1"
    m = quant_method(pal, QuantizationConfig(keep_float=("ln_final", "softmax"), params={"pal4": {"weight_threshold": 0}}))
    assert dict(m.overrides.op_name) == {"encoder.proj": "pal8", "ln_final": "fp32"}
    assert dict(m.overrides.op_type) == {"softmax": "fp32"} and m.weight_threshold == 0


def test_pal4_raises_each_layer_to_the_fewest_bits_that_match_the_worst_4bit_layer_left():
    from edgeclip.build.plan import PlannedArtifact
    from edgeclip.build.stages.artifact import quant_method
    from edgeclip.build.stages.mixed import _layer_bits
    from edgeclip.config import QuantizationConfig

    ranked = [{"name": n, "cosine": c} for n, c in (("a", 0.90), ("b", 0.95), ("c", 0.99), ("d", 0.995))]
    at6 = {"a": 0.97, "b": 0.995, "c": 0.999, "d": 0.9999}
    # two layers raised: the bar is c's 0.99 at 4 bits; a at 6 bits (0.97) is worse, so a takes 8 bits
    assert _layer_bits(ranked[:2], ranked[2:], at6) == {"a": "pal8", "b": "pal6"}
    assert _layer_bits(ranked[:3], ranked[3:], at6) == {"a": "pal8", "b": "pal6", "c": "pal6"}  # b ties d: enough
    assert _layer_bits(ranked, [], at6) == {n: "pal8" for n in "abcd"}  # nothing left at 4 bits: 8 for all
    assert _layer_bits(ranked[:2], ranked[2:], None) == {}  # int8 and pal6/pal8 variants: one mode
    p = PlannedArtifact("coreml", "image", "pal4", ("a", "b", "c"), layer_mode="pal8", layer_modes=(("c", "pal6"),))
    assert p.variant == "pal4+pal6x1+pal8x2"
    m = quant_method(p, QuantizationConfig())
    assert dict(m.overrides.op_name) == {"a": "pal8", "b": "pal8", "c": "pal6"}


def test_each_backend_is_ranked_with_the_range_estimator_its_calibration_uses():
    from types import SimpleNamespace

    from edgeclip.build.stages.mixed import estimator_for

    assert estimator_for("litert", SimpleNamespace(observer=None)) == "moving_average"
    assert estimator_for("executorch", SimpleNamespace(observer=None)) == "histogram"   # torch's HistogramObserver
    assert estimator_for("executorch", SimpleNamespace(observer="minmax")) == "minmax"
    assert estimator_for("litert", SimpleNamespace(observer="minmax")) == "moving_average"  # ai-edge-quantizer has one
    assert estimator_for("onnx", SimpleNamespace(observer=None)) == "minmax"


@pytest.mark.slow
@pytest.mark.toolchain
def test_search_keeps_the_planted_layer_float_and_ships_int8(tmp_path, capsys):
    torch.set_num_threads(1)
    ckpt = _planted(tmp_path / "planted.safetensors")
    out = _build(tmp_path / "a", RECIPE.format(ckpt=ckpt), capsys,
                     TARGET.format(name="a", backends=_LITERT, floor=0.5))
    manifest = json.loads((out / "manifest.json").read_text())
    (a,) = manifest["artifacts"]
    assert a["backend"] == "litert" and a["quant"] == "int8-static" and a["float_layers"] == ["encoder.proj"], a
    assert a["metrics"]["cosine_mean"] >= 0.98 and a["metrics"]["top1_agreement"] >= 0.9
    report = json.loads((out / "report.json").read_text())
    (s,) = report["mixed_precision"]
    assert s["artifact"] == "litert/image/int8-static" and s["missed"]
    assert s["attempts"][0]["float_layers"] == ["encoder.proj"] and s["outcome"].startswith("passed with 1 layer float")
    sens = json.loads((out / "sensitivity.json").read_text())
    assert sens["litert/image/int8-static"]["estimator"] == "moving_average"
    assert all(r["layers"][0]["name"] == "encoder.proj" for r in sens.values())
    md = (out / "report.md").read_text()
    assert "## Mixed precision" in md and "| litert/image/int8-static+float1 |" in md  # a Selection row
    assert "not shipped: below thresholds" in md  # the naive int8 variants lost on accuracy

    # a floor no single float layer fits under: the search gives up, fp32 ships, the report says why
    out = _build(tmp_path / "b", RECIPE.format(ckpt=ckpt), capsys,
                     TARGET.format(name="b", backends=_LITERT, floor=0.99))
    report = json.loads((out / "report.json").read_text())
    (s,) = report["mixed_precision"]
    assert s["attempts"] == [] and "below min_quantized_fraction 0.99" in s["outcome"]
    (a,) = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert a["quant"] == "fp32" and a["float_layers"] == []
