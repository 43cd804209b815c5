"""Snippets use the platforms' libraries: DJL on Android, swift-transformers on iOS,
onnxruntime-web + transformers.js on the web; the preprocessing they spell out follows the
manifest (normalize in the app, or hand raw NHWC pixels to an artifact that normalizes itself).

JavaScript is checked by Node where it is installed: its syntax, and its glue (the tokenizer's
framing, the feeds and tensor shapes) run against stand-ins for the two npm packages, with
tokenizer.json itself read by the Python tokenizers library. Kotlin and Swift get the structural
checks of _bundle_checks only: no compiler for them runs here."""
from __future__ import annotations

import json
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


_STUBS = {
    "onnxruntime-web": """
export class Tensor { constructor(type, data, dims) { Object.assign(this, { type, data, dims }); } }
export const InferenceSession = { create: async (url) => ({ url, run: async (feeds) => {
  globalThis.FEEDS.push({ url, feeds });
  const out = {}; out[globalThis.OUTPUT_NAMES[url]] = { data: new Float32Array(4) }; return out; } }) };
""",
    "@huggingface/transformers": """
export class PreTrainedTokenizer {
  constructor(json, config) { if (!json.model || !config.edgeclip) throw new Error("not the bundle's files"); }
  encode(text) { return globalThis.UNFRAMED[text]; }
}
""",
}

_DRIVER = """
import fs from "node:fs";
const bundle = process.argv[2];
globalThis.fetch = async (url) => ({ json: async () => JSON.parse(fs.readFileSync(bundle + "/" + url, "utf8")) });
const input = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
Object.assign(globalThis, { FEEDS: [], UNFRAMED: input.unframed, OUTPUT_NAMES: input.outputs });
const { EdgeClipOnnx, frame } = await import(bundle + "/EdgeClip.mjs");
const m = await EdgeClipOnnx.create("");
const ids = input.vectors.map((v) => Array.from(m.tokenize(v.text)));
await m.embedText(input.vectors[0].text);
console.log(JSON.stringify({ ids, feeds: globalThis.FEEDS.map((f) => ({ url: f.url,
  inputs: Object.fromEntries(Object.entries(f.feeds).map(([k, t]) => [k, { type: t.type, dims: t.dims }])) })) }));
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_javascript_glue_frames_the_tokenizer_ids_and_feeds_the_manifest_tensors(tmp_path):
    """transformers.js stands in as a stub that returns what the Python tokenizers library gives
    for tokenizer.json without padding or truncation: the snippet's own framing must then produce
    every test vector (a long text included) and feed the text session the manifest's tensor."""
    from tokenizers import Tokenizer

    from edgeclip.build.stages.bundle import TOKENIZER_SAMPLES
    from edgeclip.models import OpenClipTokenizer

    tok = OpenClipTokenizer(context_length=16)
    tok.export(tmp_path / "tokenizer")
    m = fake_manifest("web", ["onnx"])
    m["tokenizer"].update(context_length=16, pad_id=tok.pad_id, eot_id=tok.eot_id)
    for a in m["artifacts"]:
        if a["tower"] == "text":
            a["inputs"][0]["shape"] = [1, 16]
    (tmp_path / "EdgeClip.mjs").write_text(render_snippets(m)["EdgeClip.js"][3])
    for pkg, code in _STUBS.items():
        d = tmp_path / "node_modules" / pkg
        d.mkdir(parents=True)
        (d / "package.json").write_text(json.dumps({"name": pkg, "type": "module", "main": "index.js"}))
        (d / "index.js").write_text(code)
    raw = Tokenizer.from_file(str(tmp_path / "tokenizer/tokenizer.json"))
    raw.no_padding()
    raw.no_truncation()
    vectors = tok.test_vectors(TOKENIZER_SAMPLES)
    shipped = [a for a in m["artifacts"] if a["shipped"]]
    (tmp_path / "input.json").write_text(json.dumps({
        "vectors": vectors, "unframed": {v["text"]: raw.encode(v["text"]).ids for v in vectors},
        "outputs": {a["file"]: a["outputs"][0]["name"] for a in shipped}}))
    (tmp_path / "driver.mjs").write_text(_DRIVER)
    r = subprocess.run([NODE, str(tmp_path / "driver.mjs"), str(tmp_path), str(tmp_path / "input.json")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ids"] == [v["ids"] for v in vectors]
    assert any(len(u) > 16 for u in json.loads((tmp_path / "input.json").read_text())["unframed"].values())
    text = next(a for a in shipped if a["tower"] == "text")
    feed = next(f for f in out["feeds"] if f["url"] == text["file"])
    assert feed["inputs"] == {"input_ids": {"type": "int32", "dims": [1, 16]}}
