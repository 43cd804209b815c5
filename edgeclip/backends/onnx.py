"""ONNX backend: torch.onnx.export(dynamo=True) -> .onnx; onnxruntime.quantization for int8;
run with an onnxruntime InferenceSession on the CPU execution provider.

The TorchScript exporter is only a fallback when the dynamo exporter fails (recorded in notes).
int8-dynamic defaults to ``reduce_range`` (7-bit weights): on x86 CPUs without VNNI the u8*s8
kernels saturate, which on a tiny ViT took cosine from 0.9999 to 0.895 on this machine.
Activation-by-activation MatMuls (attention scores) stay float (``MatMulConstBOnly``).
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EdgeclipError, ExportError
from ._common import (Stopwatch, as_tensors, atomic_path, calibration_tensors, export_error,
                      io_arrays, log, missing, names_for, one_line, pinned_by_overrides, probe, require,
                      resolve_method)
from .base import Artifact, ExportSpec

__all__ = ["OnnxBackend", "OnnxRunner"]

_ORT_TYPES = {"linear": ("MatMul", "Gemm"), "conv": ("Conv",), "matmul": ("MatMul",),
              "embedding": ("Gather",), "softmax": ("Softmax",), "add": ("Add",), "mul": ("Mul",)}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int32)": "int32",
               "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def _has_fp16_converter() -> bool:
    return importlib.util.find_spec("onnxconverter_common") is not None


def _rename_io(model, inputs: list[str], outputs: list[str]) -> None:
    """Rename graph inputs/outputs in place; an internal value already holding a wanted name
    is renamed first (the dynamo exporter's own renaming collides, e.g. with an
    ``embedding`` op output in a text tower)."""
    g = model.graph
    wanted = dict(zip([v.name for v in g.input], inputs))
    wanted.update(zip([v.name for v in g.output], outputs))
    taken = {n for node in g.node for n in list(node.input) + list(node.output)}
    taken |= {i.name for i in g.initializer} | {v.name for v in g.input} | {v.name for v in g.output}
    rename: dict[str, str] = {}
    for old, new in wanted.items():
        if old != new and new in taken and new not in wanted:
            rename[new] = f"{new}__internal"
    rename.update({o: n for o, n in wanted.items() if o != n})

    def r(x: str) -> str:
        return rename.get(x, x)

    for node in g.node:
        node.input[:] = [r(x) for x in node.input]
        node.output[:] = [r(x) for x in node.output]
    for coll in (g.input, g.output, g.value_info, g.initializer):
        for v in coll:
            v.name = r(v.name)


def _module_path(node) -> str:
    """Module path from the dynamo exporter's metadata (``blocks.0.in_proj``), or ''."""
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(p.value)
            except (ValueError, SyntaxError):
                return ""
            return scopes[-2] if len(scopes) >= 2 else ""
    return ""


def _base(name: str) -> str:
    """Original exporter node name of a node renamed by pre-processing/quantization
    (``node_MatMul_17/MatMulAddFusion_MatMul_quant`` -> ``node_MatMul_17``)."""
    base = name.split("/")[0]
    for suffix in ("_quant", "_MatMul", "_Add", "_Transpose"):  # ORT's renames, innermost last
        base = base[: -len(suffix)] if base.endswith(suffix) else base
    return base


def _excluded_nodes(model, method, paths: dict[str, str]) -> list[str]:
    """Node names that overrides keep in float (by module path, then by op type)."""
    types = {v: k for k, vs in _ORT_TYPES.items() for v in vs}
    out = []
    for n in model.graph.node:
        path = paths.get(_base(n.name)) or n.name
        if method.overrides.resolve(method.key, types.get(n.op_type), path) != method.key:
            out.append(n.name)
            if n.op_type == "Gemm":  # quantize_dynamic first rewrites Gemm to "<name>_MatMul"
                out.append(n.name + "_MatMul")
    return out


def _float_weight_nodes(model, paths: dict[str, str]) -> list[str]:
    """MatMul/Gemm/Conv/Gather nodes whose weight initializer is still float."""
    import onnx

    inits = {i.name: i.data_type for i in model.graph.initializer}
    fl = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    out = []
    for n in model.graph.node:
        name = paths.get(_base(n.name)) or n.name
        if n.op_type in ("MatMul", "Gemm", "Conv") and len(n.input) > 1 and inits.get(n.input[1]) in fl:
            out.append(f"{n.op_type} {name}")
        elif n.op_type == "Gather" and inits.get(n.input[0]) in fl:
            out.append(f"Gather {name}")
    return out


