"""Checks shared by the bundle tests: snippet vs manifest agreement, a cheap syntax sanity check."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

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
    if backend in ("litert", "coreml"):  # names are how these runtimes bind tensors: all used, none invented
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
        else:
            n = 4
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
    if manifest.get("labels"):
        lab = manifest["labels"]
        assert f'"{lab["file"]}"' in code and f'"{lab["embeddings_file"]}"' in code
        assert f"[{lab['count']}, {lab['embed_dim']}]" in text
    assert_balanced(text)


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
