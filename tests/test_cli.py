"""The command line: exit codes, one-line errors, fast start without toolchains."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeclip.cli import main

REPO = Path(__file__).resolve().parent.parent
TOOLCHAINS = ("coremltools", "executorch", "litert_torch", "ai_edge_litert", "onnxruntime")


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "edgeclip", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_version_and_help():
    r = _run("--version")
    assert r.returncode == 0 and r.stdout.startswith("edgeclip ")
    r = _run("--help")
    assert r.returncode == 0 and "build" in r.stdout and "list" in r.stdout


@pytest.mark.parametrize("what", ["targets", "recipes", "backends", "quant"])
def test_list_does_not_import_toolchains(what):
    code = (f"import sys; from edgeclip.cli import main; rc = main(['list', '{what}']); "
            f"bad = [m for m in {TOOLCHAINS!r} if m in sys.modules]; "
            "print('IMPORTED', bad); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "IMPORTED []" in r.stdout, r.stdout


def test_list_targets_shows_four(capsys):
    assert main(["list", "targets"]) == 0
    out = capsys.readouterr().out
    for name in ("ios", "ios-executorch", "android", "web"):
        assert any(line.split()[0] == name for line in out.splitlines()), out


def test_plan_for_ios_prints_stages(tmp_path):
    r = _run("build", "--plan", "--target", "ios", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "plan: recipe embedded-default" in r.stdout
    assert "load teacher" in r.stdout and "reference" in r.stdout and "bundle" in r.stdout
    assert "coreml" in r.stdout and "fp16" in r.stdout
    # the default recipe distils: a TinyCLIP student is what gets compiled
    assert "distill 1/1       tinyclip student" in r.stdout and "inherits image+text (manual)" in r.stdout
    assert not (tmp_path / "out").exists()  # a plan writes nothing


def _bad_recipe(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(textwrap.dedent("""
        version: 1
        name: bad
        teacher: builtin:teacher-vit
        seeed: 3
    """))
    return p


def test_misspelt_key_exits_2_with_one_line(tmp_path):
    r = _run("build", "--plan", "--target", "ios", "--recipe", str(_bad_recipe(tmp_path)),
             "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "seeed" in lines[0] and "did you mean 'seed'" in lines[0] and "valid keys:" in lines[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, fragment", [
    (["build", "--plan", "--target", "iso"], "unknown target 'iso'"),
    (["build", "--plan", "--target", "ios", "--recipe", "missing.yaml"], "no such file"),
    (["build", "--plan", "--target", "ios", "--recipe", "nonexistent-recipe"], "unknown recipe"),
])
def test_bad_input_exit_2(args, fragment, tmp_path):
    r = _run(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_debug_shows_traceback(tmp_path):
    r = _run("--debug", "build", "--plan", "--target", "iso", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_yaml_syntax_error_exit_2(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("name: t\nbackends: [\n")
    r = _run("build", "--plan", "--target", str(p), cwd=tmp_path)
    assert r.returncode == 2 and "line" in r.stderr and "column" in r.stderr


def test_output_into_a_closed_pipe_is_no_error(monkeypatch, capsys):
    """``edgeclip list recipes | head -1``: the reader closed the pipe early; exit 0, no internal error."""
    import os
    read, write = os.pipe()
    os.close(read)  # the reader is gone: every write raises BrokenPipeError (EPIPE)
    pipe = open(write, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", pipe)
    try:
        rc = main(["list", "recipes"])
    finally:
        monkeypatch.undo()
        pipe.close()
    assert rc == 0
    assert "internal error" not in capsys.readouterr().err


def test_build_progress_estimates_time_left_from_the_steps_after_training():
    import io

    from edgeclip.build.context import Progress

    out = io.StringIO()
    p = Progress(total=5, stream=out)
    p.step("load + pretrain teacher builtin:x", "done", 200.0)   # minutes, once: no pace yet
    p.step("distill 1/1 tinyclip", "done", 90.0)
    p.step("export litert image fp32", "done", 2.0)
    p.step("verify litert image fp32", "done", 4.0)
    p.step("bundle", "done", 1.0)
    lines = out.getvalue().splitlines()
    assert [ln.rsplit("left ~", 1)[1] for ln in lines] == ["   ?", "   ?", "   4s", "   3s", "   0s"]
