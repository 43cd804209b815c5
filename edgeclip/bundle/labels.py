"""A bundle's label set: read and checked at plan time, embedded once at bundle time.

``edgeclip build --labels labels.txt`` (one label per line, UTF-8), or the recipe's
``export.labels`` / ``export.labels_file``, gives the labels; ``export.templates`` the prompt
templates (default: ``DEFAULT_TEMPLATES``). Every problem — an unreadable file, an empty or
duplicate label, a template without ``{}`` — is one ``InputError`` raised before any work
starts. In the bundle: ``labels/labels.json`` (labels, templates) and
``labels/label_embeddings.npy`` (``float32[K, D]``: per label, the L2-normalized mean of its
prompts' fp32 text embeddings, CLIP's prompt ensembling as in ``distill.evaluate``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_file, write_text_atomic
from ..errors import InputError

__all__ = ["DEFAULT_TEMPLATES", "LabelSet", "read_labels_file", "check_labels", "check_templates",
           "resolve_labels", "embed_labels", "write_labels", "bundle_labels", "load_bundle_labels", "write_head",
           "read_head", "LABELS_JSON", "LABELS_NPY"]

DEFAULT_TEMPLATES = ("a photo of a {}.", "a rendering of a {}.", "a drawing of a {}.")
LABELS_JSON = "labels/labels.json"
LABELS_NPY = "labels/label_embeddings.npy"
LABELS_SCHEMA = "edgeclip.labels/1"
HEAD_FILES = ("label_embeddings.npy", "head.json")  # beside a zero-shot-head export: what verify compares with


@dataclass(frozen=True)
class LabelSet:
    labels: tuple[str, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    source: str = ""            # where the labels came from (a file path, or "recipe export.labels")

    def prompts(self) -> list[list[str]]:
        """Per label, every template filled in (their embeddings are averaged)."""
        return [[t.format(lbl) for t in self.templates] for lbl in self.labels]


def check_labels(labels, where: str) -> tuple[str, ...]:
    """Strip each label; an empty one or a repeated one is an InputError naming it."""
    out, seen = [], {}
    for i, raw in enumerate(labels, 1):
        if not isinstance(raw, str):
            raise InputError(f"{where}: label {i} is {raw!r}, not text; write one label per line")
        lbl = raw.strip()
        if not lbl:
            raise InputError(f"{where}: label {i} is empty; remove the blank line or write a label on it")
        if lbl in seen:
            raise InputError(f"{where}: label {lbl!r} appears twice (labels {seen[lbl]} and {i}); "
                             "each label must be unique")
        seen[lbl] = i
        out.append(lbl)
    if not out:
        raise InputError(f"{where}: no labels; write one label per line (UTF-8)")
    return tuple(out)


def read_labels_file(path: str | os.PathLike) -> tuple[str, ...]:
    """One label per line, UTF-8 (a BOM and trailing blank lines are allowed)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"labels file {str(p)!r} does not exist; pass a text file with one label per line") from None
    except IsADirectoryError:
        raise InputError(f"labels file {str(p)!r} is a folder; pass a text file with one label per line") from None
    except UnicodeDecodeError as e:
        raise InputError(f"labels file {str(p)!r} is not UTF-8 (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise InputError(f"labels file {str(p)!r} cannot be read ({e.strerror}); check its permissions") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return check_labels(lines, f"labels file {str(p)!r}")


def check_templates(templates, where: str) -> tuple[str, ...]:
    out = tuple(templates)
    if not out:
        raise InputError(f"{where}: no prompt templates; give at least one, e.g. 'a photo of a {{}}.'")
    for t in out:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise InputError(f"{where}: template {t!r} must contain '{{}}' exactly once (where the label goes)")
        try:
            t.format("x")
        except (IndexError, KeyError, ValueError):
            raise InputError(f"{where}: template {t!r} has braces other than one '{{}}'; "
                             "double them ('{{{{', '}}}}') to write literal braces") from None
    if len(set(out)) != len(out):
        raise InputError(f"{where}: a prompt template is repeated; list each once")
    return out


def resolve_labels(export, labels_file: str | os.PathLike | None = None) -> LabelSet | None:
    """The build's label set: ``--labels FILE`` wins over the recipe's ``export`` section."""
    templates = check_templates(export.templates or DEFAULT_TEMPLATES, "recipe export.templates")
    if labels_file is not None:
        return LabelSet(read_labels_file(labels_file), templates, str(labels_file))
    if export.labels and export.labels_file:
        raise InputError("recipe export: set labels or labels_file, not both")
    if export.labels_file:
        return LabelSet(read_labels_file(export.labels_file), templates, str(export.labels_file))
    if export.labels:
        return LabelSet(check_labels(export.labels, "recipe export.labels"), templates, "recipe export.labels")
    return None


def embed_labels(model, ls: LabelSet) -> np.ndarray:
    """``float32[K, D]`` normalized, template-averaged fp32 text embeddings of ``model``."""
    return np.ascontiguousarray(model.label_embeddings(ls.labels, ls.templates).cpu().numpy().astype(np.float32))


def write_labels(bundle_dir: Path, ls: LabelSet, emb: np.ndarray) -> dict:
    """Write ``labels/`` into the bundle; returns the manifest's ``labels`` block."""
    folder = Path(bundle_dir) / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    doc = {"schema": LABELS_SCHEMA, "labels": list(ls.labels), "templates": list(ls.templates),
           "embeddings": {"file": Path(LABELS_NPY).name, "dtype": "float32", "shape": list(emb.shape),
                          "normalized": True, "how": "per label: mean over templates of the fp32 text "
                          "tower's L2-normalized embeddings, L2-normalized again"}}
    write_text_atomic(folder / Path(LABELS_JSON).name, json.dumps(doc, ensure_ascii=False, indent=1))
    with atomic_file(folder / Path(LABELS_NPY).name) as f:
        np.save(f, emb, allow_pickle=False)
    return {"names": list(ls.labels), "count": len(ls.labels), "templates": list(ls.templates),
            "file": LABELS_JSON, "embeddings_file": LABELS_NPY, "embed_dim": int(emb.shape[1]),
            "dtype": "float32", "source": ls.source}


def load_bundle_labels(bundle_dir: Path, manifest: dict) -> tuple[list[str], list[str], np.ndarray]:
    """(labels, templates, float32[K, D]) of a bundle built with labels; InputError otherwise."""
    block = manifest.get("labels")
    if not block:
        raise InputError(f"{bundle_dir}: the bundle has no label set; give --labels 'a cat,a dog' or --text ..., "
                         "or rebuild it with `edgeclip build ... --labels labels.txt`")
    emb = np.load(Path(bundle_dir) / block["embeddings_file"], allow_pickle=False)
    if emb.dtype != np.float32 or emb.shape != (block["count"], block["embed_dim"]):
        raise InputError(f"{bundle_dir}: {block['embeddings_file']} is {emb.dtype} {list(emb.shape)}, the manifest "
                         f"says float32 [{block['count']}, {block['embed_dim']}]; rebuild the bundle")
    return list(block["names"]), list(block["templates"]), emb


def bundle_labels(bundle_dir: Path, ls: LabelSet | None, model) -> dict | None:
    """``labels/`` from ``model`` (the fp32 model) and the manifest block; without a label set,
    a ``labels/`` left by an earlier build into the same folder is removed."""
    if ls is None:
        import shutil
        shutil.rmtree(Path(bundle_dir) / "labels", ignore_errors=True)
        return None
    return write_labels(bundle_dir, ls, embed_labels(model, ls))


def write_head(folder: Path, head, ls: LabelSet) -> None:
    """A fp32 ``ZeroShotHead``'s label matrix and logit scale, beside its export."""
    np.save(Path(folder) / HEAD_FILES[0], head.label_embeddings.detach().cpu().numpy().astype(np.float32))
    (Path(folder) / HEAD_FILES[1]).write_text(json.dumps({"labels": list(ls.labels), "templates": list(ls.templates),
                                                          "logit_scale": head.logit_scale}, ensure_ascii=False))


def read_head(folder: Path) -> tuple[np.ndarray, float]:
    """``(label_embeddings[K, D], logit_scale)`` written by ``write_head``."""
    info = json.loads((Path(folder) / HEAD_FILES[1]).read_text())
    return np.load(Path(folder) / HEAD_FILES[0], allow_pickle=False), float(info["logit_scale"])