def _export(tower, ex, path: Path, spec: ExportSpec, notes: list[str]) -> dict[str, str]:
    """Export to ``path``; returns node name -> module path (metadata later passes drop)."""
    import onnx
    import torch

    opset = spec.options.get("opset")
    try:
        torch.onnx.export(tower, ex, str(path), dynamo=True, external_data=False,
                          **({"opset_version": int(opset)} if opset else {}))
        notes.append("torch.onnx.export dynamo=True")
    except Exception as e:  # fall back to the TorchScript exporter, and say so
        log.warning("onnx: dynamo exporter failed (%s); trying the TorchScript exporter", e)
        notes.append(f"dynamo exporter failed ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                     "used the TorchScript exporter")
        torch.onnx.export(tower, ex, str(path), dynamo=False, opset_version=int(opset or 17))
    model = onnx.load(str(path))
    n_in = len(model.graph.input)
    _rename_io(model, names_for(spec.input_names, n_in, "input"),
               names_for(spec.output_names, len(model.graph.output), "output"))
    for k, v in spec.metadata.items():
        model.metadata_props.add(key=str(k), value=str(v))
    onnx.save(model, str(path))
    return {n.name: p for n in model.graph.node if (p := _module_path(n))}


# what quantize_dynamic may turn integer: its registry without Conv. ConvInteger has no fused
# x86 kernel (per-op profile of MobileCLIP2-S0: 166 of 179 ms in ConvInteger, fp32 15 ms)
DYNAMIC_OP_TYPES = ["MatMul", "Attention", "LSTM", "Gather", "Transpose", "EmbedLayerNormalization"]


def _quantize(src: Path, dst: Path, method, cal, input_names: list[str], paths: dict[str, str],
              notes: list[str]) -> None:
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_name(dst.name + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    except Exception as e:  # optimization is advisory; quantize the raw export instead
        notes.append(f"quant_pre_process skipped: {type(e).__name__}")
        pre.write_bytes(src.read_bytes())
    model = onnx.load(str(pre))
    exclude = _excluded_nodes(model, method, paths)
    extra = {"MatMulConstBOnly": True}
    try:
        if method.key == "int8-dynamic":
            rr = True if method.reduce_range is None else method.reduce_range
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=method.per_channel,
                             reduce_range=rr, nodes_to_exclude=exclude, extra_options=extra,
                             op_types_to_quantize=DYNAMIC_OP_TYPES)
            notes.append(f"onnxruntime quantize_dynamic int8 per_channel={method.per_channel} reduce_range={rr}")
            convs = sum(n.op_type == "Conv" for n in model.graph.node)
            if convs:
                notes.append(f"{convs} Conv node(s) kept float: ORT's dynamic ConvInteger ran 12x slower than fp32 "
                             "on MobileCLIP2-S0 (benchmarks/README.md); int8-static quantizes convs")
        else:
            class Reader(CalibrationDataReader):
                def __init__(self):
                    self._it = iter([{n: np.ascontiguousarray(x.numpy()) for n, x in zip(input_names, s)} for s in cal])

                def get_next(self):
                    return next(self._it, None)

            def run(cm):
                quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                                per_channel=method.per_channel, activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8, calibrate_method=cm,
                                nodes_to_exclude=exclude, extra_options=extra)
                notes.append(f"onnxruntime quantize_static QDQ int8 ({cm.name}) on {len(cal)} sample(s)")

            if method.observer == "minmax":
                run(CalibrationMethod.MinMax)
            else:
                try:
                    run(CalibrationMethod.Percentile)
                except ValueError as e:  # ORT's histogram breaks on near-constant activations
                    if "bins" not in str(e):
                        raise
                    notes.append(f"Percentile calibration failed ({e}); fell back to MinMax")
                    run(CalibrationMethod.MinMax)
    finally:
        pre.unlink(missing_ok=True)
    if exclude:
        notes.append(f"kept float by overrides: {len(exclude)} node(s)")


def _patch_embeddings_as_matmul(tower, method, notes: list[str]):
    """int8 modes: a ViT's patch-embedding conv as MatMul (ConvInteger is slow; see _patchify),
    unless the recipe's overrides keep that conv in float."""
    from ._patchify import patchify_patch_embeddings

    out, names = patchify_patch_embeddings(tower)
    if names and any(pinned_by_overrides(method, "conv", n) for n in names):
        return tower
    if names:
        notes.append(f"patch embedding {', '.join(names)} exported as MatMul (ORT's ConvInteger is slow)")
    return out


