"""App-ready bundles: manifest.json (validated by a JSON Schema), sha256 of every file.

A bundle folder holds the shipped artifacts, tokenizer files and test vectors, the label set,
the reports and ``manifest.json``. This module writes the manifest *and* reads it: each artifact's
entry is built by ``artifact_entry`` beside its reader ``artifact_from_entry``. ``load_manifest``
checks the schema and every file's sha256, so a tampered or truncated file is refused before an
app or ``edgeclip predict`` uses it.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from .._io import sha256_path, write_json_atomic
from ..errors import InputError

__all__ = ["MANIFEST_SCHEMA", "manifest_schema", "file_hashes", "write_manifest", "load_manifest",
           "validate_manifest", "artifact_entry", "artifact_from_entry", "remove_stale", "tokenizer_readers",
           "tokenizer_caveats"]

MANIFEST_SCHEMA = "edgeclip.manifest/1"

# libraries that read tokenizer/tokenizer.json (the Hugging Face tokenizers file) per platform;
# the tests run the Python `tokenizers` reader and Tokenizers.js (under Node); DJL and
# swift-transformers read the same format but no JVM/Swift runtime for them runs here
_TOKENIZER_READERS = {
    "android": ["ai.djl.huggingface:tokenizers (HuggingFaceTokenizer.newInstance(path))"],
    "ios": ["swift-transformers Tokenizers (AutoTokenizer.from(modelFolder:))"],
    "macos": ["swift-transformers Tokenizers (AutoTokenizer.from(modelFolder:))"],
    "web": ["@huggingface/tokenizers (Tokenizers.js, the tokenizer of transformers.js: new Tokenizer(json, "
            "config); tested under Node)"],
    "linux": ["tokenizers (Rust crate: Tokenizer::from_file)"],
}
_PYTHON_READER = "tokenizers (Python: tokenizers.Tokenizer.from_file; tested)"


def tokenizer_readers(platform: str) -> list[str]:
    """Which libraries read the bundle's tokenizer.json on ``platform`` (Python's always does)."""
    return _TOKENIZER_READERS.get(platform, []) + [_PYTHON_READER]


def _normalizer_types(node) -> set[str]:
    if not isinstance(node, dict):
        return set()
    return {node.get("type", "")} | {t for n in node.get("normalizers") or [] for t in _normalizer_types(n)}


def tokenizer_caveats(tokenizer_json: dict, platform: str) -> list[str]:
    """Where a platform's reader is known to tokenize this tokenizer.json differently from the
    reference (checked against the library's source and, for Tokenizers.js, under Node)."""
    out = []
    if platform == "web" and "Precompiled" in _normalizer_types(tokenizer_json.get("normalizer")):
        out.append("Tokenizers.js approximates sentencepiece's Precompiled normalizer (control characters "
                   "removed, U+2000-U+200F and other spaces mapped to a space, then NFKC) instead of applying "
                   "its charsmap: the zero-width characters U+200B-U+200F (e.g. the joiner inside emoji "
                   "sequences) become word breaks there, so ids differ from the reference on text that "
                   "contains them; the bundle's test vectors include such a text")
    return out


def manifest_schema() -> dict:
    text = resources.files("edgeclip.bundle").joinpath("manifest.schema.json").read_text()
    return json.loads(text)


def validate_manifest(manifest: dict, where: str = "manifest.json") -> None:
    import jsonschema
    try:
        jsonschema.validate(manifest, manifest_schema())
    except jsonschema.ValidationError as e:
        path = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise InputError(f"{where}: invalid manifest at {path}: {e.message}") from e


def file_hashes(bundle_dir: Path) -> dict[str, str]:
    """sha256 of every regular file in the bundle except the manifest and lock/log files."""
    bundle_dir = Path(bundle_dir)
    skip = {"manifest.json", ".edgeclip.lock", "stage-log.jsonl"}
    out = {}
    for p in sorted(bundle_dir.rglob("*")):
        rel = p.relative_to(bundle_dir)
        if p.is_file() and rel.parts[0] not in (".cache",) and rel.name not in skip \
                and not rel.name.startswith(".tmp"):
            out[str(rel)] = sha256_path(p)
    return out


def write_manifest(bundle_dir: Path, manifest: dict[str, Any]) -> dict:
    """Fill in ``files`` and each artifact's sha256, validate, write atomically."""
    bundle_dir = Path(bundle_dir)
    manifest = dict(manifest)
    manifest["schema"] = MANIFEST_SCHEMA
    for a in manifest.get("artifacts", []):
        a["sha256"] = sha256_path(bundle_dir / a["file"])
    manifest["files"] = file_hashes(bundle_dir)
    validate_manifest(manifest, str(bundle_dir / "manifest.json"))
    write_json_atomic(bundle_dir / "manifest.json", manifest)
    return manifest


def load_manifest(bundle_dir: Path, check_files: bool = True, where: str | None = None) -> dict:
    """The validated manifest; ``check_files``: every listed file must exist and match its sha256.
    ``where`` names the bundle in errors (the .zip a folder was extracted from)."""
    bundle_dir = Path(bundle_dir)
    where = where or str(bundle_dir)
    mpath = bundle_dir / "manifest.json"
    if not mpath.is_file():
        raise InputError(f"{where}: no manifest.json; pass a bundle folder (or its .zip) written by `edgeclip build`")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{where}: manifest.json is not valid JSON ({e}); rebuild the bundle") from e
    validate_manifest(manifest, f"{where}: manifest.json")
    if check_files:
        root = bundle_dir.resolve()
        for rel, digest in manifest["files"].items():
            p = (bundle_dir / rel).resolve()
            if root not in p.parents:
                raise InputError(f"{where}: manifest.json file entry {rel!r} points outside the bundle; refusing it")
            if not p.is_file():
                raise InputError(f"{where}: {rel} is missing; the bundle is incomplete, rebuild it")
            if sha256_path(p) != digest:
                raise InputError(f"{where}: {rel} does not match its sha256 in manifest.json "
                                 "(modified or corrupted); rebuild or re-download the bundle")
    return manifest


def _tensors(art: dict, kind: str) -> list[dict]:
    return [{"name": n, "shape": list(s), "dtype": d} for n, s, d in
            zip(art[f"{kind}_names"], art[f"{kind}_shapes"], art[f"{kind}_dtypes"])]


def artifact_entry(art: dict, *, file: str, shipped: bool, why_not_shipped: str | None, runtime: str | None,
                   metrics: dict, thresholds: dict, devices: dict | None = None) -> dict:
    """The manifest's ``artifacts[]`` entry of one exported artifact (``Artifact.to_dict()``):
    file, tensors, size, delegation, the metrics it was verified with and its thresholds, and per
    emulated ARM core (``devices``: the twin stage's results) its runtime, ARM accuracy and
    instructions per inference."""
    return {"file": file, "backend": art["backend"], "format": Path(art["path"]).suffix, "tower": art["tower"],
            "quant": art["quant"], "inputs": _tensors(art, "input"), "outputs": _tensors(art, "output"),
            "size_bytes": art["size_bytes"], "shipped": shipped, "why_not_shipped": why_not_shipped,
            "runtime": runtime, "metrics": metrics, "delegated_fraction": art.get("delegated_fraction"),
            "compute_delegated_fraction": art.get("extra", {}).get("compute_delegated_fraction"),
            "not_delegated": art.get("not_delegated", []), "notes": art.get("notes", []),
            "thresholds": thresholds,
            "float_layers": art.get("extra", {}).get("float_layers", []),
            "layer_quant": art.get("extra", {}).get("layer_quant", {}),
            "in_graph_preprocess": bool(art.get("extra", {}).get("in_graph_preprocess")),
            "devices": {name: {"runner": d["runner"], "runtime": d["runtime"],
                               "instructions_per_inference": d["instructions"],
                               "metrics": {k: v for k, v in d["metrics"].items() if isinstance(v, (int, float))}}
                        for name, d in (devices or {}).items()}}


def artifact_from_entry(bundle_dir: Path, a: dict):
    """The ``Artifact`` a manifest entry describes, its path inside ``bundle_dir``."""
    from ..backends.base import Artifact
    return Artifact(path=Path(bundle_dir) / a["file"], backend=a["backend"], tower=a["tower"],
                    quant=a["quant"], input_names=[t["name"] for t in a["inputs"]],
                    output_names=[t["name"] for t in a["outputs"]],
                    input_shapes=[t["shape"] for t in a["inputs"]],
                    input_dtypes=[t["dtype"] for t in a["inputs"]],
                    output_shapes=[t["shape"] for t in a["outputs"]],
                    output_dtypes=[t["dtype"] for t in a["outputs"]],
                    extra={"in_graph_preprocess": bool(a.get("in_graph_preprocess"))})


def remove_stale(folder: Path, keep: set[str]) -> None:
    """Delete what ``folder`` holds besides ``keep`` (names): an earlier build's leftovers must not
    be hashed into, or zipped with, this build's bundle."""
    import shutil
    for p in Path(folder).iterdir():
        if p.name not in keep:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
