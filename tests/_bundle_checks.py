"""Checks shared by the bundle tests: snippet vs manifest agreement, a cheap syntax sanity check."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from edgeclip.bundle.labels import DEFAULT_TEMPLATES
from edgeclip.bundle.snippets import parse_tensor_lines

_EXT = {"coreml": ".mlpackage", "litert": ".tflite", "executorch": ".pte", "onnx": ".onnx"}


def code_only(text: str) -> str:
    """``text`` without ``//`` and ``/* */`` comments and without the contents of string literals."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            assert j >= 0, "unterminated block comment"
            i = j + 2
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                assert text[j] != "\n", f"unterminated string literal near {text[i:i + 40]!r}"
                j += 2 if text[j] == "\\" else 1
            assert j < n, "unterminated string literal"
            out.append('""')
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def assert_balanced(text: str) -> None:
    """Braces, brackets and parentheses pair up outside comments and strings."""
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for lineno, line in enumerate(code_only(text).splitlines(), 1):
        for c in line:
            if c in "([{":
                stack.append((c, lineno))
            elif c in pairs:
                assert stack and stack[-1][0] == pairs[c], f"unbalanced {c!r} at code line {lineno}"
                stack.pop()
    assert not stack, f"unclosed {stack[-1][0]!r} opened at code line {stack[-1][1]}"


def assert_snippet_matches(text: str, manifest: dict, backend: str) -> None:
    """Every tensor of the backend's shipped artifacts is declared, named and shaped as in the
    manifest, and every name, file and constant the code uses comes from the manifest."""
    arts = [a for a in manifest["artifacts"] if a["shipped"] and a["backend"] == backend]
    assert arts
    expected = {(a["file"], kind, t["name"], t["dtype"], tuple(t["shape"]))
                for a in arts for kind in ("input", "output") for t in a[f"{kind}s"]}
    declared = {(f, k, n, d, tuple(s)) for f, k, n, d, s in parse_tensor_lines(text)}
    assert declared == expected
    code = text  # quoted names live in string literals: search the full text, comments stripped
    code = "\n".join(line.split("  //")[0] for line in code.splitlines() if not line.lstrip().startswith("//"))
    names = {t["name"] for a in arts for kind in ("inputs", "outputs") for t in a[kind]}
    used = set(re.findall(r'mapOf\("([^"]+)" to', code))
    used |= set(re.findall(r'featureValue\(for: "([^"]+)"\)', code)) | set(re.findall(r'dictionary: \["([^"]+)"', code))
    used |= set(re.findall(r'run\(\{ "([^"]+)":', code)) | set(re.findall(r'results\["([^"]+)"\]', code))
    if backend in ("litert", "coreml", "onnx"):  # names are how these runtimes bind tensors: all used, none invented
        assert used == names, (used, names)
    files = {a["file"] for a in arts}
    quoted = set(re.findall(r'"(artifacts/[^"]+)"', code))
    stems = set(re.findall(r'compiledModel\("([^"]+)"\)', code))
    assert quoted | {f for f in files if Path(f).stem in stems} == files
    assert quoted <= files and stems <= {Path(f).stem for f in files}
    for a in arts:  # shapes in the code: ExecuTorch/CoreML literals, LiteRT buffer sizes and arrays
        i, o = a["inputs"][0], a["outputs"][0]
        shape = ", ".join(str(d) for d in i["shape"])
        if backend == "executorch":
            assert f"longArrayOf({shape})" in code
        elif backend == "coreml":
            assert f"shape: [{shape}]" in code
        elif backend == "onnx":
            assert f'new ort.Tensor("{i["dtype"]}", ' in code and f"[{shape}])" in code
        else:
            n = 1 if i["dtype"] == "uint8" else 4
            for d in i["shape"]:
                n *= d
            assert f"allocateDirect({n})" in code
            assert f"Array({o['shape'][0]}) {{ FloatArray({o['shape'][-1]}) }}" in code
    p, m, t = manifest["preprocessing"], manifest["model"], manifest["tokenizer"]
    for value in (p["image_size"], m["embed_dim"], t["context_length"], repr(float(m["logit_scale"])),
                  p["resize_mode"], *(repr(float(v)) for v in p["mean"] + p["std"])):
        assert str(value) in code, value
    for f in t["files"] + [t["test_vectors"]]:
        assert f in text
    # the platform's reader of tokenizer.json, never "write your own port"
    reader = {"litert": "HuggingFaceTokenizer.newInstance", "executorch": "HuggingFaceTokenizer.newInstance",
              "coreml": "AutoTokenizer.from(modelFolder:", "onnx": "new Tokenizer("}[backend]
    assert reader in code and not re.search(r"(your|bpe) port", text.lower())
    # normalization (mean/std arithmetic) happens in the app exactly when the graph does not do it
    assert bool(re.search(r"(STD|std)\[c\]", code)) != bool(p.get("in_graph")), "preprocessing does not follow the manifest"
    if manifest.get("labels"):
        lab = manifest["labels"]
        assert f'"{lab["file"]}"' in code and f'"{lab["embeddings_file"]}"' in code
        assert f"[{lab['count']}, {lab['embed_dim']}]" in text
    assert_balanced(text)


