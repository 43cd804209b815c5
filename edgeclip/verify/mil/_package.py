"""Read an ``.mlpackage`` (or a bare ``.mlmodel`` spec) into a plain, numpy-valued MIL program.

``Manifest.json`` names the root model item (``Data/com.apple.CoreML/model.mlmodel``, a
``coremltools.proto.Model_pb2.Model``); its ``mlProgram`` holds functions whose one block
specialization (keyed by the opset, e.g. ``CoreML7``) lists the ops in execution order. Const
values are immediate (proto tensors, sub-byte and fp16 data packed in ``bytes``) or
``blobFileValue`` references into ``weights/weight.bin`` (see ``_blob``).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ExportError
from ._blob import BlobFile, unpack_bits

__all__ = ["Program", "Function", "Op", "Var", "load_program", "DTYPES", "SUB_BYTE"]

# MIL DataType enum value -> dtype name (coremltools.proto.MIL_pb2.DataType)
DTYPES = {1: "bool", 2: "string", 10: "fp16", 11: "fp32", 12: "fp64", 13: "bf16", 21: "int8",
          22: "int16", 23: "int32", 24: "int64", 25: "int4", 31: "uint8", 32: "uint16",
          33: "uint32", 34: "uint64", 35: "uint4", 36: "uint2", 37: "uint1", 38: "uint6", 39: "uint3"}
SUB_BYTE = {"int4": 4, "uint4": 4, "uint2": 2, "uint1": 1, "uint6": 6, "uint3": 3}
_NP = {"bool": np.bool_, "fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8,
       "int16": np.int16, "int32": np.int32, "int64": np.int64, "uint8": np.uint8, "uint16": np.uint16,
       "uint32": np.uint32, "uint64": np.uint64, "int4": np.int8, **{k: np.uint8 for k in SUB_BYTE if k[0] == "u"}}


@dataclass(frozen=True)
class Var:
    """A named, typed value: ``dtype`` a name of ``DTYPES``; ``shape`` None dims where unknown."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]





@dataclass
class Op:
    """One operation: inputs are lists (variadic ``concat.values``) of var names or values."""

    type: str
    index: int
    function: str
    inputs: dict[str, list[Any]]
    outputs: list[Var]
    attrs: dict[str, Any]
    nested: int = 0   # number of nested blocks (control flow; not supported by the interpreter)

    @property
    def location(self) -> str:
        out = self.outputs[0].name if self.outputs else "?"
        return f"function {self.function!r}, op #{self.index}, output {out!r}"


@dataclass
class Function:
    name: str
    opset: str
    inputs: list[Var]
    outputs: list[str]
    ops: list[Op]


@dataclass
class Program:
    path: Path
    spec_version: int
    functions: dict[str, Function]
    output_names: list[str] = field(default_factory=list)  # model description order
    weights: BlobFile | None = None

    @property
    def main(self) -> Function:
        if "main" not in self.functions:
            raise ExportError(f"{self.path}: the MIL program has no 'main' function "
                              f"(has {', '.join(self.functions) or 'none'}); re-export the model")
        return self.functions["main"]


def _spec_path(path: Path) -> tuple[Path, Path]:
    """(model.mlmodel, weights dir) of a package directory or a bare spec file."""
    if path.is_file():
        return path, path.parent / "weights"
    manifest = path / "Manifest.json"
    if not manifest.is_file():
        raise ExportError(f"{path} is not an .mlpackage (no Manifest.json); pass the package directory")
    try:
        info = json.loads(manifest.read_text())
        item = info["itemInfoEntries"][info["rootModelIdentifier"]]
        spec = path / "Data" / item["path"]
    except (ValueError, KeyError, TypeError) as e:
        raise ExportError(f"{manifest} is malformed ({type(e).__name__}: {e}); re-export the model") from e
    if not spec.is_file():
        raise ExportError(f"{path}: the model spec {spec} named by Manifest.json is missing; re-export it")
    return spec, spec.parent / "weights"


def _tensor_type(vt) -> tuple[str, tuple[int | None, ...]]:
    kind = vt.WhichOneof("type")
    if kind != "tensorType":
        raise ExportError(f"MIL value type {kind!r} is not supported by the interpreter (tensors only)")
    tt = vt.tensorType
    dims = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in tt.dimensions)
    return DTYPES.get(tt.dataType, f"dtype{tt.dataType}"), dims


def _immediate(tv, dtype: str, shape: tuple) -> Any:
    which = tv.WhichOneof("value")
    count = int(np.prod(shape)) if shape else 1
    if which == "strings":
        vals = list(tv.strings.values)
        return vals[0] if not shape else np.array(vals, dtype=object).reshape(shape)
    if which == "bytes":
        raw = np.frombuffer(tv.bytes.values, dtype=np.uint8)
        if dtype in SUB_BYTE:
            arr = unpack_bits(raw, SUB_BYTE[dtype], count, signed=dtype.startswith("int"))
        elif dtype in _NP:
            arr = raw.view(np.dtype(_NP[dtype]).newbyteorder("<"))[:count]
        else:
            raise ExportError(f"MIL constant of dtype {dtype!r} is not supported by the interpreter")
    else:
        src = {"floats": tv.floats, "ints": tv.ints, "bools": tv.bools, "longInts": tv.longInts,
               "doubles": tv.doubles}[which].values
        arr = np.array(src, dtype=_NP.get(dtype, np.float32))
    return arr.reshape(shape).astype(_NP.get(dtype, arr.dtype), copy=False)


