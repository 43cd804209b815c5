"""Per-layer precision overrides, resolved global -> op type -> op name (most specific wins).

This is how a sensitive layer (``ln_final``, attention softmax) stays in fp32 while the rest
of a tower is quantized. Op names are dotted torch module paths (``blocks.0.in_proj``) or globs
over them (``blocks.*.mlp``); a pattern matches whole path components, so ``proj`` finds
``proj`` and ``text.proj`` but not ``blocks.0.in_proj``, and ``blocks.0.mlp`` also covers its
children (``blocks.0.mlp.0``). Each backend maps its own op/tensor names back to module paths.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ConfigError
from ..config.names import QUANT_MODES

__all__ = ["OP_TYPES", "Overrides"]

# Canonical op types an override may name; backends map them to their own vocabulary.
OP_TYPES = (
    "linear", "conv", "matmul", "embedding", "layer_norm", "batch_norm",
    "softmax", "gelu", "add", "mul", "mean", "normalize",
)


def _check_mode(where: str, key: str, mode: Any) -> str:
    if mode not in QUANT_MODES:
        raise ConfigError(
            f"quantization override {where}[{key!r}] = {mode!r} is not a quantization mode; "
            f"allowed: {', '.join(QUANT_MODES)}"
        )
    return mode


@dataclass(frozen=True)
class Overrides:
    """``op_type``/``op_name`` -> quantization mode (usually ``"fp32"`` = leave in float)."""

    op_type: tuple[tuple[str, str], ...] = ()
    op_name: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        for t, mode in self.op_type:
            if t not in OP_TYPES:
                raise ConfigError(
                    f"quantization override op_type {t!r} is unknown; allowed: {', '.join(OP_TYPES)}"
                )
            _check_mode("op_type", t, mode)
        for n, mode in self.op_name:
            if not isinstance(n, str) or not n.strip():
                raise ConfigError(f"quantization override op_name {n!r} must be a non-empty string")
            _check_mode("op_name", n, mode)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Overrides":
        """``{"op_type": {"softmax": "fp32"}, "op_name": {"ln_final": "fp32"}}``."""
        if not d:
            return cls()
        unknown = set(d) - {"op_type", "op_name"}
        if unknown:
            raise ConfigError(
                f"unknown quantization override key(s) {sorted(unknown)}; allowed: op_type, op_name"
            )
        return cls(
            op_type=tuple(sorted((d.get("op_type") or {}).items())),
            op_name=tuple(sorted((d.get("op_name") or {}).items())),
        )

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"op_type": dict(self.op_type), "op_name": dict(self.op_name)}

    def __bool__(self) -> bool:
        return bool(self.op_type or self.op_name)

    @staticmethod
    def name_matches(pattern: str, name: str) -> bool:
        """Glob ``pattern`` against dotted module path ``name``, on whole components."""
        rx = fnmatch.translate(pattern)[4:-3]  # strip fnmatch's (?s: ... )\Z wrapper
        return re.search(rf"(?:^|\.){rx}(?:\.|$)", name) is not None

    def resolve(self, global_mode: str, op_type: str | None = None, op_name: str | None = None) -> str:
        """The mode for one op: op name beats op type beats the global mode."""
        mode = global_mode
        if op_type is not None:
            mode = dict(self.op_type).get(op_type, mode)
        if op_name is not None:
            for pat, m in self.op_name:
                if self.name_matches(pat, op_name):
                    mode = m
        return mode

    def float_types(self) -> set[str]:
        """Op types pinned to a float mode (fp32/fp16)."""
        return {t for t, m in self.op_type if m in ("fp32", "fp16")}

    def float_names(self) -> list[str]:
        """Op-name patterns pinned to a float mode (fp32/fp16)."""
        return [n for n, m in self.op_name if m in ("fp32", "fp16")]
