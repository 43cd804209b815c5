"""The canonical names of DESIGN.md "Contracts": every part spells them from here."""
from __future__ import annotations

__all__ = ["BACKENDS", "QUANT_MODES", "TOWERS", "TEACHER_SCHEMES", "DISTILL_METHODS", "FORMATS",
           "STUDENT_SHAPE_KEYS"]

BACKENDS = ("coreml", "executorch", "litert", "onnx")
FORMATS = {"coreml": ".mlpackage", "executorch": ".pte", "litert": ".tflite", "onnx": ".onnx"}
QUANT_MODES = (
    "fp32", "fp16", "int8-dynamic", "int8-static", "int8-weight",
    "pal4", "pal6", "pal8", "w8a8", "8da4w",
)
TOWERS = ("image", "text", "zero-shot-head")
TEACHER_SCHEMES = ("openclip", "hf", "file", "builtin")
DISTILL_METHODS = ("tinyclip", "mobileclip", "dcclip")

# What a recipe may set on a student tower that inherits from its teacher (models/inherit.py).
STUDENT_SHAPE_KEYS = ("layers", "width", "heads", "mlp_ratio", "embed_dim", "patch_size")
