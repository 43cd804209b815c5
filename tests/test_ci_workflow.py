"""The CI files say what the README says: the workflow's steps are the README's commands, it gates
on a committed baseline that edgeclip can read, and `.ci/run` ends in the README's test command."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
WORKFLOW = yaml.safe_load((ROOT / ".github/workflows/device-latency.yml").read_text())
ACTIVATE = ". .venv/bin/activate && "


def _code_lines() -> set[str]:
    return {ln.strip() for block in re.findall(r"```bash\n(.*?)```", README, re.S) for ln in block.splitlines()}


def _runs(job: str) -> list[str]:
    steps = WORKFLOW["jobs"][job]["steps"]
    return [s["run"].strip().removeprefix(ACTIVATE) for s in steps if "run" in s]


def test_every_workflow_command_is_a_readme_command():
    lines = _code_lines()
    for job in WORKFLOW["jobs"]:
        runs = _runs(job)
        assert runs, job
        missing = [r for r in runs if r not in lines]
        assert not missing, f"{job}: not in the README's bash blocks: {missing}"


def test_the_hosted_job_tests_then_gates_on_the_committed_baseline():
    from edgeclip.verify.report import read_report

    runs = _runs("build-and-gate")
    tests = next(i for i, r in enumerate(runs) if "pytest" in r)
    assert runs[tests].endswith("pytest -q")  # the tests run before anything is built
    assert tests < next(i for i, r in enumerate(runs) if r.startswith("edgeclip build"))
    assert any("qemu-user" in r for r in runs[:tests])  # the ARM64 twin's host tools, for the tests and the gate
    gate = next(r for r in runs if r.startswith("edgeclip bench") and "--baseline" in r)
    baseline = ROOT / re.search(r"--baseline (\S+)", gate).group(1)
    assert not any("if" in s for s in WORKFLOW["jobs"]["build-and-gate"]["steps"] if s.get("run") and "--baseline" in s["run"])
    report = read_report(baseline)  # a real edgeclip report, schema checked
    assert report["machine"]["yardstick"]["gemm_peak_gflops"] > 0  # comparable from another machine
    metrics = {r["metric"] for r in report["results"]}
    assert {"latency_p50_ms", "latency_spread", "cosine_mean", "instructions_per_inference"} <= metrics
    # the gate compares instruction counts on the emulated core: every shipped artifact has one
    counted = {(r["backend"], r["tower"], r["quant"]) for r in report["results"]
               if r["metric"] == "instructions_per_inference" and r.get("device") == "arm64:cortex-a76"}
    shipped = {(c["backend"], c["tower"], c["variant"]) for c in report["selection"] if c["shipped"]}
    assert shipped and shipped <= counted
    assert {r["target"] for r in report["results"]} == {"android"}


def test_phone_job_runs_only_where_a_phone_is_named():
    phone = WORKFLOW["jobs"]["phone"]
    assert "self-hosted" in phone["runs-on"] and "EDGECLIP_ADB_SERIAL" in phone["if"]
    assert any("--device" in r for r in _runs("phone"))


def test_ci_run_ends_in_the_readme_test_command():
    script = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    readme_test = next(ln for ln in _code_lines() if ln.endswith("pytest -q") and "[all,test]" in ln)
    assert script[-1] == readme_test.rsplit("&& ", 1)[1] == "pytest -q"


def test_the_file_order_table_names_every_test_file_and_no_other():
    # tests/conftest.py hands files to the xdist workers slowest first from this table; a file
    # missing from it is guessed, so a new slow file could end up last and idle the other worker
    import json

    table = set(json.loads((ROOT / "tests/file_durations.json").read_text())["seconds"])
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("test_*.py") if "node_modules" not in p.parts}
    refresh = "refresh it: pytest -q --write-file-durations tests/file_durations.json"
    assert not files - table, f"test files not in tests/file_durations.json: {sorted(files - table)}; {refresh}"
    assert not table - files, f"tests/file_durations.json names files that are gone: {sorted(table - files)}; {refresh}"
