"""Issue #12, item 1: bad inputs through the real CLI. Each gives exit 2, ONE line on stderr that
says what was wrong and how to fix it, and no partial output (the out folder absent, or holding
nothing that looks complete: see ``_reliability.lookalikes``).

Already covered elsewhere, not repeated here:
- ``tests/test_cli.py``: a misspelt top-level key (``seeed``) and a target YAML syntax error
  through a ``python -m edgeclip`` subprocess; unknown target name ``iso``, missing recipe file,
  unknown recipe name (exit 2, one line); ``--debug`` shows the traceback.
- ``tests/test_config.py``: every ConfigError message of the schema (wrong types, unknown
  backend/platform/tower/quant mode/distillation method, missing keys, versions, duplicate keys)
  at ``load_target``/``load_recipe`` level.
- ``tests/models/test_models_zoo.py``: shape mismatch, missing file and missing config at
  ``load_model`` level; ``tests/data/test_data_loaders.py``: CSV/folder loaders skip and count
  bad images under ``skip`` and name the first under ``fail``.
- ``tests/test_pipeline.py::test_force_unknown_stage_is_exit_2``.
The skip-and-count side of a corrupt image through a whole build is in
``test_reliability_builds.py::test_corrupt_eval_image_is_skipped_and_counted``.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from edgeclip.cli import main

from _reliability import MINI_FAST, lookalikes, one_error_line, run_cli, write_image_dataset

RECIPE = """
version: 1
name: bad
teacher: builtin:tiny-vit
seed: 0
data:
  eval:
    - {source: synthetic, split: heldout, samples: 4}
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _build(tmp_path: Path, capsys, recipe: str = RECIPE, target: str = MINI_FAST,
           out: Path | None = None) -> tuple[int, str, Path]:
    r = _write(tmp_path / "recipe.yaml", recipe)
    t = _write(tmp_path / "target.yaml", target)
    out = out or tmp_path / "build" / "out"
    capsys.readouterr()
    rc = main(["build", "--target", str(t), "--recipe", str(r), "--out", str(out)])
    return rc, capsys.readouterr().err, out


def _assert_refused(rc: int, err: str, fragments, root: Path, out: Path, started: bool = False) -> None:
    assert rc == 2, err
    line = one_error_line(err)
    for frag in fragments:
        assert frag in line, line
    if not started:  # found while planning: nothing written at all
        assert not out.exists() and not (out.parent / ".cache").exists(), sorted(map(str, root.rglob("*")))
    else:  # found during a stage: the lock file at most, and nothing that looks complete
        assert lookalikes(root, out) == []
        left = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert set(left) <= {".edgeclip.lock", "stage-log.jsonl", ".cache"}, left


# ---------------------------------------------------------------- found before any work starts

