"""CoreML backend: torch.export -> ct.convert -> mlprogram .mlpackage, fixed shapes.

Compute precision is fp16 by default (fp32 when the quant mode is fp32, or when asked); weight
compression uses coremltools.optimize.coreml (int8 linear, 4/6/8-bit palettization); W8A8 is
quantized torch-side (see _coreml_w8a8). Conversion works on Linux; running needs macOS, so
``runner()`` is None elsewhere and verification falls to the MIL interpreter in edgeclip.verify.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EdgeclipError, ExportError
from ._common import (IS_MACOS, Stopwatch, as_tensors, atomic_path, calibration_tensors,
                      export_error, io_arrays, log, names_for, one_line, probe, require,
                      resolve_method)
from .base import Artifact, ExportSpec

__all__ = ["CoreMLBackend", "CoreMLRunner", "mil_op_types", "COMPRESSION_OPS"]

COMPRESSION_OPS = ("constexpr_lut_to_dense", "constexpr_affine_dequantize",
                   "constexpr_blockwise_shift_scale", "quantize", "dequantize")
_PAL_BITS = {"pal4": 4, "pal6": 6, "pal8": 8}  # an op_name override to one of these sets that layer's bits
_MIL_TYPES = {"linear": ("linear",), "conv": ("conv",), "matmul": ("matmul",),
              "embedding": ("gather",), "layer_norm": ("layer_norm",), "softmax": ("softmax",),
              "gelu": ("gelu",), "add": ("add",), "mul": ("mul",), "mean": ("reduce_mean",),
              "normalize": ("reduce_l2_norm", "real_div"), "batch_norm": ("batch_norm",)}
_WEIGHT_CONSUMERS = ("linear", "conv", "matmul", "gather")
_STANDARD_META = {"author", "license", "description", "short_description", "version"}


def mil_op_types(path: Path) -> Counter:
    """Op type counts of a saved .mlpackage's MIL program (reads the spec; no macOS needed)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    counts: Counter = Counter()

    def walk(block):
        for op in block.operations:
            counts[op.type] += 1
            for b in op.blocks:
                walk(b)

    for f in spec.mlProgram.functions.values():
        for b in f.block_specializations.values():
            walk(b)
    return counts


def _target(ct, spec: ExportSpec):
    name = str(spec.options.get("minimum_deployment_target", "iOS17"))
    t = getattr(ct.target, name, None)
    if t is None:
        raise ConfigError(f"coreml: minimum_deployment_target={name!r} unknown; e.g. iOS16, iOS17, iOS18, macOS15")
    return name, t


def _precision(spec: ExportSpec, quant: str) -> str:
    prec = spec.options.get("compute_precision") or ("fp32" if quant == "fp32" else "fp16")
    if prec not in ("fp16", "fp32"):
        raise ConfigError(f"coreml: compute_precision={prec!r}; allowed: fp16, fp32")
    if quant == "fp16" and prec == "fp32":
        raise ConfigError("coreml: quant fp16 with compute_precision fp32 contradicts; drop one")
    return prec


def _validate(ct, method, target) -> None:
    """Checks that must fail before any conversion time is spent."""
    if method.key.startswith("pal") and method.granularity == "per_grouped_channel" and target < ct.target.iOS18:
        raise ConfigError(
            f"coreml: {method.key} granularity='per_grouped_channel' needs minimum_deployment_target "
            ">= iOS18; set it in the target or use granularity='per_tensor'")
    if method.key == "int8-weight" and method.granularity == "per_block" and target < ct.target.iOS18:
        raise ConfigError("coreml: int8-weight granularity='per_block' needs minimum_deployment_target "
                          ">= iOS18; set it in the target or use granularity='per_channel'")


def _weight_consts(prog, threshold: int):
    """(name, consumer op types, consumer names) of float weight constants feeding weight ops."""
    out = []
    for f in prog.functions.values():
        for op in f.operations:
            v = op.outputs[0].val if op.op_type == "const" else None
            if isinstance(v, np.ndarray) and v.ndim >= 2 and v.size >= threshold and v.dtype.kind == "f":
                kids = op.outputs[0].child_ops
                types = {c.op_type for c in kids}
                if types & set(_WEIGHT_CONSUMERS):
                    out.append((op.name, types, [c.name for c in kids]))
    return out


def _const_paths(tower) -> dict[str, str]:
    """MIL const name (torch.export placeholder ``p_blocks_0_in_proj_weight``) -> module path."""
    out = {}
    for name, mod in tower.named_modules():
        for kind, items in (("p", mod.named_parameters(recurse=False)), ("b", mod.named_buffers(recurse=False))):
            for pname, _ in items:
                full = f"{name}.{pname}" if name else pname
                out[f"{kind}_{full.replace('.', '_')}"] = name or pname
    return out