def _value(v, weights_dir: Path, blobs: dict[str, BlobFile]) -> Any:
    dtype, shape = _tensor_type(v.type)
    if None in shape:
        raise ExportError(f"a MIL constant has an unknown dimension {shape}; re-export with fixed shapes")
    if v.WhichOneof("value") == "immediateValue":
        iv = v.immediateValue
        if iv.WhichOneof("value") != "tensor":
            raise ExportError(f"MIL immediate value kind {iv.WhichOneof('value')!r} is not supported")
        return _immediate(iv.tensor, dtype, shape)
    fname = v.blobFileValue.fileName.split("/")[-1]
    if fname not in blobs:
        blobs[fname] = BlobFile(weights_dir / fname)
    arr = blobs[fname].read(int(v.blobFileValue.offset), dtype, int(np.prod(shape)) if shape else 1)
    return arr.reshape(shape)


def _op(fn_name: str, i: int, o, weights_dir: Path, blobs: dict) -> Op:
    inputs = {key: [b.name if b.WhichOneof("binding") == "name" else _value(b.value, weights_dir, blobs)
                    for b in arg.arguments] for key, arg in o.inputs.items()}
    outs = [Var(nv.name, *_tensor_type(nv.type)) if nv.type.WhichOneof("type") == "tensorType"
            else Var(nv.name, nv.type.WhichOneof("type"), ()) for nv in o.outputs]
    attrs = {k: _value(v, weights_dir, blobs) for k, v in o.attributes.items()}
    return Op(o.type, i, fn_name, inputs, outs, attrs, nested=len(o.blocks))


def _ops(fn_name: str, block, weights_dir: Path, blobs: dict) -> list[Op]:
    ops = []
    for i, o in enumerate(block.operations):
        try:
            ops.append(_op(fn_name, i, o, weights_dir, blobs))
        except ExportError as e:  # say which op's value could not be read
            out = o.outputs[0].name if o.outputs else "?"
            raise ExportError(f"{e} (reading {o.type} at function {fn_name!r}, op #{i}, output {out!r})") from e
    return ops


def _model_pb2():
    """coremltools' ``Model_pb2`` module without importing all of coremltools.

    ``import coremltools`` pulls in its converters and torch (15 s of CPU here); the generated
    proto modules need only protobuf, so when coremltools is not loaded yet they are loaded from
    its ``proto`` folder under a private package name (same descriptors, so both coexist).
    """
    if "coremltools.proto.Model_pb2" in sys.modules:
        return sys.modules["coremltools.proto.Model_pb2"]
    private = "_edgeclip_coreml_proto"
    try:
        if private not in sys.modules:
            spec = importlib.util.find_spec("coremltools")
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("coremltools is not installed")
            folder = Path(next(iter(spec.submodule_search_locations))) / "proto"
            pkg = importlib.util.spec_from_file_location(private, folder / "__init__.py",
                                                         submodule_search_locations=[str(folder)])
            module = importlib.util.module_from_spec(pkg)
            sys.modules[private] = module
            pkg.loader.exec_module(module)
        return importlib.import_module(f"{private}.Model_pb2")
    except Exception:  # noqa: BLE001 - fall back to the ordinary, slower import
        sys.modules.pop(private, None)
        from coremltools.proto import Model_pb2

        return Model_pb2


def load_program(path: str | Path) -> Program:
    """Parse a saved CoreML ML Program (``.mlpackage`` dir or ``model.mlmodel``) with its weights."""
    try:
        Model_pb2 = _model_pb2()
    except Exception as e:  # noqa: BLE001 - ImportError or a broken native library
        from ...errors import ToolchainMissing

        raise ToolchainMissing(f"reading CoreML packages needs coremltools ({e}); "
                               "pip install 'edgeclip[coreml]'") from e
    path = Path(path)
    spec_file, weights_dir = _spec_path(path)
    model = Model_pb2.Model()
    try:
        model.ParseFromString(spec_file.read_bytes())
    except Exception as e:  # protobuf DecodeError
        raise ExportError(f"{spec_file} is not a CoreML model spec ({type(e).__name__}: {e}); re-export it") from e
    if model.WhichOneof("Type") != "mlProgram":
        raise ExportError(f"{path} holds a {model.WhichOneof('Type')!r} model, not an mlprogram; "
                          "export with convert_to='mlprogram'")
    blobs: dict[str, BlobFile] = {}
    functions = {}
    for name, f in model.mlProgram.functions.items():
        if f.opset not in f.block_specializations:
            raise ExportError(f"{path}: function {name!r} has no block for its opset {f.opset!r}")
        block = f.block_specializations[f.opset]
        inputs = [Var(nv.name, *_tensor_type(nv.type)) for nv in f.inputs]
        functions[name] = Function(name, f.opset, inputs, list(block.outputs),
                                   _ops(name, block, weights_dir, blobs))
    out_names = [o.name for o in model.description.output]
    return Program(path, model.specificationVersion, functions, out_names,
                   next(iter(blobs.values()), None))
