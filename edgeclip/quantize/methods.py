"""One frozen, validated config class per quantization mode of ``edgeclip.config.names.QUANT_MODES``.

Toolchain-free: these say *what* to do; each backend applies them with its own quantizer
(coremltools.optimize, PT2E/torchao, ai-edge-quantizer, onnxruntime.quantization) and records
in ``Artifact.not_quantized`` whatever it could not apply.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from ..errors import ConfigError
from ..registry import Registry
from .overrides import Overrides

__all__ = [
    "QuantMethod", "Fp32Config", "Fp16Config", "Int8DynamicConfig", "Int8StaticConfig",
    "Int8WeightConfig", "Pal4Config", "Pal6Config", "Pal8Config", "W8A8Config",
    "Int8DynAct4WeightConfig", "QUANT_METHODS", "make_method",
]

QUANT_METHODS: Registry[type["QuantMethod"]] = Registry("quantization method")


def _choice(cls_key: str, name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{cls_key}: {name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}"
        )


def _positive_int(cls_key: str, name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{cls_key}: {name}={value!r} must be a positive integer")


def _non_negative_int(cls_key: str, name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{cls_key}: {name}={value!r} must be an integer >= 0")


def _bool(cls_key: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{cls_key}: {name}={value!r} must be true or false")


@dataclass(frozen=True)
class QuantMethod:
    """Base: the mode key, whether it needs calibration data, and per-layer overrides."""

    key: ClassVar[str] = ""
    needs_calibration: ClassVar[bool] = False
    weight_bits: ClassVar[int] = 32
    activation_bits: ClassVar[int] = 32
    overrides: Overrides = field(default_factory=Overrides)

    def __post_init__(self):
        if isinstance(self.overrides, Mapping):
            object.__setattr__(self, "overrides", Overrides.from_dict(self.overrides))
        elif not isinstance(self.overrides, Overrides):
            raise ConfigError(f"{self.key}: overrides must be a mapping with op_type/op_name, got {self.overrides!r}")
        self.validate()

    def validate(self) -> None:
        """Subclasses check their fields; every failure is a ConfigError naming the field."""

    @property
    def is_float(self) -> bool:
        return self.weight_bits >= 16 and self.activation_bits >= 16

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "overrides"}
        d["overrides"] = self.overrides.to_dict()
        return {"method": self.key, **d}


def _register(cls):
    QUANT_METHODS.register(cls.key, cls)
    return cls


@_register
@dataclass(frozen=True)
class Fp32Config(QuantMethod):
    """No quantization: float32 weights and compute."""

    key: ClassVar[str] = "fp32"


@_register
@dataclass(frozen=True)
class Fp16Config(QuantMethod):
    """Float16 weights (and compute where the runtime has fp16 kernels)."""

    key: ClassVar[str] = "fp16"
    weight_bits: ClassVar[int] = 16
    activation_bits: ClassVar[int] = 16


@_register
@dataclass(frozen=True)
class Int8DynamicConfig(QuantMethod):
    """int8 weights; activations quantized at run time per batch (no calibration)."""

    key: ClassVar[str] = "int8-dynamic"
    weight_bits: ClassVar[int] = 8
    activation_bits: ClassVar[int] = 8
    per_channel: bool = True
    # 7-bit weight range: avoids u8*s8 saturation on x86 CPUs without VNNI (onnxruntime);
    # None lets the backend choose.
    reduce_range: bool | None = None

    def validate(self):
        _bool(self.key, "per_channel", self.per_channel)
        if self.reduce_range is not None:
            _bool(self.key, "reduce_range", self.reduce_range)


@_register
@dataclass(frozen=True)
class Int8StaticConfig(QuantMethod):
    """int8 weights and activations; activation ranges come from calibration samples."""

    key: ClassVar[str] = "int8-static"
    needs_calibration: ClassVar[bool] = True
    weight_bits: ClassVar[int] = 8
    activation_bits: ClassVar[int] = 8
    per_channel: bool = True
    observer: str = "histogram"
    min_calibration_samples: int = 1

    def validate(self):
        _bool(self.key, "per_channel", self.per_channel)
        _choice(self.key, "observer", self.observer, ("minmax", "histogram"))
        _positive_int(self.key, "min_calibration_samples", self.min_calibration_samples)


@_register
@dataclass(frozen=True)
class Int8WeightConfig(QuantMethod):
    """Weight-only int8 (linear/affine); compute stays float."""

    key: ClassVar[str] = "int8-weight"
    weight_bits: ClassVar[int] = 8
    granularity: str = "per_channel"
    block_size: int = 32
    weight_threshold: int = 2048  # weights with fewer elements stay float (CoreML's default)

    def validate(self):
        _choice(self.key, "granularity", self.granularity, ("per_tensor", "per_channel", "per_block"))
        _positive_int(self.key, "block_size", self.block_size)
        _non_negative_int(self.key, "weight_threshold", self.weight_threshold)


@dataclass(frozen=True)
class _PalettizeConfig(QuantMethod):
    """Weights replaced by an n-bit index into a lookup table (k-means or uniform)."""

    nbits: ClassVar[int] = 8
    weight_bits: ClassVar[int] = 8
    mode: str = "kmeans"
    granularity: str = "per_tensor"
    group_size: int = 16  # output channels sharing one LUT when per_grouped_channel
    weight_threshold: int = 2048

    def validate(self):
        _choice(self.key, "mode", self.mode, ("kmeans", "uniform"))
        _choice(self.key, "granularity", self.granularity, ("per_tensor", "per_grouped_channel"))
        _positive_int(self.key, "group_size", self.group_size)
        _non_negative_int(self.key, "weight_threshold", self.weight_threshold)


@_register
@dataclass(frozen=True)
class Pal4Config(_PalettizeConfig):
    key: ClassVar[str] = "pal4"
    nbits: ClassVar[int] = 4
    weight_bits: ClassVar[int] = 4


@_register
@dataclass(frozen=True)
class Pal6Config(_PalettizeConfig):
    key: ClassVar[str] = "pal6"
    nbits: ClassVar[int] = 6
    weight_bits: ClassVar[int] = 6


@_register
@dataclass(frozen=True)
class Pal8Config(_PalettizeConfig):
    key: ClassVar[str] = "pal8"
    nbits: ClassVar[int] = 8
    weight_bits: ClassVar[int] = 8


@_register
@dataclass(frozen=True)
class W8A8Config(QuantMethod):
    """int8 weights and int8 activations from calibration, quantized on the torch side."""

    key: ClassVar[str] = "w8a8"
    needs_calibration: ClassVar[bool] = True
    weight_bits: ClassVar[int] = 8
    activation_bits: ClassVar[int] = 8
    per_channel: bool = True
    min_calibration_samples: int = 1

    def validate(self):
        _bool(self.key, "per_channel", self.per_channel)
        _positive_int(self.key, "min_calibration_samples", self.min_calibration_samples)


@_register
@dataclass(frozen=True)
class Int8DynAct4WeightConfig(QuantMethod):
    """8-bit dynamic activations, 4-bit grouped weights on linear layers (torchao 8da4w)."""

    key: ClassVar[str] = "8da4w"
    weight_bits: ClassVar[int] = 4
    activation_bits: ClassVar[int] = 8
    group_size: int = 32

    def validate(self):
        _choice(self.key, "group_size", self.group_size, (16, 32, 64, 128, 256))


def make_method(key: str, params: Mapping[str, Any] | None = None,
                overrides: Mapping[str, Any] | Overrides | None = None) -> QuantMethod:
    """Build the config for ``key``; unknown parameters are a ConfigError listing valid ones."""
    cls = QUANT_METHODS.get(key)
    params = dict(params or {})
    valid = {f.name for f in dataclasses.fields(cls)} - {"overrides"}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ConfigError(
            f"{key}: unknown parameter(s) {unknown}; valid: {', '.join(sorted(valid)) or '(none)'}"
        )
    if overrides is not None:
        params["overrides"] = overrides
    return cls(**params)
