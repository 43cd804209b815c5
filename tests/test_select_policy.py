"""What ships: the target's `select` policy (fastest | smallest), its budgets, the float-sibling
veto, and the `recommended` artifact per tower across backends."""
from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeclip.build.context import ArtifactResult
from edgeclip.build.plan import PlannedArtifact
from edgeclip.build.stages.select import budget_miss, select, selection_md
from edgeclip.config import Thresholds, load_target
from edgeclip.errors import ConfigError

GOOD = {"cosine_mean": 1.0, "cosine_min": 1.0, "psnr_db": 60.0, "top1_agreement": 1.0, "r1_agreement": 1.0}


def _target(tmp_path, extra: str = "") -> object:
    p = tmp_path / "t.yaml"
    p.write_text(textwrap.dedent("""
    version: 1
    name: t
    platform: android
    backends:
      - backend: litert
        quant: {image: [fp32, int8-static, fp16]}
      - backend: executorch
        quant: {image: [fp32, int8-static]}
    thresholds: {cosine_mean: 0.98, max_latency_ratio_vs_fp32: 1.1}
    """) + textwrap.dedent(extra))
    return load_target(p)


def _ctx(target):
    return SimpleNamespace(plan=SimpleNamespace(recipe=SimpleNamespace(name="r", thresholds=Thresholds()), target=target),
                           backend_entry=lambda b: next(e for e in target.backends if e.backend == b))


def _res(backend, quant, mb, p50, spread=0.01, metrics=GOOD):
    return ArtifactResult(planned=PlannedArtifact(backend, "image", quant), artifact_dir=Path("."),
                          artifact={"size_bytes": int(mb * 1e6)}, metrics=dict(metrics),
                          latency={"p50_ms": p50, "spread": spread}, runner="rt", verified=True)


def _shipped(results):
    return [r.name for r in results if r.shipped]


def test_fastest_ships_the_fastest_and_ties_go_to_the_smaller(tmp_path):
    t = _target(tmp_path)
    rs = [_res("litert", "fp32", 3.5, 1.00), _res("litert", "int8-static", 1.1, 0.80), _res("litert", "fp16", 1.8, 0.60)]
    select(_ctx(t), rs)
    assert _shipped(rs) == ["litert/image/fp16"]  # fastest, although int8 is smaller
    assert rs[0].why_not_shipped == "fp16 was chosen (faster: 0.6 ms)"
    assert rs[1].why_not_shipped.startswith("slower than its float sibling")  # fp16 is a float sibling too
    # int8 within 5% of fp16: as fast, and smaller
    rs = [_res("litert", "fp32", 3.5, 1.00), _res("litert", "int8-static", 1.1, 0.62), _res("litert", "fp16", 1.8, 0.60)]
    select(_ctx(t), rs)
    assert _shipped(rs) == ["litert/image/int8-static"] and "as fast within 5%" in rs[2].why_not_shipped
    # a noisy run widens the tie band to the fastest one's own spread, never past 25%
    rs = [_res("litert", "int8-dynamic", 0.9, 0.70), _res("litert", "int8-static", 1.1, 0.60, spread=0.9)]
    select(_ctx(t), rs)
    assert _shipped(rs) == ["litert/image/int8-dynamic"] and "within 25%" in rs[1].why_not_shipped
    rs = [_res("litert", "int8-dynamic", 0.9, 0.80), _res("litert", "int8-static", 1.1, 0.60, spread=0.9)]
    select(_ctx(t), rs)
    assert _shipped(rs) == ["litert/image/int8-static"]


def test_smallest_ships_the_smallest_and_gates_still_apply(tmp_path):
    t = _target(tmp_path, "select: smallest\n")
    bad = dict(GOOD, cosine_mean=0.5)
    rs = [_res("litert", "fp32", 3.5, 1.0), _res("litert", "int8-static", 1.1, 0.8, metrics=bad),
          _res("litert", "fp16", 1.8, 0.6)]
    select(_ctx(t), rs)
    assert _shipped(rs) == ["litert/image/fp16"]
    assert rs[1].why_not_shipped.startswith("below thresholds: cosine_mean")
    assert "smaller, passed the same gates" in rs[0].why_not_shipped


