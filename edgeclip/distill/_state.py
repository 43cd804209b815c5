"""Training-state checkpoints: everything needed to continue bit-identically, tensors only.

``state.pt`` is written to a temporary file, fsynced and renamed, so a crash mid-save leaves the
previous checkpoint intact. It is read back with ``torch.load(weights_only=True)``: RNG states
are stored as tensors and plain tuples so no unpickling of arbitrary objects is ever needed.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_file
from ..errors import InputError

__all__ = ["STATE_FORMAT", "rng_state", "set_rng_state", "save_state", "load_state"]

STATE_FORMAT = "edgeclip.trainstate/1"


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` (format tag added) to ``path``."""
    p = Path(path)
    with atomic_file(p, fsync=True) as f:
        torch.save({"format": STATE_FORMAT, **state}, f)
    return p


def load_state(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"{p}: cannot read training state ({type(e).__name__}: {str(e)[:160]}); "
                         "delete it to start training afresh") from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise InputError(f"{p}: not an edgeclip training state (format {STATE_FORMAT}); "
                         "delete it to start training afresh")
    return state
