"""Helpers shared by the MIL interpreter tests (imported as a plain module, not a fixture)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["cosine", "copy_package", "weight_file", "Overflow"]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine in float64 (nan rows stay nan, so they fail every threshold)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def copy_package(src: Path, dst_dir: Path) -> Path:
    dst = Path(dst_dir) / Path(src).name
    shutil.copytree(src, dst)
    return dst


def weight_file(pkg: Path) -> Path:
    return Path(pkg) / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"


class Overflow(nn.Module):
    """Finite in fp32, overflows fp16 in the middle: squares activations of size ~300 (> 65504)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x) * 300.0
        return torch.nn.functional.normalize(h * h + 1.0, dim=-1)
