"""Fast checks of what a bundle takes in and gives out, without building one: label files and
their errors (before any work starts), zip-slip archives, snippets from a hand-written manifest."""
from __future__ import annotations

import stat
import textwrap
import zipfile
from pathlib import Path

import pytest

from edgeclip.bundle.archive import open_bundle
from edgeclip.cli import main
from edgeclip.errors import InputError
from edgeclip.bundle.labels import DEFAULT_TEMPLATES, read_labels_file, resolve_labels
from edgeclip.config import ExportConfig
from edgeclip.bundle.snippets import render_snippets, write_snippets

from _bundle_checks import assert_balanced, assert_snippet_matches, fake_manifest as _manifest
from _tiny_configs import MINI_TARGET

RECIPE = """
version: 1
name: tiny
teacher: builtin:tiny-vit
data:
  eval:
    - {source: digits, samples: 10}
"""


def _files(tmp_path: Path, recipe: str = RECIPE) -> tuple[Path, Path]:
    (tmp_path / "r.yaml").write_text(textwrap.dedent(recipe))
    (tmp_path / "t.yaml").write_text(MINI_TARGET)
    return tmp_path / "r.yaml", tmp_path / "t.yaml"


def test_labels_file_reads_utf8_and_keeps_order(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_bytes("\ufeffcat\n  一只狗 \r\nred circle\n\n\n".encode("utf-8"))
    assert read_labels_file(p) == ("cat", "一只狗", "red circle")
    ls = resolve_labels(ExportConfig(labels=("a", "b")), p)  # --labels wins over the recipe
    assert ls.labels == ("cat", "一只狗", "red circle") and ls.templates == DEFAULT_TEMPLATES
    assert ls.prompts()[1][0] == "a photo of a 一只狗."
    assert resolve_labels(ExportConfig()) is None


@pytest.mark.parametrize("content, match", [
    (b"cat\n\ndog\n", "label 2 is empty"),
    (b"cat\ndog\ncat\n", "'cat' appears twice"),
    (b"\n\n", "no labels"),
    (b"caf\xe9\n", "not UTF-8"),
    (None, "does not exist"),
])
def test_bad_labels_file_is_one_line_exit_2_before_any_work(tmp_path, capsys, content, match):
    recipe, target = _files(tmp_path)
    labels = tmp_path / "labels.txt"
    if content is not None:
        labels.write_bytes(content)
    out = tmp_path / "out"
    rc = main(["build", "--target", str(target), "--recipe", str(recipe), "--out", str(out), "--labels", str(labels)])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and err.count("\n") == 1, err
    assert not out.exists() and not (tmp_path / ".cache").exists()  # nothing started


@pytest.mark.parametrize("export, match", [
    ("  towers: [image, zero-shot-head]\n", "pass --labels labels.txt"),
    ("  labels: [cat, cat]\n", "'cat' appears twice"),
    ("  labels: [cat]\n  labels_file: l.txt\n", "labels or labels_file, not both"),
    ("  labels: [cat]\n  templates: ['a photo of a cat']\n", "must contain '{}' exactly once"),
])
def test_recipe_label_problems_fail_at_plan_time(tmp_path, capsys, export, match):
    recipe, target = _files(tmp_path, RECIPE + "export:\n" + export)
    rc = main(["build", "--target", str(target), "--recipe", str(recipe), "--out", str(tmp_path / "o"), "--plan"])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and err.count("\n") == 1, err


def test_plan_lists_labels_and_the_head(tmp_path, capsys):
    recipe, target = _files(tmp_path, RECIPE + "export:\n  towers: [image, text, zero-shot-head]\n")
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    rc = main(["build", "--target", str(target), "--recipe", str(recipe), "--out", str(tmp_path / "o"),
               "--labels", str(tmp_path / "labels.txt"), "--plan"])
    out = capsys.readouterr().out
    assert rc == 0 and "onnx       zero-shot-head quantize fp32" in out
    assert "2 from " in out and "3 prompt template(s)" in out and "o.zip" in out


def _zip(path: Path, entries: list[tuple[str, bytes, int | None]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


@pytest.mark.parametrize("name, mode, why", [
    ("../evil.txt", None, "'..' component"),
    ("ok/../../evil.txt", None, "'..' component"),
    ("/tmp/evil.txt", None, "absolute path"),
    ("C:/evil.txt", None, "absolute path"),
    ("..\\evil.txt", None, "backslash"),
    ("link", stat.S_IFLNK | 0o777, "symbolic link"),
])
def test_zip_slip_entries_are_refused_and_nothing_is_written(tmp_path, monkeypatch, name, mode, why):
    monkeypatch.setenv("EDGECLIP_CACHE_DIR", str(tmp_path / "cache"))
    data = b"../../../../evil.txt" if mode else b"pwned"
    bad = _zip(tmp_path / "bad.zip", [("manifest.json", b"{}", None), (name, data, mode)])
    with pytest.raises(InputError, match=why) as e:
        open_bundle(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # no half-extracted folder left


def test_not_a_bundle_is_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    assert main(["inspect", str(junk)]) == 2
    assert "neither a bundle folder nor a zip archive" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.zip")]) == 2
    assert "no such bundle" in capsys.readouterr().err


@pytest.mark.parametrize("labels", [True, False])
def test_snippets_from_a_manifest_agree_with_it(tmp_path, labels):
    android = _manifest("android", ["litert", "executorch"], labels)
    entries = write_snippets(tmp_path, android)
    assert [e["file"] for e in entries] == ["snippets/LiteRT.kt", "snippets/ExecuTorch.kt"]
    for e in entries:
        text = (tmp_path / e["file"]).read_text()
        assert_snippet_matches(text, android, e["backend"])
        assert ("fun classify(" in text) == labels and ("classifyWithHead" in text) == labels
        assert "not-shipped" not in text
    assert "setNumThreads(threads)" in (tmp_path / "snippets/LiteRT.kt").read_text()
    ios = _manifest("ios", ["coreml"], labels)
    swift = render_snippets(ios)["CoreML.swift"][3]
    assert_snippet_matches(swift, ios, "coreml")
    assert ".mlmodelc" in swift and "compileModel(at:" in swift and "self.image.prediction" in swift
    assert render_snippets(_manifest("ios", ["executorch"])) == {}  # ExecuTorch Kotlin is for Android only
    write_snippets(tmp_path, _manifest("web", ["litert"]))
    assert not (tmp_path / "snippets").exists()  # stale snippets go when a rebuild has none


def test_brace_check_catches_an_unbalanced_snippet():
    assert_balanced('fun f() { val s = "}{"; /* } */ g(1) } // }')
    with pytest.raises(AssertionError, match="unclosed"):
        assert_balanced("fun f() { if (x) { y() }")
    with pytest.raises(AssertionError, match="unbalanced"):
        assert_balanced("fun f() { g(] }")


def test_head_gate_skips_metrics_a_head_cannot_have():
    from edgeclip.config import Thresholds
    from edgeclip.verify.gate import check_accuracy
    from edgeclip.verify.report import Record
    base = dict(model="m", target="t", backend="onnx", quant="fp32", runner="onnxruntime", emulated=False)
    th = Thresholds(cosine_mean=0.99, top1_agreement=0.9, r1_agreement=0.85)
    recs = [Record(**base, tower=tw, metric=k, value=v) for tw in ("zero-shot-head", "image")
            for k, v in (("cosine_mean", 0.999), ("top1_agreement", 1.0))]
    short = check_accuracy(recs, {"onnx/zero-shot-head/fp32": th, "onnx/image/fp32": th})
    assert [(s.artifact, s.metric) for s in short] == [("onnx/image/fp32", "r1_agreement")]
