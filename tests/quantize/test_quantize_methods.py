"""Quantization method configs: one per mode, validated on construction, overrides resolved."""
from __future__ import annotations

import dataclasses

import pytest

from edgeclip.errors import ConfigError
from edgeclip.config.names import QUANT_MODES
from edgeclip.quantize import (OP_TYPES, QUANT_METHODS, Int8StaticConfig, Overrides, Pal4Config,
                               QuantMethod, make_method)


def test_one_config_class_per_quant_mode():
    assert sorted(QUANT_METHODS.names()) == sorted(QUANT_MODES)
    classes = [QUANT_METHODS.get(k) for k in QUANT_MODES]
    assert len(set(classes)) == len(QUANT_MODES)
    for key, cls in zip(QUANT_MODES, classes):
        m = cls()
        assert m.key == key and isinstance(m, QuantMethod)
        assert m.to_dict()["method"] == key
        assert m.is_float == (key in ("fp32", "fp16"))


@pytest.mark.parametrize("key", QUANT_MODES)
def test_configs_are_frozen(key):
    m = make_method(key)
    field = next(iter(dataclasses.fields(m)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(m, field.name, None)


def test_calibration_and_bit_widths():
    needs = {k for k in QUANT_MODES if QUANT_METHODS.get(k).needs_calibration}
    assert needs == {"int8-static", "w8a8"}
    bits = {k: (QUANT_METHODS.get(k).weight_bits, QUANT_METHODS.get(k).activation_bits) for k in QUANT_MODES}
    assert bits["pal4"] == (4, 32) and bits["pal6"] == (6, 32) and bits["pal8"] == (8, 32)
    assert bits["8da4w"] == (4, 8) and bits["int8-weight"] == (8, 32) and bits["w8a8"] == (8, 8)


@pytest.mark.parametrize("key,params,field,allowed", [
    ("pal4", {"granularity": "per_row"}, "granularity", "'per_tensor', 'per_grouped_channel'"),
    ("pal6", {"mode": "random"}, "mode", "'kmeans', 'uniform'"),
    ("pal8", {"group_size": 0}, "group_size", "positive integer"),
    ("int8-weight", {"granularity": "per_group"}, "granularity", "'per_tensor', 'per_channel', 'per_block'"),
    ("int8-weight", {"weight_threshold": -1}, "weight_threshold", ">= 0"),
    ("int8-static", {"observer": "ema"}, "observer", "'minmax', 'histogram'"),
    ("int8-static", {"min_calibration_samples": 0}, "min_calibration_samples", "positive"),
    ("int8-dynamic", {"per_channel": "yes"}, "per_channel", "true or false"),
    ("8da4w", {"group_size": 48}, "group_size", "16, 32, 64, 128, 256"),
    ("w8a8", {"per_channel": 1}, "per_channel", "true or false"),
])
def test_bad_values_name_field_value_and_allowed(key, params, field, allowed):
    with pytest.raises(ConfigError) as e:
        make_method(key, params)
    msg = str(e.value)
    assert key in msg and field in msg and repr(next(iter(params.values()))) in msg and allowed in msg


def test_unknown_parameter_and_unknown_method():
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['nbits'\]; valid: granularity, group_size"):
        make_method("pal4", {"nbits": 3})
    with pytest.raises(ConfigError, match="known: 8da4w, fp16, fp32"):
        make_method("int4")


def test_valid_parameters_are_kept():
    m = make_method("pal4", {"granularity": "per_grouped_channel", "group_size": 8, "mode": "uniform"})
    assert isinstance(m, Pal4Config) and (m.granularity, m.group_size, m.mode, m.nbits) == (
        "per_grouped_channel", 8, "uniform", 4)
    s = make_method("int8-static", {"observer": "minmax", "per_channel": False})
    assert isinstance(s, Int8StaticConfig) and s.observer == "minmax" and s.per_channel is False


def test_overrides_resolve_global_then_type_then_name():
    o = Overrides.from_dict({"op_type": {"softmax": "fp32", "linear": "int8-weight"},
                             "op_name": {"ln_final": "fp32", "blocks.*.mlp": "fp16", "head": "int8-static"}})
    g = "int8-static"
    assert o.resolve(g) == g
    assert o.resolve(g, "conv", "stem.0") == g                     # global
    assert o.resolve(g, "softmax", "blocks.0.attn") == "fp32"      # op type
    assert o.resolve(g, "linear", "blocks.0.in_proj") == "int8-weight"
    assert o.resolve(g, "linear", "blocks.3.mlp.0") == "fp16"      # op name beats op type
    assert o.resolve(g, "layer_norm", "ln_final") == "fp32"
    assert o.resolve(g, "linear", "head") == "int8-static"         # a name may restore the global
    assert o.float_types() == {"softmax"} and sorted(o.float_names()) == ["blocks.*.mlp", "ln_final"]


@pytest.mark.parametrize("pattern,name,hit", [
    ("proj", "proj", True), ("proj", "text.proj", True), ("proj", "blocks.0.in_proj", False),
    ("blocks.1", "blocks.10.mlp", False), ("blocks.1", "blocks.1.mlp.0", True),
    ("blocks.*.mlp", "blocks.11.mlp.2", True), ("blocks.0.mlp.*", "blocks.0.mlp", False),
    ("ln_*", "ln_final", True), ("ln_*", "kln_final", False),
])
def test_op_name_patterns_match_whole_components(pattern, name, hit):
    assert Overrides.name_matches(pattern, name) is hit


def test_bad_overrides_are_config_errors():
    with pytest.raises(ConfigError, match="op_type 'attention' is unknown; allowed: " + ", ".join(OP_TYPES[:2])):
        Overrides.from_dict({"op_type": {"attention": "fp32"}})
    with pytest.raises(ConfigError, match=r"op_name\['ln_final'\] = 'fp64' is not a quantization mode"):
        Overrides.from_dict({"op_name": {"ln_final": "fp64"}})
    with pytest.raises(ConfigError, match="allowed: op_type, op_name"):
        Overrides.from_dict({"layers": {}})
    with pytest.raises(ConfigError, match="overrides must be a mapping"):
        make_method("fp16", overrides=["ln_final"])


def test_overrides_round_trip_and_make_method_accepts_dicts():
    d = {"op_type": {"softmax": "fp32"}, "op_name": {"ln_final": "fp32"}}
    m = make_method("int8-dynamic", overrides=d)
    assert isinstance(m.overrides, Overrides) and m.overrides.to_dict() == d
    assert m.to_dict()["overrides"] == d and bool(m.overrides) and not bool(Overrides())
    assert hash(m) == hash(make_method("int8-dynamic", overrides=d))  # frozen and hashable
