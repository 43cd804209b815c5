"""Snippets use the platforms' libraries: DJL on Android, swift-transformers on iOS,
onnxruntime-web + transformers.js on the web; the preprocessing they spell out follows the
manifest (normalize in the app, or hand raw NHWC pixels to an artifact that normalizes itself).

JavaScript runs under Node with the npm packages it imports (tests/js, installed by .ci/run): its
syntax, and the real snippet on a real web bundle (tokenizer and text session; Node has no
canvas, so the image path is not run). Kotlin and Swift get the structural checks of
_bundle_checks only: no compiler for them runs here."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from edgeclip.bundle.snippets import render_snippets, write_snippets

from _bundle_checks import assert_snippet_matches, fake_manifest

NODE = shutil.which("node")


@pytest.mark.parametrize("in_graph", [False, True])
def test_every_platform_snippet_follows_the_manifest(tmp_path, in_graph):
    cases = [("android", ["litert", "executorch"], {"LiteRT.kt": "litert", "ExecuTorch.kt": "executorch"}),
             ("ios", ["coreml"], {"CoreML.swift": "coreml"}), ("web", ["onnx"], {"EdgeClip.js": "onnx"})]
    for platform, backends, files in cases:
        m = fake_manifest(platform, backends, in_graph=in_graph)
        rendered = render_snippets(m)
        assert {k: v[1] for k, v in rendered.items()} == files
        for name, (_lang, backend, _arts, text) in rendered.items():
            assert_snippet_matches(text, m, backend)
            if in_graph:
                assert "NHWC" in text and ("Unsigned(" in text) == (backend == "executorch")
    entries = write_snippets(tmp_path, fake_manifest("web", ["onnx"], in_graph=in_graph))
    assert entries and entries[0]["language"] == "javascript"


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.parametrize("in_graph", [False, True])
def test_javascript_snippet_parses(tmp_path, in_graph):
    f = tmp_path / "EdgeClip.mjs"
    f.write_text(render_snippets(fake_manifest("web", ["onnx"], in_graph=in_graph))["EdgeClip.js"][3])
    r = subprocess.run([NODE, "--check", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


_RECIPE = """
version: 1
name: tiny
teacher: builtin:tiny-vit
seed: 0
data:
  eval:
    - {source: synthetic, split: heldout, samples: 12, languages: [en]}
"""


@pytest.mark.slow
@pytest.mark.toolchain
def test_web_snippet_runs_with_the_real_packages_and_agrees_with_the_bundle(tmp_path, capsys):
    """EdgeClip.js under Node with onnxruntime-web and Tokenizers.js as npm installs them: the
    tokenizer reproduces every test vector (ftfy table, entities, CJK, over-long text) and the text
    session gives the embeddings edgeclip's own runner gets from the same .onnx."""
    import numpy as np

    from edgeclip.commands.predict import BundleRunner

    from _bundle_checks import run_web_snippet
    from _tiny_configs import build_mini

    out = build_mini(tmp_path, _RECIPE, capsys)
    texts = ["a photo of a red circle", "Tom &amp; Jerry’s “café” ＡＢＣ", "两个蓝色的正方形"]
    js = run_web_snippet(out, tmp_path / "node", texts)
    assert js["ids"] == js["want_ids"]
    want = BundleRunner(out).encode_texts(texts)
    np.testing.assert_allclose(np.asarray(js["emb"], np.float32), want, atol=1e-5)
