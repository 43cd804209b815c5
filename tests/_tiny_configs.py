"""Small config files shared by the end-to-end tests."""

# one ONNX fp32 artifact per tower: the cheapest target that still builds end to end; timed with
# the default bench (5 rounds, each re-measuring the GEMM yardstick and letting it settle) ...
MINI_TIMED = """
version: 1
name: mini
platform: web
towers: [image, text]
backends:
  - backend: onnx
    quant: [fp32]
"""
# ... or, for the tests that read no latency's noise band, in 2 short rounds
MINI_TARGET = MINI_TIMED + "bench: {warmup: 1, runs: 6, rounds: 2, threads: 2}\n"


def build_mini(tmp_path, recipe_text: str, capsys, target_text: str = MINI_TARGET) -> "Path":
    """Build ``recipe_text`` for ``target_text`` (MINI_TARGET) into ``tmp_path/out`` through the
    CLI; assert it succeeded (showing the output if not) and return the bundle folder."""
    import textwrap
    from pathlib import Path

    from edgeclip.cli import main

    recipe, target, out = tmp_path / "r.yaml", tmp_path / "mini.yaml", Path(tmp_path) / "out"
    recipe.write_text(textwrap.dedent(recipe_text))
    target.write_text(textwrap.dedent(target_text))
    rc = main(["build", "--target", str(target), "--recipe", str(recipe), "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.out + cap.err
    return out


def stage_log(out) -> list[dict]:
    """The build's ``stage-log.jsonl`` (which stages ran, which came from the cache)."""
    import json
    from pathlib import Path

    return [json.loads(x) for x in (Path(out) / "stage-log.jsonl").read_text().splitlines()]


def twin_or_skip():
    """The ARM64 twin's kit, set up on first use where its host tools are installed (one worker at a
    time), else skip saying what is missing; where ``EDGECLIP_REQUIRE_TWIN`` is set (``.ci/run``)
    a missing twin fails instead, so CI cannot skip it silently."""
    import os

    import pytest
    from filelock import FileLock

    from edgeclip.verify.arm64 import kit_dir, kit_status, missing_host_tools, ready_kit
    if kit_status() and not missing_host_tools():
        kit_dir().parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(kit_dir().parent / ".setup.lock")):
            return ready_kit(setup_if_missing=True)
    why = kit_status()
    if why:
        if os.environ.get("EDGECLIP_REQUIRE_TWIN"):
            pytest.fail(f"EDGECLIP_REQUIRE_TWIN is set but {why}")
        pytest.skip(why)
    return ready_kit()
