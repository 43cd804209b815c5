"""The build pipeline end to end on a tiny recipe: every target, caching, partial reruns."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from edgeclip.bundle import load_manifest
from edgeclip.cli import main
from edgeclip.errors import InputError

from _bundle_checks import assert_tokenizer_json_reproduces_vectors
from _tiny_configs import MINI_TARGET, stage_log, twin_or_skip

TINY = """
version: 1
name: tiny
teacher: builtin:tiny-vit
seed: 0
data:
  eval:
    - {source: synthetic, split: heldout, samples: 12, languages: [en, zh]}
    - {source: digits, samples: 10}
quantization:
  calibration_samples: 4
"""


def _recipe(tmp_path: Path, text: str = TINY) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def _build(recipe: Path, target: str, out: Path) -> int:
    return main(["build", "--target", target, "--recipe", str(recipe), "--out", str(out)])


@pytest.mark.slow
@pytest.mark.toolchain
@pytest.mark.parametrize("target", ["android", "web", "ios", "ios-executorch"])
def test_tiny_recipe_builds_every_target(tmp_path, target, capsys):
    if target == "android":  # judged on the emulated cortex-a76 (targets/android.yaml devices)
        twin_or_skip()
    out = tmp_path / "out"
    rc = _build(_recipe(tmp_path), target, out)
    captured = capsys.readouterr()
    printed = captured.out
    assert rc == 0, printed + captured.err
    manifest = load_manifest(out)          # schema + every sha256 checked
    shipped = [a for a in manifest["artifacts"] if a["shipped"]]
    assert {a["tower"] for a in shipped} == {"image", "text"}
    for a in shipped:
        assert (out / a["file"]).exists()
    assert (out / "report.json").exists() and (out / "report.md").exists()
    # one recommended artifact per tower across the target's backends, shipped and in the bundle
    assert set(manifest["recommended"]) == {"image", "text"} and manifest["select"]["policy"] == "fastest"
    assert set(manifest["recommended"].values()) <= {a["file"] for a in shipped}
    assert "## Selection (policy: fastest" in (out / "report.md").read_text()
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "report:" in printed and "shipped" in printed
    report = json.loads((out / "report.json").read_text())
    # every candidate is in report.json's selection (report.png draws their front), shipped as the manifest says
    sel = report["selection"]
    assert sorted((c["backend"], c["tower"], c["variant"].split("+")[0]) for c in sel if c["shipped"]) == \
        sorted((a["backend"], a["tower"], a["quant"]) for a in shipped)
    assert all(c["why_not_shipped"] for c in sel if not c["shipped"])
    assert report["schema"] == "edgeclip.report/1"
    assert_tokenizer_json_reproduces_vectors(out, manifest)
    if target in ("android", "web"):  # runtimes that run here: accuracy is measured
        cos = [r["value"] for r in report["results"] if r["metric"] == "cosine_mean"]
        assert cos and min(cos) > 0.9
        assert all(a["metrics"].get("cosine_mean") for a in shipped)
        # every timed artifact has a per-op profile from its runtime's own profiler
        profiles = report["profiles"]
        assert "## Per-op profiles" in (out / "report.md").read_text()
        for name, prof in profiles.items():
            assert "error" not in prof, (name, prof)
            assert prof["ops"] > 0 and prof["by_op_type"], name
            if name.startswith(("executorch", "onnx")):
                assert prof["timed"] and prof["source"] in ("etdump", "ort-profiler"), name
                assert 0 < prof["ops_ms"] <= prof["total_ms"] * 1.05, (name, prof)
                assert 0.0 <= prof["glue_fraction"] < 1.0
            else:  # LiteRT's Python API has no op profiler: the op mix, not times
                assert prof["source"] == "op-count" and not prof["timed"], name
        backends = {n.split("/")[0] for n in profiles}
        assert backends == ({"executorch", "litert"} if target == "android" else {"onnx"}), backends
    if target == "android":  # every artifact ran on the twin: ARM accuracy and a count, which ranked them
        a76 = "arm64:cortex-a76"
        for a in manifest["artifacts"]:
            d = a["devices"][a76]
            assert d["instructions_per_inference"] > 1e4 and d["runner"] == "arm64-emulated:cortex-a76", a["file"]
            assert d["metrics"]["cosine_mean"] > 0.9 and d["runtime"].startswith(("executorch", "ai-edge-litert"))
        counts = [r for r in report["results"] if r["metric"] == "instructions_per_inference"]
        assert counts and {r["device"] for r in counts} == {a76}
        assert f"Ranked by instructions per inference on {a76}" in (out / "report.md").read_text()
        assert "M instructions on arm64:cortex-a76" in " ".join(c["why_not_shipped"] or "" for c in sel)


@pytest.mark.slow
@pytest.mark.toolchain
def test_rerun_is_cached_and_quant_edit_reruns_only_downstream(tmp_path):
    recipe = _recipe(tmp_path)
    out = tmp_path / "out"
    assert _build(recipe, "web", out) == 0
    first = stage_log(out)
    assert {e["stage"] for e in first if e["status"] == "ran"} >= {"teacher", "reference", "export", "verify", "bench"}

    assert _build(recipe, "web", out) == 0
    second = stage_log(out)[len(first):]
    assert second and all(e["status"] == "cached" for e in second), second

    # only the quantization section changes: teacher and reference stay cached
    edited = _recipe(tmp_path, TINY.replace("calibration_samples: 4", "calibration_samples: 4\n  keep_float: [ln_final]"))
    assert _build(edited, "web", out) == 0
    third = stage_log(out)[len(first) + len(second):]
    status = {(e["stage"], e["status"]) for e in third}
    assert ("teacher", "cached") in status and ("reference", "cached") in status
    assert ("export", "ran") in status and ("verify", "ran") in status
    assert ("teacher", "ran") not in status and ("reference", "ran") not in status

    # a second target built beside it (as --target all does) reuses teacher and reference
    mini = tmp_path / "mini.yaml"
    mini.write_text(MINI_TARGET)
    other = tmp_path / "mini-out"
    assert main(["build", "--target", str(mini), "--recipe", str(edited), "--out", str(other)]) == 0
    status = {(e["stage"], e["status"]) for e in stage_log(other)}
    assert ("teacher", "cached") in status and ("reference", "cached") in status
    assert ("export", "ran") in status and ("teacher", "ran") not in status

    # the CI gate on the build's real report: a slowdown of one artifact beyond both the 10 %
    # bound and the run's own noise band trips it
    base = json.loads((out / "report.json").read_text())
    slow = json.loads(json.dumps(base))
    hit = next(r for r in slow["results"] if r["metric"] == "latency_p50_ms")
    noise = max(r["value"] for r in base["results"] if r["metric"] == "latency_spread")
    hit["value"] *= 1.1 + noise + 0.05
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "slow.json").write_text(json.dumps(slow))
    assert main(["bench", str(out), "--baseline", str(tmp_path / "base.json")]) == 0
    assert main(["bench", str(tmp_path / "slow.json"), "--baseline", str(tmp_path / "base.json")]) == 1


def test_target_all_plans_every_target_before_building(tmp_path, capsys):
    from edgeclip.config import list_targets

    out = tmp_path / "out"
    assert main(["build", "--target", "all", "--recipe", str(_recipe(tmp_path)), "--out", str(out), "--plan"]) == 0
    printed = capsys.readouterr().out
    for name in list_targets():
        assert str(out / name) in printed
    assert not out.exists()  # --plan runs nothing


def test_second_build_into_same_folder_is_refused(tmp_path):
    from edgeclip.build.cache import BuildLock
    with BuildLock(tmp_path):
        with pytest.raises(InputError, match="another edgeclip build is writing"):
            with BuildLock(tmp_path):
                pass


def test_interrupted_stage_leaves_nothing_that_looks_whole(tmp_path):
    from edgeclip.build.cache import StageCache
    cache = StageCache(tmp_path / "c", tmp_path / "log.jsonl")
    with pytest.raises(KeyboardInterrupt):
        with cache.build("export", "abc") as tmp:
            (tmp / "model.pte").write_bytes(b"half")
            raise KeyboardInterrupt
    assert cache.cached("export", "abc") is None
    assert list((tmp_path / "c").iterdir()) == []
    with cache.build("export", "abc") as tmp:
        (tmp / "model.pte").write_bytes(b"whole")
    assert (cache.cached("export", "abc") / "model.pte").read_bytes() == b"whole"


def test_force_unknown_stage_is_exit_2(tmp_path, capsys):
    rc = main(["build", "--target", "web", "--recipe", str(_recipe(tmp_path)), "--out",
               str(tmp_path / "o"), "--force", "nonsense"])
    assert rc == 2 and "unknown stage 'nonsense'" in capsys.readouterr().err
