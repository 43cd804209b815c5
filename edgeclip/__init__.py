"""edgeclip: compile CLIP-style image-text models into verified on-device artifacts.

Public entry points live in their parts (DESIGN.md "Parts"): ``edgeclip.config`` (recipes and
targets), ``edgeclip.models`` (zoo and export-ready towers), ``edgeclip.backends`` (CoreML,
ExecuTorch, LiteRT, ONNX), ``edgeclip.verify``, ``edgeclip.build`` (the build itself),
``edgeclip.bundle`` and ``edgeclip.commands`` (one module per CLI verb). Importing this package
imports no toolchain.
"""
__version__ = "0.1.0"
__all__ = ["__version__", "tool_versions", "TOOL_PACKAGES"]

# the packages whose versions change what a build produces (stage keys) or measures (reports)
TOOL_PACKAGES = ("torch", "executorch", "coremltools", "litert-torch", "ai-edge-litert", "onnxruntime", "onnx")


def tool_versions() -> dict:
    """``{"edgeclip": ..., package: version or None}`` for every package of ``TOOL_PACKAGES``."""
    from importlib import metadata
    out = {"edgeclip": __version__}
    for pkg in TOOL_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
