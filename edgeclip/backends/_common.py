"""Shared plumbing for backends: quant checks, contiguous inputs, atomic writes, errors.

Imports only numpy and the standard library at module level; torch is imported where used so
that ``import edgeclip.backends`` stays cheap.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .._io import atomic_target
from ..errors import ConfigError, ExportError, ToolchainMissing
from ..quantize import QuantMethod, canonical, check_calibration, make_method

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .base import ExportSpec

__all__ = [
    "log", "resolve_method", "as_tensors", "calibration_tensors", "atomic_path", "export_error",
    "one_line", "Stopwatch", "install_hint", "missing", "node_module_path", "node_op_type",
    "pinned_by_overrides", "unquantized_modules", "io_arrays", "IS_MACOS", "names_for", "require", "probe", "canonical",
]

log = logging.getLogger("edgeclip.backends")
IS_MACOS = sys.platform == "darwin"


def install_hint(extra: str) -> str:
    return f"pip install 'edgeclip[{extra}]'"


def missing(module: str, extra: str, err: BaseException) -> str:
    """The ``available()`` message: what failed to import and how to install it."""
    return f"{module} is not importable ({one_line(err)}); {install_hint(extra)}"


def one_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    msg = f"{type(err).__name__}: {text[0] if text else ''}".strip()
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def export_error(backend: str, spec: "ExportSpec", stage: str, err: BaseException, hint: str = "") -> ExportError:
    """One-line ExportError naming backend, tower, quant and stage; chain with ``from err``."""
    msg = f"{backend}: {stage} of the {spec.tower} tower ({spec.quant}) failed: {one_line(err)}"
    return ExportError(msg + (f"; {hint}" if hint else ""))


def resolve_method(backend, spec: "ExportSpec") -> QuantMethod:
    """The validated QuantMethod for ``spec``; ConfigError when the backend lacks the mode."""
    from ..config.names import TOWERS

    if spec.tower not in TOWERS:
        raise ConfigError(f"ExportSpec.tower={spec.tower!r}; allowed: {', '.join(TOWERS)}")
    if spec.quant not in backend.quant_modes:
        raise ConfigError(
            f"{backend.name} cannot produce quantization {spec.quant!r}; supported: "
            f"{', '.join(backend.quant_modes)}"
        )
    cfg = getattr(spec, "quant_config", None)
    if cfg is None:
        return make_method(spec.quant)
    if not isinstance(cfg, QuantMethod):
        raise ConfigError(f"ExportSpec.quant_config must be an edgeclip.quantize config, got {type(cfg).__name__}")
    if cfg.key != spec.quant:
        raise ConfigError(f"ExportSpec.quant={spec.quant!r} but quant_config is for {cfg.key!r}; make them agree")
    return cfg


def as_tensors(example: Sequence[Any]) -> tuple["torch.Tensor", ...]:
    """Example inputs as C-contiguous CPU tensors (numpy HWC->CHW views carry permuted or
    zero strides that torch.export/ExecuTorch reject: ANCHORS.md)."""
    import torch

    out = []
    for x in example:
        t = torch.from_numpy(canonical(x)) if isinstance(x, np.ndarray) else x
        if not isinstance(t, torch.Tensor):
            raise ConfigError(f"example inputs must be tensors or numpy arrays, got {type(x).__name__}")
        # .contiguous() keeps a 0 stride on size-1 dims (``row[None]``); a fresh buffer does not
        out.append(torch.empty(t.shape, dtype=t.dtype).copy_(t.detach().cpu()))
    return tuple(out)



def calibration_tensors(spec: "ExportSpec", example: Sequence["torch.Tensor"],
                        method: QuantMethod) -> list[tuple["torch.Tensor", ...]]:
    """Checked, contiguous calibration samples as tensors (static modes); [] otherwise."""
    import torch

    if not method.needs_calibration:
        return []
    minimum = getattr(method, "min_calibration_samples", 1)
    cal = check_calibration(spec.calibration, example, minimum)
    return [tuple(torch.from_numpy(a) for a in sample) for sample in cal]


def io_arrays(inputs: Sequence[Any], dtypes: Sequence[str]) -> list[np.ndarray]:
    """Runner inputs as contiguous arrays of the artifact's declared dtypes."""
    if len(inputs) != len(dtypes):
        raise ExportError(f"the artifact takes {len(dtypes)} input(s), got {len(inputs)}")
    return [canonical(x, np.dtype(d)) for x, d in zip(inputs, dtypes)]


