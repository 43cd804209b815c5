"""The CI regression gate: `edgeclip bench REPORT --baseline OLD.json`."""
from __future__ import annotations

import json

import pytest

from edgeclip.cli import main
from edgeclip.verify.compare import compare_reports, parse_fraction


def _report(p50_image=20.0, p50_text=5.0, cos=0.999, extra=()):
    def rec(backend, tower, quant, metric, value):
        return {"model": "builtin:tiny-vit", "target": "android", "backend": backend, "tower": tower,
                "quant": quant, "runner": "ai-edge-litert", "emulated": False, "metric": metric,
                "value": value, "unit": ""}
    rows = [rec("litert", "image", "int8-static", "latency_p50_ms", p50_image),
            rec("litert", "image", "int8-static", "cosine_mean", cos),
            rec("litert", "text", "int8-dynamic", "latency_p50_ms", p50_text),
            rec("litert", "text", "int8-dynamic", "top1_agreement", 1.0)] + list(extra)
    return {"schema": "edgeclip.report/1", "machine": {}, "results": rows}


def _write(tmp_path, name, obj):
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return str(p)


def test_thirty_percent_slowdown_trips_and_noise_passes(tmp_path, capsys):
    base = _write(tmp_path, "base.json", _report())
    slow = _write(tmp_path, "slow.json", _report(p50_image=26.0))     # +30 %
    noisy = _write(tmp_path, "noisy.json", _report(p50_image=21.0, p50_text=4.6))  # +5 %, -8 %
    assert main(["bench", slow, "--baseline", base, "--max-regression", "10%"]) == 1
    out = capsys.readouterr().out
    assert "litert/image/int8-static" in out and "latency_p50_ms" in out and "26" in out
    assert "text" not in out.split("regression(s)")[1]
    assert main(["bench", noisy, "--baseline", base, "--max-regression", "10%"]) == 0
    assert "no regressions" in capsys.readouterr().out


def test_accuracy_drop_beyond_bound_is_a_regression():
    regs = compare_reports(_report(cos=0.990), _report(cos=0.999), 0.1, 0.005).regressions
    assert [(r.metric, r.artifact) for r in regs] == [("cosine_mean", "litert/image/int8-static")]
    assert compare_reports(_report(cos=0.997), _report(cos=0.999), 0.1, 0.005).regressions == []


def test_artifacts_on_one_side_are_noted_not_failed():
    extra = [{"model": "builtin:tiny-vit", "target": "android", "backend": "executorch", "tower": "image",
              "quant": "fp32", "runner": "x", "emulated": False, "metric": "latency_p50_ms",
              "value": 99.0, "unit": "ms"}]
    cmp = compare_reports(_report(extra=extra), _report(), 0.1, 0.005)
    assert cmp.regressions == [] and cmp.notes == ["only in the new report: executorch/image/fp32"]


@pytest.mark.parametrize("bad", ["ten", "-5%", "2000%"])
def test_bad_bound_is_a_one_line_input_error(tmp_path, capsys, bad):
    base = _write(tmp_path, "base.json", _report())
    assert main(["bench", base, "--baseline", base, f"--max-regression={bad}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-regression" in err


def test_not_a_report_is_an_input_error(tmp_path, capsys):
    assert main(["bench", str(tmp_path)]) == 2
    assert "report.json" in capsys.readouterr().err
    assert parse_fraction("0.25", "x") == 0.25


def test_baseline_with_nothing_in_common_is_refused(tmp_path, capsys):
    other = _report()
    for r in other["results"]:
        r["target"] = "web"
    assert main(["bench", _write(tmp_path, "new.json", _report()), "--baseline",
                 _write(tmp_path, "web.json", other)]) == 2
    assert "share no artifact" in capsys.readouterr().err


def _counted(instr_image, p50_image=20.0, arm_cos=0.999):
    """A report whose artifacts also carry instructions per inference (and ARM accuracy) on the
    emulated cortex-a76, as an android build's do."""
    def dev(tower, quant, metric, value):
        return {"model": "builtin:tiny-vit", "target": "android", "backend": "litert", "tower": tower, "quant": quant,
                "runner": "arm64-emulated:cortex-a76", "emulated": True, "metric": metric, "value": value,
                "unit": "", "device": "arm64:cortex-a76"}
    return _report(p50_image=p50_image, extra=[dev("image", "int8-static", "instructions_per_inference", instr_image),
                                               dev("image", "int8-static", "cosine_mean", arm_cos),
                                               dev("text", "int8-dynamic", "instructions_per_inference", 2.0e6)])


def test_counts_are_gated_by_default_tightly_and_host_ms_on_request(tmp_path, capsys):
    base = _write(tmp_path, "base.json", _counted(10.0e6))
    # +1.5% instructions fails at the 1% default although host ms did not move; a rerun's same count passes
    assert main(["bench", _write(tmp_path, "heavier.json", _counted(10.15e6)), "--baseline", base]) == 1
    out = capsys.readouterr().out
    assert "instructions per inference compared on the emulated ARM cores" in out
    assert "litert/image/int8-static@arm64:cortex-a76" in out and "+1.50%" in out
    assert main(["bench", _write(tmp_path, "same.json", _counted(10.0e6, p50_image=40.0)), "--baseline", base]) == 0
    assert "instructions within +1%" in capsys.readouterr().out  # host ms doubled: not gated by default
    # --gate ms gates the host milliseconds instead (the same doubled p50 now fails)
    assert main(["bench", _write(tmp_path, "slow.json", _counted(10.0e6, p50_image=40.0)), "--baseline", base,
                 "--gate", "ms"]) == 1
    # an ARM accuracy drop is its own regression, named by the core
    cmp = compare_reports(_counted(10.0e6, arm_cos=0.95), _counted(10.0e6))
    assert [s.metric for s in cmp.regressions] == ["cosine_mean@arm64:cortex-a76"]
    # --gate instructions on reports without counts says why, in one line
    assert main(["bench", _write(tmp_path, "plain.json", _report()), "--baseline", base, "--gate", "instructions"]) == 2
    assert "share no instruction count" in capsys.readouterr().err
