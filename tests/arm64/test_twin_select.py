"""Android's choices on the ARM64 twin, without the twin: a target's ``devices`` make the select
stage rank by instructions per inference on its first core (not host ms), veto int8 by the same
count, and gate each core's ARM accuracy like the host's; core specs and cpuinfo are checked."""
from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeclip.build.context import ArtifactResult
from edgeclip.build.plan import PlannedArtifact
from edgeclip.build.stages.select import records, select, selection_md
from edgeclip.config import Thresholds, load_target
from edgeclip.config.names import ARM64_CORES, parse_device_spec
from edgeclip.errors import ConfigError
from edgeclip.verify.arm64 import CORES, cpuinfo

GOOD = {"cosine_mean": 1.0, "cosine_min": 1.0, "psnr_db": 60.0, "top1_agreement": 1.0, "r1_agreement": 1.0}
A76 = "arm64:cortex-a76"


def _target(tmp_path, devices="[arm64:cortex-a76]"):
    p = tmp_path / "t.yaml"
    p.write_text(textwrap.dedent(f"""
    version: 1
    name: t
    platform: android
    backends:
      - backend: litert
        quant: {{image: [fp32, int8-static]}}
    thresholds: {{cosine_mean: 0.98, max_latency_ratio_vs_fp32: 1.1}}
    devices: {devices}
    """))
    return load_target(p)


def _ctx(target):
    return SimpleNamespace(plan=SimpleNamespace(recipe=SimpleNamespace(name="r", thresholds=Thresholds()), target=target),
                           backend_entry=lambda b: next(e for e in target.backends if e.backend == b))


def _res(quant, mb, p50, instructions, arm=GOOD):
    r = ArtifactResult(planned=PlannedArtifact("litert", "image", quant), artifact_dir=Path("."),
                       artifact={"size_bytes": int(mb * 1e6)}, metrics=dict(GOOD),
                       latency={"p50_ms": p50, "spread": 0.01}, runner="rt", verified=True)
    r.devices[A76] = {"runner": "arm64-emulated:cortex-a76", "runtime": "ai-edge-litert 1.4.0",
                      "metrics": dict(arm), "instructions": instructions}
    return r


def test_ranks_by_the_device_count_not_host_ms(tmp_path):
    # int8 is slower on this host (0.65 vs 0.32 ms) but 4x cheaper on the A76: it ships
    rs = [_res("fp32", 0.50, 0.32, 40e6), _res("int8-static", 0.16, 0.65, 10e6)]
    select(_ctx(_target(tmp_path)), rs)
    assert [r.name for r in rs if r.shipped] == ["litert/image/int8-static"]
    assert rs[0].why_not_shipped == f"int8-static was chosen (cheaper: 10 M instructions on {A76})"
    # host-only (no devices): the same results rank by host ms, and int8 is vetoed as slower
    rs = [_res("fp32", 0.50, 0.32, 40e6), _res("int8-static", 0.16, 0.65, 10e6)]
    select(_ctx(_target(tmp_path, "[]")), rs)
    assert [r.name for r in rs if r.shipped] == ["litert/image/fp32"]
    assert rs[1].why_not_shipped == "slower than its float sibling (0.65 ms vs 0.32 ms)"


def test_the_int8_veto_uses_the_device_count(tmp_path):
    rs = [_res("fp32", 0.50, 0.65, 10e6), _res("int8-static", 0.16, 0.32, 12e6)]  # fast here, dear on ARM
    select(_ctx(_target(tmp_path)), rs)
    assert rs[0].shipped
    assert rs[1].why_not_shipped == f"slower than its float sibling (12 M instructions on {A76} vs 10 M instructions on {A76})"


def test_counts_within_two_percent_tie_and_the_smaller_wins(tmp_path):
    rs = [_res("fp32", 0.50, 0.3, 10.0e6), _res("int8-static", 0.16, 0.3, 10.15e6)]
    rs[1].thresholds = None
    t = _target(tmp_path)
    t = type(t)(**{**vars(t), "thresholds": Thresholds(cosine_mean=0.98)})  # no veto: the tie decides
    select(_ctx(t), rs)
    assert [r.name for r in rs if r.shipped] == ["litert/image/int8-static"]
    assert "as cheap within 2%" in rs[0].why_not_shipped


def test_an_artifact_accurate_on_x86_only_fails_on_the_core(tmp_path):
    bad_on_arm = dict(GOOD, cosine_mean=0.63)
    rs = [_res("fp32", 0.50, 0.32, 40e6), _res("int8-static", 0.16, 0.65, 10e6, arm=bad_on_arm)]
    select(_ctx(_target(tmp_path)), rs)
    assert rs[0].shipped and not rs[1].shipped
    assert rs[1].why_not_shipped == f"below thresholds: cosine_mean@{A76}"


