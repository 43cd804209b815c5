"""Quantization method configs, per-layer overrides and calibration helpers (toolchain-free).

``make_method("pal4", {"granularity": "per_grouped_channel"}, {"op_name": {"ln_final": "fp32"}})``
returns a validated frozen config; a backend applies it with its own quantizer.
"""
from __future__ import annotations

from .calibration import (CLIP_MEAN, CLIP_STD, batches, canonical, check_calibration, image_batches,
                          preprocess_image, token_batches)
from .methods import (QUANT_METHODS, Fp16Config, Fp32Config, Int8DynAct4WeightConfig,
                      Int8DynamicConfig, Int8StaticConfig, Int8WeightConfig, Pal4Config,
                      Pal6Config, Pal8Config, QuantMethod, W8A8Config, make_method)
from .overrides import OP_TYPES, Overrides

__all__ = [
    "QUANT_METHODS", "QuantMethod", "make_method", "Overrides", "OP_TYPES",
    "Fp32Config", "Fp16Config", "Int8DynamicConfig", "Int8StaticConfig", "Int8WeightConfig",
    "Pal4Config", "Pal6Config", "Pal8Config", "W8A8Config", "Int8DynAct4WeightConfig",
    "CLIP_MEAN", "CLIP_STD", "preprocess_image", "image_batches", "token_batches", "batches",
    "check_calibration", "canonical",
]
