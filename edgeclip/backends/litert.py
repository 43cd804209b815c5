"""LiteRT backend: litert_torch.convert(module, example) -> .tflite; quantized with
ai-edge-quantizer recipes; run by ai_edge_litert's Interpreter (XNNPACK is its default delegate).

Why ai-edge-quantizer and not litert_torch's PT2E quantizer: with litert-torch 0.10 the PT2E
static path makes the image input an int8 tensor (apps would have to quantize pixels) and the
PT2E dynamic path fails on the text tower ("EMBEDDING_LOOKUP ... zero_point == 0"). The
ai-edge-quantizer recipes (``dynamic_wi8_afp32``, ``static_wi8_ai8`` with the INPUT kept float,
``weight_only_wi8_afp32``, fp16 float-casting) keep float I/O and calibrate on real samples.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EdgeclipError, ExportError
from ._common import (Stopwatch, as_tensors, atomic_path, calibration_tensors, export_error,
                      io_arrays, log, missing, names_for, one_line, probe, require, resolve_method)
from .base import Artifact, ExportSpec

__all__ = ["LiteRTBackend", "LiteRTRunner", "litert_delegation"]

SIGNATURE = "serving_default"
# canonical op type -> TFLite op names (layer_norm/normalize are decomposed, nothing to map)
_TFL_TYPES = {
    "linear": ("FULLY_CONNECTED",), "conv": ("CONV_2D", "DEPTHWISE_CONV_2D"),
    "matmul": ("BATCH_MATMUL",), "embedding": ("EMBEDDING_LOOKUP",), "softmax": ("SOFTMAX",),
    "gelu": ("GELU",), "add": ("ADD",), "mul": ("MUL",), "mean": ("MEAN",),
}
_WEIGHT_OPS = {"FULLY_CONNECTED": 1, "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "EMBEDDING_LOOKUP": 1}
# int8-static quantizes these (the token table: int8 weights only); the ops between stay float
_STATIC_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def litert_delegation(interpreter) -> tuple[float, Counter]:
    """(fraction of original nodes inside delegate partitions, Counter of the others' op names).

    After ``allocate_tensors`` the interpreter lists the original nodes followed by DELEGATE
    nodes; a node is delegated when it lies between a DELEGATE node's inputs and outputs.
    """
    ops = interpreter._get_ops_details()
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer = {t: o["index"] for o in originals for t in o["outputs"]}
    by_index = {o["index"]: o for o in originals}
    inside: set[int] = set()
    for d in (o for o in ops if o["op_name"] == "DELEGATE"):
        stop = set(int(t) for t in d["inputs"])
        todo = [int(t) for t in d["outputs"]]
        while todo:
            t = todo.pop()
            if t in stop or t not in producer or producer[t] in inside:
                continue
            inside.add(producer[t])
            todo.extend(int(x) for x in by_index[producer[t]]["inputs"] if x >= 0)
    outside = Counter(o["op_name"] for o in originals if o["index"] not in inside)
    return (len(inside) / len(originals) if originals else 1.0), outside


def _named(tower, input_names: list[str], output_name: str):
    """Wrap the tower so the TFLite signature carries our I/O names (kwargs become the
    signature's input names; a dict output names the output) instead of args_0/output_0."""
    from torch import nn

    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = tower

        def forward(self, **kw):
            return {output_name: self.m(*[kw[n] for n in input_names])}

    return Named().eval()


def _fingerprint(tower, ex, in_names, out_name) -> str:
    """Hash of everything the fp32 conversion depends on: code identity, weights, I/O."""
    import hashlib

    import torch

    h = hashlib.sha256(f"{type(tower).__module__}.{type(tower).__qualname__}|{in_names}|{out_name}".encode())
    h.update(repr(tower).encode())
    for x in ex:
        h.update(f"{tuple(x.shape)}{x.dtype}".encode())
    for k, v in tower.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _interpreter(model, threads: int = 2):
    from ai_edge_litert.interpreter import Interpreter

    kw = {"model_path": str(model)} if isinstance(model, (str, Path)) else {"model_content": bytes(model)}
    it = Interpreter(num_threads=threads, **kw)
    it.allocate_tensors()
    return it


def _module_keys(tower) -> dict[str, str]:
    """litert-torch names tensors by the chain of *called* modules (``Class_attr`` segments,
    ModuleList names dropped); map that chain (``0.in_proj``) to the torch path (``blocks.0.in_proj``)."""
    from torch import nn

    keys: dict[str, str] = {}
    for name, _ in tower.named_modules():
        mod, chain = tower, []
        for p in name.split(".") if name else []:
            mod = getattr(mod, p)
            if not isinstance(mod, (nn.ModuleList, nn.ModuleDict)):  # containers are never called
                chain.append(p)
        keys.setdefault(".".join(chain), name)  # first wins where chains collide
    return keys


def _tensor_module_path(tensor_name: str, classes: list[str], keys: dict[str, str]) -> str:
    attrs = []
    for seg in tensor_name.split(";")[0].split("/")[1:]:
        cls = next((c for c in classes if seg.startswith(c + "_")), None)
        if cls is not None:
            attrs.append(seg[len(cls) + 1:])
    chain = ".".join(attrs[1:] if attrs[:1] == ["m"] else attrs)  # drop the _named wrapper
    return keys.get(chain, chain)


def _path_resolver(tower):
    """tensor name -> torch module path, for a model converted through ``_named(tower)``."""
    classes = sorted({f"{type(m).__module__}.{type(m).__qualname__}" for m in tower.modules()},
                     key=len, reverse=True)
    keys = _module_keys(tower)
    return lambda tensor_name: _tensor_module_path(tensor_name, classes, keys)


def _override_regexes(tower, fp32_model: bytes, method) -> tuple[list[str], list[str]]:
    """Regexes over TFLite op scopes (output tensor names) that overrides keep in float."""
    it = _interpreter(fp32_model)
    tensors = {t["index"]: t["name"] for t in it.get_tensor_details()}
    path_of = _path_resolver(tower)
    pinned_types = {t: m for t, m in method.overrides.op_type}
    regexes, notes = [], []
    for t in pinned_types:
        if t not in _TFL_TYPES:
            notes.append(f"override op_type {t!r}: no single TFLite op to pin (decomposed); not applied")
    for o in it._get_ops_details():
        if o["op_name"] == "DELEGATE":
            continue
        out = [tensors[i] for i in o["outputs"] if i >= 0]
        if not out:
            continue
        path = path_of(out[0])
        canon = next((k for k, v in _TFL_TYPES.items() if o["op_name"] in v), None)
        if method.overrides.resolve(method.key, canon, path or None) != method.key:
            regexes.append(re.escape(out[0]) + r"(?![0-9])")
    return regexes, notes


def _quantize(fp32: bytes, method, tower, cal, input_names: list[str]) -> tuple[bytes, list[str]]:
    from ai_edge_quantizer import qtyping, quantizer as aeq, recipe

    q = aeq.Quantizer(fp32)
    op = qtyping.TFLOperationName
    gran = {"per_tensor": qtyping.QuantGranularity.TENSORWISE,
            "per_channel": qtyping.QuantGranularity.CHANNELWISE}
    notes: list[str] = []
    if method.key == "fp16":
        q.update_quantization_recipe(
            regex=".*", operation_name=op.ALL_SUPPORTED, algorithm_key="float_casting",
            op_config=qtyping.OpQuantizationConfig(
                weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
                compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True))
    elif method.key == "int8-dynamic":
        q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        if not method.per_channel:
            q.add_dynamic_config(".*", op.ALL_SUPPORTED, 8, gran["per_tensor"])
    elif method.key == "int8-weight":
        q.add_weight_only_config(".*", op.ALL_SUPPORTED, 8, gran[method.granularity])
    elif method.key == "int8-static":
        # only the weight ops: XNNPACK's delegate has no int8 kernels for the rest (layer-norm
        # pieces, BATCH_MATMUL, SOFTMAX, GELU), which then ran undelegated and split the graph
        for name in _STATIC_OPS:
            q.add_static_config(".*", getattr(op, name), 8, 8,
                                gran["per_channel" if method.per_channel else "per_tensor"])
        q.add_weight_only_config(".*", op.EMBEDDING_LOOKUP, 8, gran["per_channel"])
        # keep graph I/O float: apps feed float pixels and read float embeddings, not int8
        for io in (op.INPUT, op.OUTPUT):
            q.update_quantization_recipe(regex=".*", operation_name=io, algorithm_key="no_quantize")
    regexes, o_notes = _override_regexes(tower, fp32, method)
    notes += o_notes
    for t, mode in method.overrides.op_type:
        if mode != method.key:
            for name in _TFL_TYPES.get(t, ()):
                q.update_quantization_recipe(regex=".*", operation_name=getattr(op, name), algorithm_key="no_quantize")
    for rx in regexes:
        q.update_quantization_recipe(regex=rx, operation_name=op.ALL_SUPPORTED, algorithm_key="no_quantize")
    result = None
    recipe_name = {"fp16": "float_casting (fp16 weights)", "int8-dynamic": "dynamic_wi8_afp32",
                   "int8-weight": "weight_only_wi8_afp32", "int8-static": "static_wi8_ai8 (float I/O kept)"}
    notes.append(f"ai-edge-quantizer {recipe_name[method.key]}")
    if q.need_calibration:
        data = [{n: np.ascontiguousarray(x.numpy()) for n, x in zip(input_names, s)} for s in cal]
        result = q.calibrate({SIGNATURE: data}, num_threads=2)
        notes.append(f"calibrated on {len(cal)} sample(s)")
    if regexes:
        notes.append(f"kept float by op_name overrides: {len(regexes)} op(s)")
    out = q.quantize(result, enable_progress_report=False).quantized_model
    return bytes(out), notes


def _float_weight_ops(it, path_of) -> list[str]:
    """Weight-carrying ops whose weight is float32 (directly, or through a DEQUANTIZE of a
    float tensor); fp16 and int8 weights reach them through a DEQUANTIZE of a narrow tensor."""
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = [o for o in it._get_ops_details() if o["op_name"] != "DELEGATE"]
    producer = {int(t): o for o in ops for t in o["outputs"]}
    out = []
    for o in ops:
        k = _WEIGHT_OPS.get(o["op_name"])
        if k is None or len(o["inputs"]) <= k:
            continue
        w = int(o["inputs"][k])
        src = producer.get(w)
        if src is not None and src["op_name"] == "DEQUANTIZE":
            w = int(src["inputs"][0])
        if w in tensors and tensors[w]["dtype"] == np.float32 and w not in producer:
            name = tensors[int(o["outputs"][0])]["name"]
            out.append(f"{o['op_name']} {path_of(name) or name.split(';')[0]}")
    return out


def _in_order(names, signature_inputs) -> list[str]:
    """Input names in the tower's order: the signature lists them sorted (x0, x1, x10, x2 ...)."""
    names = list(names or [])
    return names if sorted(names) == sorted(signature_inputs) else list(signature_inputs)


class LiteRTRunner:
    """ai_edge_litert Interpreter over the model's serving signature (XNNPACK by default)."""

    runtime = "ai-edge-litert"
    emulated = False

    def __init__(self, artifact: Artifact, threads: int = 2):
        self.threads, self.path = threads, Path(artifact.path)
        with Stopwatch() as sw:
            try:
                self._it = _interpreter(artifact.path, threads)
            except Exception as e:
                raise ExportError(f"litert: cannot load {artifact.path}: {e}; re-export it") from e
            self._run = self._it.get_signature_runner(SIGNATURE)
        self.load_ms = sw.ms
        sig = self._it.get_signature_list()[SIGNATURE]
        self.input_names = _in_order(artifact.input_names, sig["inputs"])  # positional = the tower's order
        self.output_names = sig["outputs"]
        self.dtypes = artifact.input_dtypes

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        xs = io_arrays(inputs, self.dtypes)
        try:
            out = self._run(**dict(zip(self.input_names, xs)))
        except Exception as e:
            raise ExportError(f"litert: running {self.path.name} failed: {one_line(e)}") from e
        return np.array(out[self.output_names[0]], copy=True)


class LiteRTBackend:
    name = "litert"
    formats = (".tflite",)
    quant_modes = ("fp32", "fp16", "int8-dynamic", "int8-static", "int8-weight")

    def __init__(self):
        # the last fp32 flatbuffer: a target usually asks for several quant modes of one
        # tower, and every mode starts from the same (slow) conversion
        self._last_fp32: tuple[str | None, bytes | None] = (None, None)

    def available(self) -> str | None:
        return probe(("litert_torch", "ai_edge_litert", "ai_edge_quantizer"), "litert")

    def export(self, tower, example: tuple, spec: ExportSpec, out_dir: Path) -> Artifact:
        import torch

        method = resolve_method(self, spec)
        if method.key == "int8-weight" and method.granularity == "per_block":
            raise ConfigError("litert: int8-weight granularity='per_block' is not offered; use per_tensor or per_channel")
        litert_torch = require("litert_torch", "litert")
        require("ai_edge_litert.interpreter", "litert")
        tower = tower.eval()
        ex = as_tensors(example)
        cal = calibration_tensors(spec, ex, method)
        notes: list[str] = []
        try:
            in_names = names_for(spec.input_names, len(ex), "input")
            out_name = names_for(spec.output_names, 1, "output")[0]
            key = _fingerprint(tower, ex, in_names, out_name)
            fp32 = self._last_fp32[1] if self._last_fp32[0] == key else None
            if fp32 is None:
                named = _named(tower, in_names, out_name)
                with torch.no_grad():
                    fp32 = bytes(litert_torch.convert(named, sample_kwargs=dict(zip(in_names, ex))).model_content())
                self._last_fp32 = (key, fp32)
            else:
                notes.append("reused the fp32 conversion of an identical tower")
        except EdgeclipError:
            raise
        except Exception as e:
            raise export_error(self.name, spec, "litert_torch.convert", e) from e
        data = fp32
        if method.key != "fp32":
            it = _interpreter(fp32)
            names = it.get_signature_list()[SIGNATURE]["inputs"]
            try:
                data, q_notes = _quantize(fp32, method, tower, cal, names)
                notes += q_notes
            except EdgeclipError:
                raise
            except Exception as e:
                raise export_error(self.name, spec, "ai-edge-quantizer", e) from e
        with atomic_path(out_dir, spec.name, ".tflite") as (tmp, final):
            tmp.write_bytes(data)
        it = _interpreter(final)
        sig = it.get_signature_list()[SIGNATURE]
        sr = it.get_signature_runner(SIGNATURE)
        ins, outs = sr.get_input_details(), sr.get_output_details()
        frac, outside = litert_delegation(it)
        order = _in_order(in_names, sig["inputs"])
        return Artifact(
            path=final, backend=self.name, tower=spec.tower, quant=spec.quant,
            input_names=order, output_names=list(sig["outputs"]),
            input_shapes=[ins[n]["shape"].tolist() for n in order],
            input_dtypes=[np.dtype(ins[n]["dtype"]).name for n in order],
            output_shapes=[outs[n]["shape"].tolist() for n in sig["outputs"]],
            output_dtypes=[np.dtype(outs[n]["dtype"]).name for n in sig["outputs"]],
            delegated_fraction=frac,
            not_delegated=[f"{op} x{n}" for op, n in sorted(outside.items())],
            not_quantized=_float_weight_ops(it, _path_resolver(tower)) if method.key != "fp32" else [],
            notes=notes, extra={"quant_config": method.to_dict(), "delegate": "xnnpack"},
        )

    def why_no_runner(self, artifact: Artifact) -> str | None:
        try:
            __import__("ai_edge_litert.interpreter")
        except Exception as e:
            return missing("ai_edge_litert.interpreter", "litert", e)
        return None

    def runner(self, artifact: Artifact, threads: int = 2) -> LiteRTRunner | None:
        why = self.why_no_runner(artifact)
        if why:
            log.warning("litert: no runner: %s", why)
            return None
        return LiteRTRunner(artifact, threads)

    def start_runtime(self) -> None:
        import importlib

        importlib.import_module("ai_edge_litert.interpreter")
