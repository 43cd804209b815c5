"""ExecuTorch backend: torch.export -> (PT2E / torchao quantization) -> to_edge_transform_and_lower
with XNNPACK (and optionally CoreML) partitioners -> .pte, run through executorch.runtime.

Quantization: int8-dynamic and int8-static are PT2E with XNNPACKQuantizer (per-channel
weights; static calibrates on the spec's real samples) plus int8 token tables (XNNPACKQuantizer
leaves embeddings alone; ``_executorch_embedding``); 8da4w is torchao's
Int8DynamicActivationIntxWeightConfig (int4 grouped weights on Linear layers). Every artifact
reports which ops the delegates took and names the ones left to portable kernels.
"""
from __future__ import annotations

import copy
import dataclasses
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, EdgeclipError, ExportError
from ._common import (IS_MACOS, Stopwatch, as_tensors, atomic_path, calibration_tensors,
                      export_error, io_arrays, log, missing, names_for, node_module_path,
                      node_op_type, one_line, pinned_by_overrides, probe, require, resolve_method,
                      unquantized_modules)
from ._executorch_embedding import load_quantized_kernels, quantize_embeddings
from ._executorch_runtime import import_runtime
from ._xnnpack_rewrite import xnnpack_friendly
from .base import Artifact, ExportSpec

__all__ = ["ExecuTorchBackend", "ExecuTorchRunner", "delegation_stats"]

PARTITIONERS = ("xnnpack", "coreml")
_BOOKKEEPING = ("getitem", "alloc", "executorch_call_delegate")
# ops that move, view or index data without arithmetic on activations: the CLS-token select,
# the text tower's end-of-text lookup (argmax/eq/gather on int ids), the token embedding
# table lookup, layout copies. "compute" = everything else.
_DATA_MOVEMENT = ("select_copy", "slice_copy", "view_copy", "squeeze_copy", "unsqueeze_copy",
                  "expand_copy", "permute_copy", "_to_dim_order_copy", "clone", "embedding",
                  "gather", "argmax", "eq.", "index", "_unsafe_view", "arange")


def _op_name(node) -> str:
    return getattr(node.target, "__name__", str(node.target))


def _is_bookkeeping(node) -> bool:
    name = _op_name(node)
    return any(b in name for b in _BOOKKEEPING)


def delegation_stats(edge) -> dict[str, Any]:
    """Count call_function nodes inside delegates vs outside in a lowered edge program.

    Returns ``{"fraction", "compute_fraction", "inside": {backend_id: n}, "outside": {op: n}}``;
    getitem and allocation bookkeeping is excluded from both sides; ``compute_fraction`` also
    leaves out pure data-movement/indexing ops (``_DATA_MOVEMENT``).
    """
    from executorch.exir.lowered_backend_module import LoweredBackendModule

    gm = edge.exported_program().graph_module
    inside: Counter = Counter()
    outside: Counter = Counter()
    for n in gm.graph.nodes:
        if n.op == "get_attr" and isinstance(getattr(gm, n.target, None), LoweredBackendModule):
            lm = getattr(gm, n.target)
            inside[lm.backend_id] += sum(
                1 for x in lm.original_module.graph.nodes
                if x.op == "call_function" and not _is_bookkeeping(x)
            )
        elif n.op == "call_function" and not _is_bookkeeping(n):
            outside[_op_name(n)] += 1
    total = sum(inside.values()) + sum(outside.values())
    compute_out = sum(n for op, n in outside.items() if not any(d in op for d in _DATA_MOVEMENT))
    compute_total = sum(inside.values()) + compute_out
    return {
        "fraction": (sum(inside.values()) / total) if total else 1.0,
        "compute_fraction": (sum(inside.values()) / compute_total) if compute_total else 1.0,
        "inside": dict(inside),
        "outside": dict(sorted(outside.items())),
    }


def _partitioner_names(spec: ExportSpec) -> list[str]:
    names = spec.options.get("partitioners", ["xnnpack"])
    if isinstance(names, str):
        names = [names]
    bad = [n for n in names if n not in PARTITIONERS]
    if bad or not names:
        raise ConfigError(
            f"executorch: partitioners {list(names)!r} invalid; choose an ordered list from {', '.join(PARTITIONERS)}"
        )
    return list(names)


def _make_partitioners(names: list[str], spec: ExportSpec) -> list:
    out = []
    for n in names:
        if n == "xnnpack":
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

            out.append(XnnpackPartitioner())
        else:  # coreml: lowers on Linux (coremltools converts here); runs only on Apple OSes
            ct = require("coremltools", "coreml")
            from executorch.backends.apple.coreml.compiler import CoreMLBackend
            from executorch.backends.apple.coreml.partition import CoreMLPartitioner

            prec = spec.options.get("compute_precision", "fp16")
            if prec not in ("fp16", "fp32"):
                raise ConfigError(f"executorch: compute_precision={prec!r}; allowed: fp16, fp32")
            target = spec.options.get("minimum_deployment_target", "iOS17")
            if not hasattr(ct.target, str(target)):
                raise ConfigError(f"executorch: minimum_deployment_target={target!r} unknown; e.g. iOS17, iOS18")
            cs = CoreMLBackend.generate_compile_specs(
                compute_precision=ct.precision.FLOAT16 if prec == "fp16" else ct.precision.FLOAT32,
                minimum_deployment_target=getattr(ct.target, str(target)),
            )
            out.append(CoreMLPartitioner(compile_specs=cs))
    return out


