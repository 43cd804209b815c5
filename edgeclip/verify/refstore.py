"""Stored reference bundles: made once by ``edgeclip reference`` (on a GPU machine when there is
one), reused by ``edgeclip build --reference DIR`` (e.g. on CPU-only CI), and copied into every
bundle so ``edgeclip verify BUNDLE`` can re-run the checks later.

A stored reference is only used for the model it was made for: its ``model_hash`` (the
teacher/distill stage key), the eval set and seed (``eval_key``) and the sha256 of the model
weights must all match the build's, or the build stops with a one-line error saying how to
remake it. Nothing falls back silently to a freshly computed reference.
"""
from __future__ import annotations

import json
from pathlib import Path

from .._io import copy_atomic, sha256_path, stable_hash
from ..errors import InputError

__all__ = ["REFERENCE_FILES", "resolve_device", "eval_key", "weights_sha256", "export_reference",
           "read_info", "check_stored", "stored_key", "copy_into_bundle", "provenance", "provenance_md"]

REFERENCE_FILES = ("reference.npz", "reference.json")
_EXPORTED = ("reference.npz", "groups.json", "reference.json")  # reference.json last: it marks "whole"


def resolve_device(device: str | None) -> str | None:
    """``auto``/None -> None (cuda when present, else cpu, decided when it runs); ``cuda`` must exist."""
    if device in (None, "auto"):
        return None
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device {device!r}: choose auto, cpu or cuda")
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device here (torch.cuda.is_available() is False); "
                             "run on a GPU machine or pass --device cpu")
    return device


def eval_key(eval_sources, seed: int) -> str:
    """What a reference was computed on: the recipe's eval sources and seed."""
    return stable_hash("eval", eval_sources, seed)


def weights_sha256(model_dir: Path) -> str:
    return sha256_path(Path(model_dir) / "model.safetensors")


def export_reference(stage_dir: Path, out_dir: Path) -> list[Path]:
    """Copy a reference stage's files to ``out_dir`` (each through a temporary name)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in _EXPORTED:
        if (Path(stage_dir) / name).exists():
            copy_atomic(Path(stage_dir) / name, out_dir / name)
            written.append(out_dir / name)
    return written


def read_info(ref_dir: Path) -> dict:
    """reference.json of a stored reference; a one-line error when the folder is not one."""
    ref_dir = Path(ref_dir)
    missing = [n for n in REFERENCE_FILES if not (ref_dir / n).is_file()]
    if missing:
        raise InputError(f"--reference {ref_dir}: no {' or '.join(missing)} there; make one with "
                         f"`edgeclip reference --recipe R --out {ref_dir}`")
    try:
        info = json.loads((ref_dir / "reference.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"--reference {ref_dir}: reference.json is unreadable ({e}); remake it with "
                         "`edgeclip reference`") from e
    need = ("model_hash", "eval_key", "weights_sha256", "device")
    if not isinstance(info, dict) or any(k not in info for k in need):
        raise InputError(f"--reference {ref_dir}: reference.json lacks {', '.join(need)} (made by an older "
                         f"edgeclip); remake it with `edgeclip reference --out {ref_dir}`")
    return info


def _remake(recipe, ref_dir: Path) -> str:
    return f"`edgeclip reference --recipe {recipe.source or recipe.name} --out {ref_dir}`"


def check_stored(ref_dir: Path, recipe, model_key: str, ekey: str, weights: str, torch_version: str) -> dict:
    """The stored reference's info if it was made for exactly this model and eval set."""
    ref_dir = Path(ref_dir)
    info = read_info(ref_dir)
    made_for = (f"recipe {info.get('recipe', '?')!r} (teacher {info.get('teacher', '?')}, "
                f"model key {info['model_hash']})")
    if info["model_hash"] != model_key:
        there, here = str(info.get("torch", "")).split("+")[0], str(torch_version).split("+")[0]
        torch_note = (f"; torch differs too ({there} there, {here} here), and the key covers it"
                      if there and there != here else "")
        raise InputError(f"--reference {ref_dir} was made for {made_for}, but this build compiles recipe "
                         f"{recipe.name!r} (model key {model_key}){torch_note}; remake it with "
                         f"{_remake(recipe, ref_dir)} or drop --reference")
    if info["eval_key"] != ekey:
        raise InputError(f"--reference {ref_dir} was made for {made_for} on another evaluation set or seed "
                         f"than recipe {recipe.name!r} uses now; remake it with {_remake(recipe, ref_dir)}")
    if info["weights_sha256"] != weights:
        raise InputError(f"--reference {ref_dir} was made for {made_for}, but this machine's model weights "
                         f"differ (sha256 {info['weights_sha256'][:12]}... there, {weights[:12]}... here: the "
                         "model was trained separately on each machine); copy the teacher/distill stage folders "
                         "(build/<recipe>/.cache) from the machine that made the reference, or remake it here "
                         f"with {_remake(recipe, ref_dir)}")
    return info


def stored_key(ref_dir: Path) -> str:
    """Cache key of a stored reference: its content, so verify stages rerun when it changes."""
    return stable_hash("reference-stored", *(sha256_path(Path(ref_dir) / n) for n in REFERENCE_FILES))


def copy_into_bundle(ref_dir: Path, dst: Path) -> list[str]:
    """Copy reference.npz + reference.json into the bundle's ``reference/`` folder."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in REFERENCE_FILES:
        copy_atomic(Path(ref_dir) / name, dst / name)
    return [f"{dst.name}/{n}" for n in REFERENCE_FILES]


def provenance(ref_dir: Path, source: str, stored_path: Path | None = None) -> dict:
    """Where a build's reference came from, for the manifest and report.json."""
    info = json.loads((Path(ref_dir) / "reference.json").read_text())
    return {"source": source, "stored_path": str(stored_path) if stored_path else None,
            "device": info.get("device"), "device_name": info.get("device_name"), "torch": info.get("torch"),
            "recipe": info.get("recipe"), "model_hash": info.get("model_hash"),
            "weights_sha256": info.get("weights_sha256"), "counts": info.get("counts", {})}


def provenance_md(p: dict) -> str:
    where = f"stored reference from {p['stored_path']}" if p["source"] == "stored" else "computed in this build"
    return (f"Reference: fp32 torch {p.get('torch')} on {p.get('device')} ({p.get('device_name')}), {where}; "
            f"model key {p.get('model_hash')}.")