def fake_manifest(platform: str, backends: list[str], labels: bool = True, in_graph: bool = False) -> dict:
    """A hand-written manifest with image, text and zero-shot-head artifacts per backend;
    ``in_graph``: image inputs are raw RGB 0..255 NHWC (uint8; int32 on CoreML)."""
    arts = []
    for b in backends:
        ext = {"coreml": ".mlpackage", "litert": ".tflite", "executorch": ".pte", "onnx": ".onnx"}[b]
        px = ("pixels", "float32", [1, 3, 224, 224]) if not in_graph else \
            ("pixels", "int32" if b == "coreml" else "uint8", [1, 224, 224, 3])
        for tower, ins, outs in (("image", px, ("image_embedding", "float32", [1, 512])),
                                 ("text", ("input_ids", "int32", [1, 77]), ("text_embedding", "float32", [1, 512])),
                                 ("zero-shot-head", px, ("logits", "float32", [1, 5]))):
            arts.append({"file": f"artifacts/{b}-{tower}-fp16{ext}", "backend": b, "tower": tower, "quant": "fp16",
                         "shipped": True, "inputs": [dict(zip(("name", "dtype", "shape"), ins))],
                         "outputs": [dict(zip(("name", "dtype", "shape"), outs))]})
    arts.append({**arts[0], "file": "artifacts/not-shipped.x", "shipped": False})
    lab = {"names": ["cat", "dog", "一只鸟", 'say "hi"', "{}"], "count": 5, "templates": list(DEFAULT_TEMPLATES),
           "file": "labels/labels.json", "embeddings_file": "labels/label_embeddings.npy", "embed_dim": 512}
    return {"edgeclip_version": "0.1.0", "model": {"recipe": "r", "uri": "openclip:ViT-B-32", "embed_dim": 512,
                                                   "logit_scale": 100.0},
            "target": {"name": "t", "platform": platform},
            "preprocessing": {"image_size": 224, "mean": [0.48145466, 0.4578275, 0.40821073],
                              "std": [0.26862954, 0.26130258, 0.27577711], "resize_mode": "shortest",
                              "input_layout": "NHWC" if in_graph else "NCHW",
                              "input_dtype": "uint8" if in_graph else "float32", "in_graph": in_graph},
            "tokenizer": {"type": "openclip-bpe", "context_length": 77, "files": ["tokenizer/vocab.json",
                          "tokenizer/merges.txt", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json"],
                          "test_vectors": "tokenizer/test_vectors.json", "pad_id": 0, "eot_id": 49407},
            "labels": lab if labels else None, "artifacts": arts, "bench": {"threads": 4}}


def as_backend(manifest: dict, backend: str, platform: str) -> dict:
    """A copy of a real manifest whose artifacts are relabelled as ``backend``'s (same tensors)."""
    m = copy.deepcopy(manifest)
    m["target"]["platform"] = platform
    for a in m["artifacts"]:
        a["backend"] = backend
        a["file"] = f"artifacts/{backend}-{a['tower']}-{a['quant']}{_EXT[backend]}"
    return m


def assert_tokenizer_json_reproduces_vectors(out: Path, manifest: dict) -> None:
    """The bundle's tokenizer.json is the Hugging Face file: the ``tokenizers`` library reads it
    and, with the padding/truncation it carries, gives every test vector's ids."""
    from tokenizers import Tokenizer

    t = manifest["tokenizer"]
    assert "tokenizer/tokenizer.json" in t["files"]
    tok = Tokenizer.from_file(str(out / "tokenizer/tokenizer.json"))
    vectors = json.loads((out / t["test_vectors"]).read_text(encoding="utf-8"))
    assert len(vectors) >= 10 and any(len(v["text"]) > 2 * t["context_length"] for v in vectors)
    got = [e.ids for e in tok.encode_batch([v["text"] for v in vectors])]
    for v, ids in zip(vectors, got):
        assert ids == v["ids"], v["text"]


JS_PACKAGES = Path(__file__).parent / "js" / "node_modules"  # `cd tests/js && npm ci --ignore-scripts`
_JS_DRIVER = """
import fs from "node:fs";
// the page's fetch, for bundle files on disk: Node's fetch has no file: URLs
globalThis.fetch = async (p) => ({ json: async () => JSON.parse(fs.readFileSync(p, "utf8")) });
const [snippet, bundle, inputFile] = process.argv.slice(2);
const input = JSON.parse(fs.readFileSync(inputFile, "utf8"));
const { EdgeClipOnnx } = await import(snippet);
const m = await EdgeClipOnnx.create(bundle + "/");
const ids = input.vectors.map((t) => Array.from(m.tokenize(t)));
const emb = [];
for (const t of input.texts) emb.push(Array.from(await m.embedText(t)));
console.log(JSON.stringify({ ids, emb }));
"""


def run_web_snippet(bundle: Path, tmp: Path, texts: list[str]) -> dict:
    """Run the bundle's snippets/EdgeClip.js under Node with the real npm packages it imports
    (onnxruntime-web, @huggingface/tokenizers): ``{"ids": ids of every test vector's text,
    "emb": text embeddings of texts}``. Skips where Node or the packages are not installed."""
    import shutil
    import subprocess

    import pytest

    node = shutil.which("node")
    if node is None or not JS_PACKAGES.is_dir():
        pytest.skip("needs node and tests/js/node_modules (cd tests/js && npm ci --ignore-scripts)")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "node_modules").symlink_to(JS_PACKAGES, target_is_directory=True)
    (tmp / "EdgeClip.mjs").write_text((bundle / "snippets" / "EdgeClip.js").read_text())
    (tmp / "driver.mjs").write_text(_JS_DRIVER)
    vectors = json.loads((bundle / "tokenizer" / "test_vectors.json").read_text(encoding="utf-8"))
    (tmp / "input.json").write_text(json.dumps({"vectors": [v["text"] for v in vectors], "texts": texts}))
    r = subprocess.run([node, str(tmp / "driver.mjs"), str(tmp / "EdgeClip.mjs"), str(bundle), str(tmp / "input.json")],
                       capture_output=True, text=True, cwd=tmp, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["want_ids"] = [v["ids"] for v in vectors]
    return out
