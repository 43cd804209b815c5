"""The canonical names of DESIGN.md "Contracts": every part spells them from here, and the one
parser of model URIs (``SCHEME:REST``) that recipes and the zoo share."""
from __future__ import annotations

from ..errors import ConfigError

__all__ = ["BACKENDS", "QUANT_MODES", "TOWERS", "TEACHER_SCHEMES", "DISTILL_METHODS", "FORMATS",
           "STUDENT_SHAPE_KEYS", "ARM64_CORES", "parse_model_uri", "parse_device_spec"]

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


# The ARM cores the ARM64 twin emulates (qemu -cpu names; verify/arm64/cores.py has each one's MIDR
# and features); the first is the default: a dot-product phone core.
ARM64_CORES = ("cortex-a76", "cortex-a55", "cortex-a53", "cortex-a72")


def parse_device_spec(spec: str) -> tuple[str, str]:
    """A target's timing device: ``arm64:cortex-a76`` (a bare ``arm64``: the default core) ->
    ``('arm64', 'cortex-a76')``; anything else is a ConfigError that lists the choices."""
    kind, _, core = str(spec).partition(":")
    if kind != "arm64":
        raise ConfigError(f"device {spec!r}: write arm64:CORE with CORE one of {', '.join(ARM64_CORES)} "
                          "(a phone over adb is chosen at bench time: edgeclip bench --device adb:SERIAL)")
    core = core or ARM64_CORES[0]
    if core not in ARM64_CORES:
        raise ConfigError(f"device {spec!r}: unknown core {core!r}; known: {', '.join(ARM64_CORES)}")
    return kind, core


def parse_model_uri(uri: str) -> tuple[str, str]:
    """``'openclip:ViT-B-32/laion2b_s34b_b79k'`` -> ``('openclip', 'ViT-B-32/laion2b_s34b_b79k')``."""
    scheme, sep, rest = str(uri).partition(":")
    if not sep or scheme not in TEACHER_SCHEMES or not rest:
        raise ConfigError(
            f"model URI {uri!r} must be SCHEME:NAME with SCHEME one of {', '.join(TEACHER_SCHEMES)} "
            "(e.g. openclip:ViT-B-32/laion2b_s34b_b79k, hf:wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M, "
            "file:student.safetensors, builtin:teacher-vit)"
        )
    return scheme, rest