def _path_of(const: str, paths: dict[str, str]) -> str | None:
    for suffix in ("_to_fp16", "_to_fp32"):
        const = const[: -len(suffix)] if const.endswith(suffix) else const
    return paths.get(const)


def _compress(ml, method, paths: dict[str, str], notes: list[str]):
    import coremltools.optimize.coreml as cto

    weight_only = method.key == "int8-weight"
    if weight_only:
        op_cfg = cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity=method.granularity,
            block_size=method.block_size, weight_threshold=method.weight_threshold)
    else:
        op_cfg = cto.OpPalettizerConfig(
            nbits=method.nbits, mode=method.mode, granularity=method.granularity,
            group_size=method.group_size, weight_threshold=method.weight_threshold)
    type_cfgs = {}
    for t, mode in method.overrides.op_type:
        if mode != method.key:
            type_cfgs.update({m: None for m in _MIL_TYPES.get(t, ())})
    name_cfgs, unmapped, bits = {}, 0, Counter()
    for name, types, kids in _weight_consts(ml._mil_program, 0):
        path = _path_of(name, paths)
        unmapped += path is None
        mode = method.overrides.resolve(method.key, None, path) if path is not None else method.key
        if mode == method.key:
            continue
        if not weight_only and mode in _PAL_BITS:  # per-layer bits: the same LUT kind, more entries
            name_cfgs[name] = cto.OpPalettizerConfig(
                nbits=_PAL_BITS[mode], mode=method.mode, granularity=method.granularity,
                group_size=method.group_size, weight_threshold=method.weight_threshold)
            bits[mode] += 1
        else:
            name_cfgs[name] = None
    cfg = cto.OptimizationConfig(global_config=op_cfg, op_type_configs=type_cfgs or None,
                                 op_name_configs=name_cfgs or None)
    fn = cto.linear_quantize_weights if weight_only else cto.palettize_weights
    kept = len(name_cfgs) - sum(bits.values())
    other = "".join(f", {n} at {m}" for m, n in sorted(bits.items()))
    notes.append(f"coremltools.optimize.coreml {'linear_quantize_weights' if weight_only else 'palettize_weights'}"
                 f" ({method.granularity}); {kept} weight(s) kept float by overrides{other}")
    if unmapped and method.overrides.op_name:
        notes.append(f"{unmapped} weight(s) have no module path (folded by the converter, e.g. conv+BN): "
                     "op_name overrides cannot reach them")
    return fn(ml, cfg)


def _input_dtype(x):
    """coremltools takes uint8 inputs (in-graph preprocessing, iOS17+) only as its own MIL type."""
    from coremltools.converters.mil.mil import types

    dt = x.numpy().dtype.type
    return types.uint8 if dt is np.uint8 else dt


def _apply_metadata(ml, spec: ExportSpec, in_names, out_names) -> None:
    md = dict(spec.metadata)
    ml.author = md.get("author", "edgeclip")
    ml.license = md.get("license", "")
    ml.short_description = md.get("description", md.get("short_description", f"CLIP {spec.tower} tower"))
    ml.version = md.get("version", "")
    default_in = ("float32[B,3,H,W] RGB pixels, resized and normalized (see preprocessing)"
                  if spec.tower == "image" else "int32[B,L] token ids, zero-padded, EOT has the largest id")
    for n in in_names:
        ml.input_description[n] = md.get(f"input:{n}", default_in)
    for n in out_names:
        ml.output_description[n] = md.get(f"output:{n}", "float32[B,D] L2-normalized embedding")
    for k, v in md.items():
        if k not in _STANDARD_META and not k.startswith(("input:", "output:")):
            ml.user_defined_metadata[k] = v if isinstance(v, str) else json.dumps(v)


class CoreMLRunner:
    """MLModel.predict on macOS (vendor runtime; compute units from the artifact)."""

    runtime = "coreml"
    emulated = False

    def __init__(self, artifact: Artifact, threads: int = 2):
        import coremltools as ct

        self.threads, self.path = threads, Path(artifact.path)
        cu = artifact.extra.get("compute_units", "ALL")
        with Stopwatch() as sw:
            self._m = ct.models.MLModel(str(artifact.path), compute_units=getattr(ct.ComputeUnit, cu))
        self.load_ms = sw.ms
        self.input_names, self.output_names = artifact.input_names, artifact.output_names
        self.dtypes = artifact.input_dtypes

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        xs = io_arrays(inputs, self.dtypes)
        try:
            out = self._m.predict(dict(zip(self.input_names, xs)))
        except Exception as e:
            raise ExportError(f"coreml: running {self.path.name} failed: {one_line(e)}") from e
        return np.asarray(out[self.output_names[0]], dtype=np.float32)


