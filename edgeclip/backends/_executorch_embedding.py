"""int8 token tables for ExecuTorch: XNNPACKQuantizer never quantizes ``nn.Embedding``, so a text
tower's vocabulary table (49408 x width for the CLIP BPE) stayed fp32 and dominated its int8
artifact. Each table becomes int8 rows with one float scale per row (symmetric), looked up by
``quantized_decomposed::embedding_byte``: an op of ExecuTorch's quantized kernels, which the Python
runtime here and the Android AAR both ship (it reads int64 ids, so int32 ids are widened first).
"""
from __future__ import annotations

import copy

from ._common import pinned_by_overrides

__all__ = ["Int8Embedding", "quantize_embeddings", "load_quantized_kernels"]


def load_quantized_kernels() -> None:
    """Register ExecuTorch's quantized kernels (embedding_byte among them) with this process's
    runtime; the Android AAR links them in already."""
    import importlib

    importlib.import_module("executorch.kernels.quantized")


def _define_ops() -> None:
    """Define quantized_decomposed::embedding_byte (and its out variant) for torch.export."""
    import importlib

    importlib.import_module("executorch.exir.passes._quant_patterns_and_replacements")


def Int8Embedding(emb):
    """An ``nn.Embedding`` replaced by int8 rows + a per-row scale (a module, built lazily so this
    file imports without torch)."""
    import torch
    from torch import nn

    class _Int8Embedding(nn.Module):
        def __init__(self, weight: torch.Tensor):
            super().__init__()
            w = weight.detach().float()
            scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
            self.register_buffer("qweight", torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8))
            self.register_buffer("scales", scale)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return torch.ops.quantized_decomposed.embedding_byte.default(
                self.qweight, self.scales, None, -127, 127, ids.to(torch.long))

    _define_ops()
    return _Int8Embedding(emb.weight)


def quantize_embeddings(tower, method, notes: list[str]):
    """A copy of ``tower`` with every ``nn.Embedding`` that overrides do not keep in float
    replaced by ``Int8Embedding``; ``tower`` itself when it has none."""
    from torch import nn

    names = [n for n, m in tower.named_modules() if isinstance(m, nn.Embedding)
             and not pinned_by_overrides(method, "embedding", n)]
    if not names:
        return tower
    tower = copy.deepcopy(tower)
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = tower.get_submodule(parent_name) if parent_name else tower
        setattr(parent, attr, Int8Embedding(getattr(parent, attr)))
    notes.append(f"int8 token table(s) (per-row scale, quantized_decomposed::embedding_byte): {', '.join(names)}")
    return tower