def test_an_artifact_that_crashes_on_the_core_is_not_shipped(tmp_path):
    rs = [_res("fp32", 0.50, 0.32, 40e6), _res("int8-static", 0.16, 0.65, 10e6)]
    rs[1].devices[A76].update(metrics={}, instructions=None, error="int8.tflite failed on the arm64 twin "
                              "(cortex-a76, signal 4: an instruction this core lacks): Illegal instruction")
    select(_ctx(_target(tmp_path)), rs)
    assert rs[0].shipped and not rs[1].shipped
    assert rs[1].why_not_shipped.startswith(f"failed on {A76}: int8.tflite failed on the arm64 twin (cortex-a76, signal 4")
    assert not [r for r in records(_ctx(_target(tmp_path)), rs[1]) if r.device]  # no ARM numbers to report


def test_records_carry_the_device_and_the_report_shows_it(tmp_path):
    t = _target(tmp_path)
    rs = [_res("fp32", 0.50, 0.32, 40e6), _res("int8-static", 0.16, 0.65, 10e6)]
    select(_ctx(t), rs)
    recs = records(_ctx(t), rs[1])
    counts = [r for r in recs if r.metric == "instructions_per_inference"]
    assert [(r.device, r.value, r.runner, r.emulated) for r in counts] == [(A76, 10e6, "arm64-emulated:cortex-a76", True)]
    host = [r for r in recs if r.metric == "cosine_mean" and not r.device]
    arm = [r for r in recs if r.metric == "cosine_mean" and r.device == A76]
    assert len(host) == len(arm) == 1 and len({r.key() for r in recs}) == len(recs)
    md = selection_md(rs, t)
    assert f"M instr {A76}" in md and "| 10 |" in md
    # report.png's front is drawn over the count that ranked the candidates
    from edgeclip.build.stages.select import selection_rows
    from edgeclip.verify.front import cost_key, pareto_front, plot_front
    rows = selection_rows(rs, A76)
    assert cost_key(rows) == "instructions" and [c["name"] for c in pareto_front(rows, "instructions")] == \
        ["litert/image/int8-static"]  # cheaper and smaller: it alone is the front, host ms notwithstanding
    plot_front(rows, tmp_path / "front.png")
    assert (tmp_path / "front.png").read_bytes()[:4] == b"\x89PNG"
    assert cost_key(selection_rows(rs)) == "p50_ms"  # host-ranked builds: the host front as before


def test_device_specs_and_cpuinfo():
    assert parse_device_spec("arm64") == ("arm64", "cortex-a76")
    assert parse_device_spec("arm64:cortex-a53") == ("arm64", "cortex-a53")
    for bad, says in (("adb:123", "write arm64:CORE"), ("arm64:cortex-x4", "unknown core 'cortex-x4'")):
        with pytest.raises(ConfigError, match=says):
            parse_device_spec(bad)
    assert tuple(CORES) == ARM64_CORES  # the config's names and the twin's table agree
    info = cpuinfo(CORES["cortex-a76"], cpus=2)
    assert info.count("processor\t:") == 2 and "CPU part\t: 0xd0b" in info and "asimddp" in info
    assert "asimddp" not in cpuinfo(CORES["cortex-a53"]) and not CORES["cortex-a53"].dotprod
    assert CORES["cortex-a55"].qemu_cpu == "cortex-a76"  # qemu 7.2 has no A55 model: same ISA, A55's MIDR


def test_target_devices_are_checked(tmp_path):
    assert _target(tmp_path).devices == (A76,)
    with pytest.raises(ConfigError, match="each core once"):
        _target(tmp_path, "[arm64, arm64:cortex-a76]")
    with pytest.raises(ConfigError, match="unknown core"):
        _target(tmp_path, "[arm64:m1]")
    assert load_target("android").devices == (A76,)


def test_device_status_and_plan_say_what_is_missing(tmp_path, monkeypatch, capsys):
    from edgeclip.build import make_plan
    from edgeclip.cli import main
    from edgeclip.config import default_recipe
    from edgeclip.errors import ToolchainMissing
    monkeypatch.setenv("EDGECLIP_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["device", "status", "arm64"]) == 2  # tools here, no kit: how to set it up
    assert "run `edgeclip device setup arm64`" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu-aarch64, no cross compiler
    assert main(["device", "status", "arm64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install -y qemu-user" in err and "g++-aarch64-linux-gnu" in err
    assert main(["list", "backends"]) == 0 and "arm64-twin" in capsys.readouterr().out
    with pytest.raises(ToolchainMissing, match="or pass --host-only"):
        make_plan(default_recipe(), load_target("android"), tmp_path / "out")
    # --host-only plans without it, and says nothing of arm64
    assert main(["build", "--target", "android", "--host-only", "--plan", "--out", str(tmp_path / "o")]) == 0
    assert "arm64" not in capsys.readouterr().out