@contextlib.contextmanager
def atomic_path(out_dir: Path, name: str, suffix: str) -> Iterator[tuple[Path, Path]]:
    """Yield ``(tmp, final)``: write to ``tmp`` inside out_dir; on success it is renamed to
    ``final`` (replacing any old one), on failure removed, so nothing half-written looks whole."""
    final = Path(out_dir) / f"{name}{suffix}"
    with atomic_target(final) as tmp:
        yield tmp, final
        if not tmp.exists():
            raise ExportError(f"exporter wrote nothing to {tmp}")


class Stopwatch:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.ms = (time.perf_counter() - self.t0) * 1e3


def require(module: str, extra: str):
    """Import a toolchain module or raise ToolchainMissing with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as e:  # ImportError, or a broken native library
        raise ToolchainMissing(missing(module, extra, e)) from e


# --- torch graph helpers shared by the torch-side quantizers -------------------------------

_ATEN_TO_TYPE = {
    "linear": "linear", "addmm": "linear", "conv1d": "conv", "conv2d": "conv",
    "convolution": "conv", "matmul": "matmul", "bmm": "matmul", "mm": "matmul",
    "embedding": "embedding", "layer_norm": "layer_norm", "native_layer_norm": "layer_norm",
    "batch_norm": "batch_norm", "_native_batch_norm_legit_no_training": "batch_norm",
    "softmax": "softmax", "_softmax": "softmax", "gelu": "gelu", "add": "add", "mul": "mul",
    "mean": "mean", "scaled_dot_product_attention": "matmul",
}


def node_op_type(node) -> str | None:
    """Canonical op type (edgeclip.quantize.OP_TYPES) of an aten call node, if any."""
    target = getattr(node.target, "__name__", str(node.target))
    base = target.split(".")[0] if "." in target else target
    return _ATEN_TO_TYPE.get(base)


def node_module_path(node) -> str:
    """Dotted module path a torch.export/FX node came from (``blocks.0.in_proj``), or ''."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path.replace("L['self'].", "").replace("L__self___", "")


def pinned_by_overrides(method: QuantMethod, op_type: str | None, op_name: str) -> bool:
    """True when overrides keep this op out of the global quantization mode."""
    if not method.overrides:
        return False
    return method.overrides.resolve(method.key, op_type, op_name) != method.key


def unquantized_modules(model, kinds: tuple[type, ...] | None = None) -> list[str]:
    """Names of weight-carrying modules whose weight is still a plain float tensor."""
    import torch
    from torch import nn

    kinds = kinds or (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)
    out = []
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if isinstance(mod, kinds) and type(w) in (torch.Tensor, nn.Parameter):
            out.append(name)
    return out


def names_for(given: Sequence[str], n: int, stem: str) -> list[str]:
    """``n`` I/O names: the given ones first, then ``stem_i``."""
    given = list(given)[:n]
    return given + [f"{stem}_{i}" for i in range(len(given), n)]


def probe(modules: Sequence[str], extra: str) -> str | None:
    """Cheap ``available()``: find (without importing) each toolchain's top-level package, so
    ``edgeclip list`` stays fast; a broken install still fails loudly in ``require``."""
    import importlib.util

    for mod in modules:
        try:
            found = importlib.util.find_spec(mod.split(".")[0]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{mod} is not installed; {install_hint(extra)}"
    return None
