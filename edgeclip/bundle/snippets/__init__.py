"""App usage snippets generated into each bundle (``snippets/``), from its manifest only.

- ``CoreML.swift``: a bundle with shipped CoreML artifacts (iOS/macOS targets).
- ``LiteRT.kt`` / ``ExecuTorch.kt``: an Android bundle with shipped LiteRT / ExecuTorch artifacts.
- ``EdgeClip.js``: a web bundle with shipped ONNX artifacts (onnxruntime-web).

Tokenizers come from the platform's reader of the bundle's Hugging Face ``tokenizer.json``:
DJL's tokenizers on Android, swift-transformers on iOS, transformers.js on the web; each snippet
frames the ids (pad, truncate keeping end-of-text) itself, so a reader's padding defaults do not matter.

Each snippet loads the bundle's shipped artifacts by file name, feeds and reads them by the exact
input/output names, shapes and dtypes of the manifest, spells out the preprocessing (resize mode,
size, mean/std, NCHW float32, or with in-graph preprocessing the raw NHWC pixels), loads the
tokenizer (files, test vectors, context length) and
ranks the bundle's label set with its stored label embeddings and logit scale. Every tensor a
snippet uses is also listed in a ``// tensor FILE input|output NAME DTYPE [SHAPE]`` header line,
which tests (and readers) compare with the manifest. Templates fill ``@@NAME@@`` placeholders, so
Swift/Kotlin braces stay literal.
"""
from __future__ import annotations

from pathlib import Path

from ..._io import write_text_atomic
from ._js import onnx_web_js
from ._kotlin import executorch_kt, litert_kt
from ._swift import coreml_swift
from ._text import by_tower, fill, header, parse_tensor_lines, shape_text, tensor_lines

__all__ = ["write_snippets", "render_snippets", "tensor_lines", "parse_tensor_lines", "fill", "by_tower",
           "header", "shape_text"]


def render_snippets(manifest: dict) -> dict[str, tuple[str, str, list[dict], str]]:
    """``{file name: (language, backend, artifacts used, text)}`` for the snippets this bundle gets."""
    out: dict[str, tuple[str, str, list[dict], str]] = {}
    platform = manifest["target"]["platform"]
    coreml = by_tower(manifest, "coreml")
    if coreml:
        out["CoreML.swift"] = ("swift", "coreml", list(coreml.values()), coreml_swift(manifest, coreml))
    if platform == "web":
        onnx = by_tower(manifest, "onnx")
        if onnx:
            out["EdgeClip.js"] = ("javascript", "onnx", list(onnx.values()), onnx_web_js(manifest, onnx))
    if platform == "android":
        lite = by_tower(manifest, "litert")
        if lite:
            out["LiteRT.kt"] = ("kotlin", "litert", list(lite.values()), litert_kt(manifest, lite))
        et = by_tower(manifest, "executorch")
        if et:
            out["ExecuTorch.kt"] = ("kotlin", "executorch", list(et.values()), executorch_kt(manifest, et))
    return out


def write_snippets(bundle_dir: Path, manifest: dict) -> list[dict]:
    """Write ``snippets/`` (removing stale ones); returns the manifest's ``snippets`` entries."""
    import shutil
    folder = Path(bundle_dir) / "snippets"
    rendered = render_snippets(manifest)
    if folder.exists():
        shutil.rmtree(folder)
    if not rendered:
        return []
    folder.mkdir(parents=True)
    entries = []
    for name, (language, backend, arts, text) in rendered.items():
        write_text_atomic(folder / name, text)
        entries.append({"file": f"snippets/{name}", "language": language, "backend": backend,
                        "artifacts": [a["file"] for a in arts]})
    return entries
