"""Torch-side W8A8 for CoreML with coremltools.optimize.torch's LinearQuantizer.

Why this path: coremltools' PT2E ``CoreMLQuantizer`` imports ``torch.ao.quantization.quantizer``,
which torch 2.14 removed, so the FX-based LinearQuantizer is the one that works with the pinned
versions. It needs a traced program, and ``ct.convert`` of a jit trace that reads tensor sizes
(``x.shape[0]``) fails under numpy 2.4 ("only 0-dimensional arrays can be converted to Python
scalars" in the ``int`` op), so shapes are frozen to constants before tracing: the artifact has
fixed shapes anyway.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["w8a8_traced"]

_MODULE_TYPES = {"linear": "Linear", "conv": "Conv2d", "embedding": "Embedding",
                 "layer_norm": "LayerNorm", "batch_norm": "BatchNorm2d"}


def _freeze_shapes(gm, example: Sequence):
    """Replace size/shape computations in an FX graph by the ints they evaluate to."""
    import torch
    from torch.fx.node import map_arg

    vals = {}

    class Record(torch.fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            vals[n] = r
            return r

    with torch.no_grad():
        Record(gm).run(*example)

    def static(v):
        return (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, (tuple, torch.Size)) and len(v) > 0 and all(isinstance(e, int) for e in v))

    for n in gm.graph.nodes:
        v = vals.get(n)
        if n.op in ("call_function", "call_method") and not isinstance(v, torch.Tensor) and static(v):
            const = v if isinstance(v, int) else tuple(v)
            for u in list(n.users):
                u.args = map_arg(u.args, lambda a: const if a is n else a)
                u.kwargs = map_arg(u.kwargs, lambda a: const if a is n else a)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def w8a8_traced(tower, example: Sequence, calibration: Sequence[Sequence], method, notes: list[str]):
    """Calibrated int8 weights+activations; returns (jit-traced module, skipped module names)."""
    import torch
    from coremltools.optimize.torch.quantization import (LinearQuantizer, LinearQuantizerConfig,
                                                         ModuleLinearQuantizerConfig)

    # Pre-trace with FX and freeze shapes so the quantizer's own trace sees constants
    # (a float computed from a traced shape would otherwise get an activation observer).
    gm = _freeze_shapes(torch.fx.symbolic_trace(tower), example)
    glob = ModuleLinearQuantizerConfig(
        quantization_scheme="symmetric", weight_per_channel=method.per_channel,
        milestones=[0, 1_000_000, 1_000_000, 0],  # observers on, never freeze: pure PTQ
    )
    type_cfgs, name_cfgs, skipped = {}, {}, []
    for t, mode in method.overrides.op_type:
        if mode != method.key:
            if t in _MODULE_TYPES:
                type_cfgs[_MODULE_TYPES[t]] = None
            else:
                notes.append(f"override op_type {t!r} has no module type in LinearQuantizer; not applied")
    for name, mod in tower.named_modules():
        if name and method.overrides.resolve(method.key, None, name) != method.key:
            name_cfgs[name] = None
            skipped.append(name)
    cfg = LinearQuantizerConfig(global_config=glob, module_type_configs=type_cfgs,
                                module_name_configs=name_cfgs)
    q = LinearQuantizer(gm, cfg)
    prepared = q.prepare(example_inputs=tuple(example), inplace=False)
    q.step()
    with torch.no_grad():
        for sample in calibration:
            prepared(*sample)
    prepared.eval()
    final = _freeze_shapes(q.finalize(inplace=False), example)
    notes.append(f"coremltools LinearQuantizer W8A8 (symmetric int8, per_channel={method.per_channel}) "
                 f"calibrated on {len(calibration)} sample(s)")
    with torch.no_grad():
        return torch.jit.trace(final, tuple(example), check_trace=False), skipped