def _weights_not_dequantized(gm) -> list[str]:
    """Linear/conv/embedding nodes whose weight input is not produced by a dequantize op (an
    embedding left here was kept float by overrides; the others became embedding_byte)."""
    out = []
    for n in gm.graph.nodes:
        kind = node_op_type(n) if n.op == "call_function" else None
        if kind not in ("linear", "conv", "embedding"):
            continue
        idx = 0 if kind == "embedding" else 1
        w = n.args[idx] if len(n.args) > idx else None
        if not (getattr(w, "op", None) == "call_function" and "dequantize" in _op_name(w)):
            out.append(node_module_path(n) or n.name)
    return out


def _pt2e(tower, ex, method, cal, notes: list[str]):
    """PT2E with XNNPACKQuantizer: per-channel int8 weights, dynamic or calibrated activations."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = method.key == "int8-dynamic"
    cfg = get_symmetric_quantization_config(is_per_channel=method.per_channel, is_dynamic=dynamic)
    if not dynamic and method.observer == "minmax":
        from torchao.quantization.pt2e import MinMaxObserver

        act = dataclasses.replace(cfg.input_activation,
                                  observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        cfg = dataclasses.replace(cfg, input_activation=act, output_activation=act)
    q = XNNPACKQuantizer().set_global(cfg)
    q.set_filter_function(lambda n: not pinned_by_overrides(method, node_op_type(n), node_module_path(n)))
    gm = torch.export.export(tower, ex, strict=False).module()
    gm = prepare_pt2e(gm, q)
    with torch.no_grad():
        for sample in cal or [ex]:  # dynamic: one pass sets the weight observers
            gm(*sample)
    gm = convert_pt2e(gm)
    not_q = _weights_not_dequantized(gm)
    notes.append(f"PT2E XNNPACKQuantizer {'dynamic' if dynamic else 'static'} int8, "
                 f"per_channel={method.per_channel}, {len(cal)} calibration sample(s)")
    return torch.export.export(gm, ex, strict=False), not_q


def _8da4w(tower, ex, method, notes: list[str]):
    """torchao 8da4w: int8 per-token dynamic activations, int4 weights in groups (Linear only)."""
    import torch
    from torch import nn
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    gs = method.group_size
    model = copy.deepcopy(tower)

    def keep(mod, fqn):
        return (isinstance(mod, nn.Linear) and mod.in_features % gs == 0
                and not pinned_by_overrides(method, "linear", fqn))

    cfg = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(gs))
    quantize_(model, cfg, filter_fn=keep)
    notes.append(f"torchao Int8DynamicActivationIntxWeightConfig int4 group_size={gs} on Linear layers")
    return torch.export.export(model, ex, strict=False), unquantized_modules(model)


_LIVE_RUNNERS: "weakref.WeakSet[ExecuTorchRunner]" = weakref.WeakSet()


def _set_threadpool(threads: int) -> None:
    """Size XNNPACK's process-global thread pool. Resizing it while a loaded method holds the
    old pool crashes the process (measured: 1 -> 2 threads segfaults on the next execute),
    so a different count is refused while any runner of this process is alive."""
    try:  # the runner imported the runtime first (import_runtime), so this loads no exporter
        from executorch.extension.pybindings.portable_lib import (
            _threadpool_get_thread_count, _unsafe_reset_threadpool)
    except ImportError:  # pragma: no cover - older builds lack the hooks
        log.warning("executorch: this build cannot set its thread count; running on its default")
        return
    current = _threadpool_get_thread_count()
    if threads == current:
        return
    if len(_LIVE_RUNNERS):
        raise ConfigError(
            f"executorch: this process already runs .pte files on {current} threads and XNNPACK's "
            f"thread pool cannot be resized while they are loaded; use threads={current} or a new process")
    _unsafe_reset_threadpool(threads)


class ExecuTorchRunner:
    """A loaded .pte method; ``__call__`` takes numpy arrays and returns the first output."""

    emulated = False

    def __init__(self, artifact: Artifact, threads: int = 2):
        Runtime = import_runtime().Runtime
        _set_threadpool(int(threads))
        self.threads, self.path = threads, Path(artifact.path)
        self.dtypes = artifact.input_dtypes
        delegates = artifact.extra.get("delegates", {})
        self.runtime = "executorch-xnnpack" if "XnnpackBackend" in delegates else "executorch-portable"
        load_quantized_kernels()  # int8 token tables run on embedding_byte
        runtime = Runtime.get()  # one-time runtime start-up (seconds): not the artifact's load
        with Stopwatch() as sw:
            try:
                self._method = runtime.load_program(str(artifact.path)).load_method("forward")
            except Exception as e:
                hint = ("it delegates to CoreML, which runs only on macOS/iOS"
                        if "CoreMLBackend" in delegates else "re-export it with this executorch version")
                raise ExportError(f"executorch: cannot load {artifact.path}: {e}; {hint}") from e
        self.load_ms = sw.ms
        _LIVE_RUNNERS.add(self)

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        import torch

        xs = [torch.from_numpy(a) for a in io_arrays(inputs, self.dtypes)]
        try:
            return self._method.execute(xs)[0].detach().numpy().copy()
        except Exception as e:
            raise ExportError(f"executorch: running {self.path.name} failed: {one_line(e)}") from e


class ExecuTorchBackend:
    name = "executorch"
    formats = (".pte",)
    quant_modes = ("fp32", "int8-dynamic", "int8-static", "8da4w")

    def available(self) -> str | None:
        return probe(("executorch", "torchao"), "executorch")

    def export(self, tower, example: tuple, spec: ExportSpec, out_dir: Path) -> Artifact:
        import torch

        method = resolve_method(self, spec)
        parts = _partitioner_names(spec)
        require("executorch.exir", "executorch")
        from executorch.exir import to_edge_transform_and_lower

        tower = tower.eval()
        ex = as_tensors(example)
        cal = calibration_tensors(spec, ex, method)
        notes: list[str] = []
        try:
            with torch.no_grad():
                out = tower(*ex)
                if method.key in ("int8-dynamic", "int8-static"):
                    ep, not_q = _pt2e(quantize_embeddings(tower, method, notes), ex, method, cal, notes)
                elif method.key == "8da4w":
                    ep, not_q = _8da4w(tower, ex, method, notes)
                else:
                    ep, not_q = torch.export.export(tower, ex, strict=False), []
        except EdgeclipError:
            raise
        except Exception as e:
            raise export_error(self.name, spec, "torch.export/quantization", e) from e
        try:
            # CoreML has layer_norm itself: rewrite only for XNNPACK (option to compare without)
            if parts[0] == "xnnpack" and spec.options.get("xnnpack_rewrite", True):
                ep = xnnpack_friendly(ep, mean=spec.options.get("xnnpack_mean", "fc"))
            edge = to_edge_transform_and_lower(ep, partitioner=_make_partitioners(parts, spec))
            stats = delegation_stats(edge)
            buffer = edge.to_executorch().buffer
        except EdgeclipError:
            raise
        except Exception as e:
            raise export_error(self.name, spec, f"lowering with {'+'.join(parts)}", e) from e
        with atomic_path(out_dir, spec.name, ".pte") as (tmp, final):
            tmp.write_bytes(buffer)
        if "CoreMLBackend" in stats["inside"] and not IS_MACOS:
            notes.append("CoreML-delegated: runs on macOS/iOS only, not on this machine")
        n_in = len(ex)
        return Artifact(
            path=final, backend=self.name, tower=spec.tower, quant=spec.quant,
            input_names=names_for(spec.input_names, n_in, "input"),
            output_names=names_for(spec.output_names, 1, "output"),
            input_shapes=[list(x.shape) for x in ex], input_dtypes=[str(x.numpy().dtype) for x in ex],
            output_shapes=[list(out.shape)], output_dtypes=[str(out.detach().numpy().dtype)],
            delegated_fraction=stats["fraction"],
            not_delegated=[f"{op} x{n}" for op, n in stats["outside"].items()],
            not_quantized=not_q, notes=notes,
            extra={"delegates": stats["inside"], "partitioners": parts,
                   "compute_delegated_fraction": stats["compute_fraction"],
                   "quant_config": method.to_dict()},
        )

    def why_no_runner(self, artifact: Artifact) -> str | None:
        if "CoreMLBackend" in artifact.extra.get("delegates", {}) and not IS_MACOS:
            return (f"{artifact.path.name} delegates ops to CoreML, which runs only on macOS/iOS; "
                    "ExecuTorch here cannot execute it (export with partitioners=['xnnpack'] to run it here)")
        try:
            import_runtime()
        except Exception as e:
            return missing("executorch.runtime", "executorch", e)
        return None

    def runner(self, artifact: Artifact, threads: int = 2) -> ExecuTorchRunner | None:
        why = self.why_no_runner(artifact)
        if why:
            log.warning("executorch: no runner: %s", why)
            return None
        return ExecuTorchRunner(artifact, threads)

    def start_runtime(self) -> None:
        import importlib

        runtime = import_runtime()  # what a phone loads: the runtime, not the exporter
        importlib.import_module("torch")  # the runner hands torch tensors to the method
        load_quantized_kernels()
        runtime.Runtime.get()

