"""edgeclip: compile CLIP-style image-text models into verified on-device artifacts.

Public entry points live in their parts: ``edgeclip.config`` (recipes and targets),
``edgeclip.models`` (zoo and export-ready towers), ``edgeclip.backends`` (CoreML, ExecuTorch,
LiteRT, ONNX), ``edgeclip.verify`` and ``edgeclip.pipeline``. Importing this package imports
no toolchain.
"""
__version__ = "0.1.0"
__all__ = ["__version__"]