def _fp16(src: Path, dst: Path, notes: list[str]) -> None:
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    notes.append("onnxconverter-common float16, float32 I/O kept")


def _session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """onnxruntime InferenceSession (CPU EP) with ``threads`` intra-op threads."""

    runtime = "onnxruntime"
    emulated = False

    def __init__(self, artifact: Artifact, threads: int = 2):
        self.threads, self.path = threads, Path(artifact.path)
        with Stopwatch() as sw:
            try:
                self._s = _session(artifact.path, threads)
            except Exception as e:
                raise ExportError(f"onnx: cannot load {artifact.path}: {e}; re-export it") from e
        self.load_ms = sw.ms
        self.input_names = [i.name for i in self._s.get_inputs()]
        self.dtypes = [_ORT_DTYPES.get(i.type, "float32") for i in self._s.get_inputs()]

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        xs = io_arrays(inputs, self.dtypes)
        try:
            return self._s.run(None, dict(zip(self.input_names, xs)))[0]
        except Exception as e:
            raise ExportError(f"onnx: running {self.path.name} failed: {one_line(e)}") from e


class OnnxBackend:
    name = "onnx"
    formats = (".onnx",)

    @property
    def quant_modes(self) -> tuple[str, ...]:
        base = ("fp32", "int8-dynamic", "int8-static")
        return base[:1] + ("fp16",) + base[1:] if _has_fp16_converter() else base

    def available(self) -> str | None:
        return probe(("onnx", "onnxscript", "onnxruntime"), "onnx")

    def export(self, tower, example: tuple, spec: ExportSpec, out_dir: Path) -> Artifact:
        import torch

        method = resolve_method(self, spec)
        onnx = require("onnx", "onnx")
        require("onnxruntime", "onnx")
        tower = tower.eval()
        ex = as_tensors(example)
        cal = calibration_tensors(spec, ex, method)
        notes: list[str] = []
        if method.key.startswith("int8") and spec.options.get("patch_matmul", True):
            tower = _patch_embeddings_as_matmul(tower, method, notes)
        with atomic_path(out_dir, spec.name, ".onnx") as (tmp, final):
            fp32 = tmp.with_name(tmp.name + ".fp32.onnx")
            try:
                with torch.no_grad():
                    paths = _export(tower, ex, fp32, spec, notes)
                names = [i.name for i in onnx.load(str(fp32)).graph.input]
                if method.key == "fp32":
                    fp32.rename(tmp)
                elif method.key == "fp16":
                    _fp16(fp32, tmp, notes)
                else:
                    _quantize(fp32, tmp, method, cal, names, paths, notes)
            except (EdgeclipError, ConfigError):
                raise
            except Exception as e:
                raise export_error(self.name, spec, "torch.onnx.export/quantization", e) from e
            finally:
                fp32.unlink(missing_ok=True)
        model = onnx.load(str(final))
        s = _session(final, 1)
        return Artifact(
            path=final, backend=self.name, tower=spec.tower, quant=spec.quant,
            input_names=[i.name for i in s.get_inputs()], output_names=[o.name for o in s.get_outputs()],
            input_shapes=[list(i.shape) for i in s.get_inputs()],
            input_dtypes=[_ORT_DTYPES.get(i.type, i.type) for i in s.get_inputs()],
            output_shapes=[list(o.shape) for o in s.get_outputs()],
            output_dtypes=[_ORT_DTYPES.get(o.type, o.type) for o in s.get_outputs()],
            delegated_fraction=1.0,  # every node runs on onnxruntime's CPU EP kernels
            not_quantized=_float_weight_nodes(model, paths) if method.key not in ("fp32", "fp16") else [],
            notes=notes,
            extra={"quant_config": method.to_dict(), "opset": [o.version for o in model.opset_import if o.domain == ""]},
        )

    def why_no_runner(self, artifact: Artifact) -> str | None:
        try:
            __import__("onnxruntime")
        except Exception as e:
            return missing("onnxruntime", "onnx", e)
        return None

    def runner(self, artifact: Artifact, threads: int = 2) -> OnnxRunner | None:
        why = self.why_no_runner(artifact)
        if why:
            log.warning("onnx: no runner: %s", why)
            return None
        return OnnxRunner(artifact, threads)

    def start_runtime(self) -> None:
        import onnxruntime as ort

        ort.get_available_providers()