class CoreMLBackend:
    name = "coreml"
    formats = (".mlpackage",)
    quant_modes = ("fp32", "fp16", "int8-weight", "pal4", "pal6", "pal8", "w8a8")

    def available(self) -> str | None:
        return probe(("coremltools",), "coreml")

    def export(self, tower, example: tuple, spec: ExportSpec, out_dir: Path) -> Artifact:
        import torch

        method = resolve_method(self, spec)
        ct = require("coremltools", "coreml")
        target_name, target = _target(ct, spec)
        prec = _precision(spec, method.key)
        cu = str(spec.options.get("compute_units", "ALL"))
        if not hasattr(ct.ComputeUnit, cu):
            raise ConfigError(f"coreml: compute_units={cu!r}; allowed: ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE")
        _validate(ct, method, target)
        tower = tower.eval()
        ex = as_tensors(example)
        cal = calibration_tensors(spec, ex, method)
        notes: list[str] = []
        not_q: list[str] = []
        in_names = names_for(spec.input_names, len(ex), "input")
        out_names = names_for(spec.output_names, 1, "output")
        fp32_types = {m for t in (method.overrides.float_types() if prec == "fp16" else ())
                      for m in _MIL_TYPES.get(t, ())}
        precision = (ct.precision.FLOAT32 if prec == "fp32" else
                     ct.transform.FP16ComputePrecision(op_selector=lambda op: op.op_type not in fp32_types))
        if fp32_types:
            notes.append(f"kept in fp32 compute: {', '.join(sorted(fp32_types))}")
        if method.key == "fp16" and method.overrides.float_names():
            notes.append("op_name overrides cannot pin CoreML compute precision (MIL op names are not "
                         "module paths); use op_type overrides for fp32 compute")
        try:
            with torch.no_grad():
                out = tower(*ex)
                if method.key == "w8a8":
                    from ._coreml_w8a8 import w8a8_traced

                    program, not_q = w8a8_traced(tower, ex, cal, method, notes)
                else:
                    program = torch.export.export(tower, ex, strict=False).run_decompositions({})
            ml = ct.convert(
                program, convert_to="mlprogram", minimum_deployment_target=target,
                compute_precision=precision, compute_units=getattr(ct.ComputeUnit, cu),
                inputs=[ct.TensorType(name=n, shape=tuple(x.shape), dtype=_input_dtype(x))
                        for n, x in zip(in_names, ex)],
                outputs=[ct.TensorType(name=out_names[0], dtype=np.float32)],
                skip_model_load=True,
            )
            paths = _const_paths(tower)
            if method.key in ("int8-weight", "pal4", "pal6", "pal8"):
                ml = _compress(ml, method, paths, notes)
            if method.key not in ("fp32", "fp16"):
                threshold = getattr(method, "weight_threshold", 0)
                not_q += [_path_of(n, paths) or n for n, _, _ in _weight_consts(ml._mil_program, 0)]
                if threshold:
                    notes.append(f"weights under {threshold} elements stay float (weight_threshold)")
            _apply_metadata(ml, spec, in_names, out_names)
        except EdgeclipError:
            raise
        except Exception as e:
            raise export_error(self.name, spec, "ct.convert/compression", e) from e
        with atomic_path(out_dir, spec.name, ".mlpackage") as (tmp, final):
            ml.save(str(tmp))
        ops = mil_op_types(final)
        return Artifact(
            path=final, backend=self.name, tower=spec.tower, quant=spec.quant,
            input_names=in_names, output_names=out_names,
            input_shapes=[list(x.shape) for x in ex], input_dtypes=[str(x.numpy().dtype) for x in ex],
            output_shapes=[list(out.shape)], output_dtypes=["float32"],
            delegated_fraction=None,  # the OS picks CPU/GPU/ANE per op at load time
            not_quantized=sorted(set(not_q)), notes=notes,
            extra={"quant_config": method.to_dict(), "compute_precision": prec,
                   "minimum_deployment_target": target_name, "compute_units": cu,
                   "mil_ops": dict(sorted(ops.items())),
                   "compression_ops": sorted(o for o in ops if o in COMPRESSION_OPS)},
        )

    def why_no_runner(self, artifact: Artifact) -> str | None:
        if not IS_MACOS:
            return "CoreML models run only on macOS/iOS; use edgeclip.verify's MIL interpreter here"
        return self.available()

    def runner(self, artifact: Artifact, threads: int = 2) -> CoreMLRunner | None:
        why = self.why_no_runner(artifact)
        if why:
            log.info("coreml: no runner: %s", why)
            return None
        try:
            return CoreMLRunner(artifact, threads)
        except Exception as e:
            raise ExportError(f"coreml: cannot load {artifact.path}: {e}; re-export it") from e

    def start_runtime(self) -> None:
        import importlib

        importlib.import_module("coremltools")