CONFIG_CASES = {
    "malformed-yaml": (RECIPE.replace("seed: 0", "seed: [0"), MINI_FAST, ["YAML syntax error at line", "column"]),
    "unknown-nested-key": (RECIPE, MINI_FAST.replace("runs: 3", "run: 3"),
                           ["bench.run", "did you mean 'runs'", "valid keys:"]),
    "wrong-type": (RECIPE.replace("seed: 0", "seed: zero"), MINI_FAST, ["seed", "expected an integer", "'zero'"]),
    "wrong-type-nested": (RECIPE + "pretrain: {steps: many}\n", MINI_FAST,
                          ["pretrain.steps", "expected an integer"]),
    "unknown-backend": (RECIPE, MINI_FAST.replace("backend: onnx", "backend: tensorrt"),
                        ["backends[0].backend", "'tensorrt'", "coreml, executorch, litert, onnx"]),
    "unknown-method": (RECIPE + "distill: [{method: tinyclipp, steps: 1}]\n", MINI_FAST,
                       ["distill[0].method", "'tinyclipp'", "tinyclip"]),
    "mode-backend-cannot-build": (RECIPE, MINI_FAST.replace("quant: [fp32]", "quant: [pal4]"),
                                  ["backend onnx cannot build quantization 'pal4'", "it offers"]),
    "unknown-teacher-scheme": (RECIPE.replace("builtin:tiny-vit", "s3:bucket/m"), MINI_FAST,
                               ["model URI 's3:bucket/m'", "openclip, hf, file, builtin"]),
    # found by the fuzz (test_reliability_fuzz.py): once tracebacks, now one-line errors
    "unhashable-yaml-key": (RECIPE + "? [a, b]\n: 1\n", MINI_FAST, ["mapping key must be a plain value"]),
    "key-with-newline": (RECIPE + '"bad\\nkey": 1\n', MINI_FAST, ["unknown key 'bad\\nkey'"]),
    "method-option-wrong-type": (
        RECIPE.replace("data:\n", "data:\n  train: {source: synthetic, samples: 8}\n")
        + "distill: [{method: tinyclip, steps: 1, options: {alpha: high}}]\n", MINI_FAST,
        ["distill stage 1 (tinyclip)", "invalid options", "'high'"]),
    "nul-in-data-path": (RECIPE.replace("- {source: synthetic, split: heldout, samples: 4}",
                                        '- {source: csv, path: "eval\\0.csv"}'), MINI_FAST,
                         ["data path", "does not exist", "fix the path"]),
    "missing-checkpoint": (RECIPE.replace("builtin:tiny-vit", "file:nowhere/teacher.safetensors"), MINI_FAST,
                           ["teacher checkpoint", "nowhere/teacher.safetensors", "does not exist"]),
    "checkpoint-of-unknown-user": (RECIPE.replace("builtin:tiny-vit", "file:~no-such-user-x/t.pt"), MINI_FAST,
                                   ["teacher checkpoint", "does not exist"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_errors_exit_2_one_line_nothing_written(case, tmp_path, capsys):
    recipe, target, fragments = CONFIG_CASES[case]
    rc, err, out = _build(tmp_path, capsys, recipe, target)
    _assert_refused(rc, err, fragments, tmp_path, out)


def test_missing_toolchain_extra(tmp_path, capsys, monkeypatch):
    """The backend's toolchain is absent (simulated: importing onnxruntime fails): exit 2 with the
    pip command, before anything is written."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    rc, err, out = _build(tmp_path, capsys)
    _assert_refused(rc, err, ["target mini needs backend onnx", "onnxruntime", "pip install"], tmp_path, out)


# ---------------------------------------------------------------- found while a stage runs

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A good tiny-vit checkpoint and damaged variants of it, each with its JSON config."""
    from edgeclip.models import build_builtin, save_model
    d = tmp_path_factory.mktemp("ckpt")
    good = save_model(build_builtin("tiny-vit"), d / "good")
    data, cfg = good.read_bytes(), json.loads((d / "good.json").read_text())
    variants = {
        "truncated": (data[: len(data) // 2], cfg),
        "shape-mismatch": (data, {**cfg, "embed_dim": 32}),   # the config describes another model
        "config-not-an-object": (data, [cfg]),
        "not-a-checkpoint": (b"PK\x03\x04 this is not a checkpoint" * 20, cfg),
    }
    out = {}
    for name, (blob, c) in variants.items():
        p = d / f"{name}.safetensors"
        p.write_bytes(blob)
        p.with_suffix(".json").write_text(json.dumps(c))
        out[name] = p
    return out


@pytest.mark.parametrize("case, fragments", [
    ("truncated", ["truncated.safetensors", "cannot read checkpoint", "damaged or truncated", "safetensors"]),
    ("shape-mismatch", ["shape-mismatch.safetensors", "has shape", "in the checkpoint but", "model config"]),
    ("config-not-an-object", ["config-not-an-object.json", "must be a JSON object"]),
    ("not-a-checkpoint", ["not-a-checkpoint.safetensors", "cannot read checkpoint"]),
])
def test_bad_checkpoint_exit_2(case, fragments, checkpoints, tmp_path, capsys):
    recipe = RECIPE.replace("builtin:tiny-vit", f"file:{checkpoints[case]}")
    rc, err, out = _build(tmp_path, capsys, recipe)
    _assert_refused(rc, err, fragments, tmp_path, out, started=True)


def test_wrong_type_subprocess_one_line(tmp_path):
    """Through a real ``python -m edgeclip`` process: the exit code and stderr a user sees (the
    runtime failures through a real process: the pickle checkpoint in test_reliability_untrusted,
    the refused second build and the killed builds in test_reliability_builds)."""
    r = _write(tmp_path / "recipe.yaml", RECIPE + "pretrain: {steps: many}\n")
    t = _write(tmp_path / "target.yaml", MINI_FAST)
    res = run_cli("build", "--target", str(t), "--recipe", str(r), "--out", str(tmp_path / "out"))
    assert res.returncode == 2, res.stderr
    assert "pretrain.steps" in one_error_line(res.stderr)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["csv", "folder"])
def test_corrupt_eval_image_is_fatal_under_fail(kind, tmp_path, capsys):
    data = write_image_dataset(tmp_path / "data", kind)
    recipe = RECIPE.replace("- {source: synthetic, split: heldout, samples: 4}",
                            f"- {{source: {kind}, path: '{data}', on_bad_image: fail}}")
    rc, err, out = _build(tmp_path, capsys, recipe)
    _assert_refused(rc, err, ["bad image", "bad.jpg", "on_bad_image"], tmp_path, out, started=True)


def test_unknown_dataset_option_is_found_at_plan_time(tmp_path, capsys):
    """Was an internal error (TypeError from the loader) after the teacher stage had run."""
    data = write_image_dataset(tmp_path / "data", "csv")
    recipe = RECIPE.replace("- {source: synthetic, split: heldout, samples: 4}",
                            f"- {{source: csv, path: '{data}', options: {{colums: 3}}}}")
    rc, err, out = _build(tmp_path, capsys, recipe)
    _assert_refused(rc, err, ["data.eval[0].options", "'colums'", "valid options: image_col, caption_col, sep"],
                    tmp_path, out)


# ---------------------------------------------------------------- unwritable output

def _chmod_blocks_writes(folder: Path) -> bool:
    """False where chmod does not stop us (root, some file systems): test another way there."""
    probe = folder / "probe"
    try:
        probe.mkdir()
    except OSError:
        return True
    probe.rmdir()
    return False


def test_out_under_a_regular_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    rc, err, out = _build(tmp_path, capsys, out=tmp_path / "afile" / "out")
    _assert_refused(rc, err, ["cannot write to output folder", "afile", "choose a writable --out"], tmp_path, out)


def test_out_in_read_only_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not _chmod_blocks_writes(ro):
            pytest.skip("chmod 0o500 does not block writes here (root); covered by the regular-file cases")
        rc, err, out = _build(tmp_path, capsys, out=ro / "out")
        _assert_refused(rc, err, ["cannot write", "--out"], tmp_path, out)
    finally:
        ro.chmod(0o700)


def test_stage_cache_location_unusable(tmp_path, capsys):
    """``<out>/../.cache`` is where the shared stages go: a file there is found before any work
    (was an internal error, exit 3, when the first stage tried to write)."""
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / ".cache").write_text("in the way")
    rc, err, out = _build(tmp_path, capsys)
    assert rc == 2, err
    line = one_error_line(err)
    assert "stage cache folder" in line and ".cache" in line and "is a file" in line
    assert lookalikes(tmp_path, out) == []
    assert not (tmp_path / "build" / ".cache").is_dir()


def test_disk_full_or_permission_error_mid_build_is_exit_2(tmp_path, capsys, monkeypatch):
    """An OSError from the machine (ENOSPC, EACCES, EROFS) while a stage writes is the user's to
    fix, not a bug: exit 2 and one line naming the file; the stage leaves nothing half-written."""
    import errno

    from edgeclip.models import _checkpoint

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "model.safetensors"))

    monkeypatch.setattr(_checkpoint, "save_model", full)
    monkeypatch.setattr("edgeclip.models.save_model", full)
    rc, err, out = _build(tmp_path, capsys)
    assert rc == 2, err
    line = one_error_line(err)
    assert "No space left on device" in line and "model.safetensors" in line and "--out" in line
    assert lookalikes(tmp_path, out) == []