def test_a_quantized_variant_slower_than_float_never_ships(tmp_path):
    rs = [_res("executorch", "fp32", 3.4, 1.0), _res("executorch", "int8-static", 1.0, 1.3)]
    select(_ctx(_target(tmp_path, "select: smallest\n")), rs)
    assert _shipped(rs) == ["executorch/image/fp32"] and "slower than its float sibling" in rs[1].why_not_shipped


def test_budgets_exclude_and_name_the_nearest_miss(tmp_path):
    t = _target(tmp_path, "budgets: {max_latency_ms: 0.7, max_size_mb: 3.0}\n")
    rs = [_res("litert", "fp32", 3.5, 0.65), _res("litert", "int8-static", 1.1, 0.69), _res("litert", "fp16", 1.8, 0.75)]
    select(_ctx(t), rs)
    assert _shipped(rs) == ["litert/image/int8-static"]
    assert rs[0].why_not_shipped == "over budget: 3.50 MB > max_size_mb 3"
    assert rs[2].why_not_shipped == "over budget: p50 0.75 ms > max_latency_ms 0.7"
    md = selection_md(rs, t)
    assert "policy: fastest; budgets: max_latency_ms 0.7, max_size_mb 3" in md and "| litert/image/fp32 | 3.50 |" in md
    # no candidate meets them: nothing ships, and the nearest miss is the smallest relative excess
    tight = _target(tmp_path, "budgets: {max_latency_ms: 0.5}\n")
    rs = [_res("litert", "fp32", 3.5, 0.65), _res("litert", "int8-static", 1.1, 0.55)]
    select(_ctx(tight), rs)
    assert _shipped(rs) == []
    assert budget_miss(rs, tight.budgets) == ("nearest miss: litert/image/int8-static "
                                              "(p50 0.55 ms > max_latency_ms 0.5)")


def test_recommended_is_one_per_tower_across_backends(tmp_path):
    rs = [_res("litert", "fp32", 3.5, 1.0), _res("litert", "int8-static", 1.1, 0.5),
          _res("executorch", "fp32", 3.4, 1.2), _res("executorch", "int8-static", 1.0, 0.9)]
    select(_ctx(_target(tmp_path)), rs)
    assert _shipped(rs) == ["litert/image/int8-static", "executorch/image/int8-static"]
    assert [r.name for r in rs if r.recommended] == ["litert/image/int8-static"]
    rs = [_res("litert", "int8-static", 1.1, 0.5), _res("executorch", "int8-static", 1.0, 0.9)]
    select(_ctx(_target(tmp_path, "select: smallest\n")), rs)
    assert [r.name for r in rs if r.recommended] == ["executorch/image/int8-static"]


@pytest.mark.parametrize("bad, says", [("select: quickest\n", "select: unknown value 'quickest'; allowed: fastest, smallest"),
                                       ("budgets: {max_size_mb: 0}\n", "budgets: max_size_mb: must be > 0"),
                                       ("budgets: {max_ms: 3}\n", "max_ms")])
def test_bad_select_and_budgets_are_one_line_config_errors(tmp_path, bad, says):
    with pytest.raises(ConfigError) as e:
        _target(tmp_path, bad)
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.toolchain
def test_a_budget_no_candidate_meets_fails_the_build_naming_the_nearest_miss(tmp_path, capsys):
    from edgeclip.cli import main

    from _tiny_configs import MINI_TARGET
    (tmp_path / "r.yaml").write_text(textwrap.dedent("""
    version: 1
    name: tiny
    teacher: builtin:tiny-vit
    data:
      eval:
        - {source: synthetic, split: heldout, samples: 8, languages: [en]}
    """))
    (tmp_path / "t.yaml").write_text(MINI_TARGET + "budgets: {max_size_mb: 0.01}\n")
    rc = main(["build", "--target", str(tmp_path / "t.yaml"), "--recipe", str(tmp_path / "r.yaml"),
               "--out", str(tmp_path / "out")])
    cap = capsys.readouterr()
    assert rc == 1, cap.out + cap.err
    assert "not shipped: over budget:" in cap.out  # the table of candidates says why each lost
    err = cap.err.strip().splitlines()[-1]
    assert "no artifact passed verification and the budgets for onnx/image, onnx/text" in err
    assert "nearest miss: onnx/image/fp32 (" in err and "> max_size_mb 0.01" in err
