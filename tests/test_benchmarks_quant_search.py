"""benchmarks/quant_search.py's own logic (its numbers come from real builds; no timing here):
the teacher-only recipe is the default recipe's teacher and pretraining without distillation, every
model's recipe is a valid one, and naive/searched rows are read from a build's report records."""
from __future__ import annotations

import pytest

from edgeclip.config import load_recipe

from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def qs():
    return load_benchmark("quant_search")


def test_recipes(qs, tmp_path):
    default = load_recipe("embedded-default")
    recipes = {}
    for name in ("teacher", "tinyclip", "ViT-B-32", "MobileCLIP2-S0"):
        (tmp_path / f"{name}.yaml").write_text(qs._recipe(name))
        recipes[name] = load_recipe(tmp_path / f"{name}.yaml")
    t = recipes["teacher"]
    assert not t.distill and t.teacher == default.teacher and t.pretrain == default.pretrain
    assert t.data == default.data and default.distill  # the default distils; the benchmark's teacher run does not
    assert len(recipes["tinyclip"].distill) == 2
    assert recipes["ViT-B-32"].teacher == "openclip:ViT-B-32" and recipes["ViT-B-32"].pretrain is None


def test_rows_come_from_the_report_records(qs):
    rec = lambda b, q, m, v, g=None: {"backend": b, "quant": q, "metric": m, "value": v, "group": g}  # noqa: E731
    report = {"results": [rec("litert", "fp32", "size_mb", 2.0), rec("litert", "fp32", "latency_p50_ms", 4.0),
                          rec("litert", "int8-static", "size_mb", 0.5), rec("litert", "int8-static", "latency_p50_ms", 2.0),
                          rec("litert", "int8-static", "zero_shot_top1", 0.3, "digits")]}
    m = qs._metrics(report)
    assert set(m) == {("litert", "fp32"), ("litert", "int8-static")} and "zero_shot_top1" not in m[("litert", "int8-static")]
    row = qs._row(m[("litert", "int8-static")], m[("litert", "fp32")])
    assert row["size_ratio"] == 0.25 and row["latency_ratio"] == 0.5 and row["cosine_mean"] is None
