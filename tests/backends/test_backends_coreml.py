"""CoreML specifics: deployment-target validation, iOS18 compression ops, metadata, overrides."""
from __future__ import annotations

import json

import pytest

from edgeclip.backends import BACKENDS, ExportSpec
from edgeclip.backends.coreml import mil_op_types
from edgeclip.errors import ConfigError
from edgeclip.quantize import make_method

from _backends_towers import make_tower

pytestmark = pytest.mark.toolchain
coreml = BACKENDS.get("coreml")


def _spec(quant="fp32", cfg=None, **options):
    return ExportSpec(tower="image", quant=quant, quant_config=cfg, options=options, name=f"m-{quant}")


def _op_dtypes(path, op_type):
    """Output data types of every ``op_type`` op in a saved mlpackage's MIL program."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    out = []
    for f in spec.mlProgram.functions.values():
        for b in f.block_specializations.values():
            for op in b.operations:
                if op.type == op_type:
                    out += [o.type.tensorType.dataType for o in op.outputs]
    return out


@pytest.mark.parametrize("quant,params", [
    ("pal4", {"granularity": "per_grouped_channel", "group_size": 8}),
    ("int8-weight", {"granularity": "per_block", "block_size": 16}),
])
def test_ios18_only_compression_is_refused_before_conversion(quant, params, tmp_path, monkeypatch):
    import coremltools as ct

    def must_not_convert(*a, **k):
        raise AssertionError("ct.convert ran before the deployment target was validated")

    monkeypatch.setattr(ct, "convert", must_not_convert)
    m = make_tower("vit")
    with pytest.raises(ConfigError, match="iOS18"):
        coreml.export(m, m.example_inputs(), _spec(quant, make_method(quant, params),
                                                   minimum_deployment_target="iOS17"), tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("quant,params,op", [
    ("pal4", {"granularity": "per_grouped_channel", "group_size": 8}, "constexpr_lut_to_dense"),
    ("int8-weight", {"granularity": "per_block", "block_size": 16}, "constexpr_blockwise_shift_scale"),
    ("int8-weight", {}, "constexpr_blockwise_shift_scale"),
])
def test_ios18_compression_ops(quant, params, op, tmp_path):
    m = make_tower("vit")
    art = coreml.export(m, m.example_inputs(), _spec(quant, make_method(quant, params),
                                                     minimum_deployment_target="iOS18"), tmp_path)
    ops = mil_op_types(art.path)
    assert ops[op] > 0 and op in art.extra["compression_ops"]
    assert art.extra["minimum_deployment_target"] == "iOS18"


def test_metadata_and_io_descriptions_are_in_the_package(tmp_path):
    import coremltools as ct

    m = make_tower("vit")
    pre = {"size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "resize": "squash"}
    spec = ExportSpec(tower="image", input_names=("pixel_values",), output_names=("image_embeds",),
                      metadata={"author": "edge team", "license": "MIT", "description": "tiny vit",
                                "version": "1.2", "preprocessing": pre,
                                "input:pixel_values": "normalized RGB"}, name="meta")
    art = coreml.export(m, m.example_inputs(), spec, tmp_path)
    s = ct.utils.load_spec(str(art.path))
    md = s.description.metadata
    assert (md.author, md.license, md.shortDescription, md.versionString) == ("edge team", "MIT", "tiny vit", "1.2")
    assert json.loads(md.userDefined["preprocessing"]) == pre
    assert [i.name for i in s.description.input] == ["pixel_values"]
    assert s.description.input[0].shortDescription == "normalized RGB"
    assert [o.name for o in s.description.output] == ["image_embeds"]
    assert "L2-normalized" in s.description.output[0].shortDescription
    # fixed shapes and float32 I/O even with fp16 compute
    arr = s.description.input[0].type.multiArrayType
    assert list(arr.shape) == [1, 3, 32, 32] and arr.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert s.description.output[0].type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert art.extra["compute_precision"] == "fp32"  # quant fp32 -> fp32 compute by default


def test_fp16_compute_with_softmax_pinned_to_fp32(tmp_path):
    import coremltools as ct

    FP16, FP32 = ct.proto.MIL_pb2.DataType.FLOAT16, ct.proto.MIL_pb2.DataType.FLOAT32
    m = make_tower("text")
    plain = coreml.export(m, m.example_inputs(), _spec("fp16"), tmp_path / "a")
    cfg = make_method("fp16", overrides={"op_type": {"softmax": "fp32", "layer_norm": "fp32"}})
    pinned = coreml.export(m, m.example_inputs(), _spec("fp16", cfg), tmp_path / "b")
    assert set(_op_dtypes(plain.path, "softmax")) == {FP16}
    assert set(_op_dtypes(pinned.path, "softmax")) == {FP32}
    assert FP32 in _op_dtypes(pinned.path, "layer_norm") and set(_op_dtypes(pinned.path, "linear")) == {FP16}
    assert any("softmax" in n for n in pinned.notes)


def test_op_name_override_keeps_one_layer_uncompressed(tmp_path):
    m = make_tower("vit")
    cfg = make_method("pal6", {"weight_threshold": 0}, {"op_name": {"blocks.0.in_proj": "fp32"}})
    art = coreml.export(m, m.example_inputs(), _spec("pal6", cfg), tmp_path)
    assert "blocks.0.in_proj" in art.not_quantized, art.not_quantized
    assert not any("out_proj" in n or "mlp" in n for n in art.not_quantized)
    assert mil_op_types(art.path)["constexpr_lut_to_dense"] >= 4


def test_op_name_override_to_more_bits_palettizes_that_layer_finer(tmp_path):
    """Per-layer bits (the mixed-precision search's ``pal4+pal8xN``): an op_name override to pal8
    under pal4 gives that layer a 256-entry table, the rest 16; the file sits between the two."""
    m = make_tower("vit")
    size = {}
    for name, key, ov in [("p4", "pal4", None), ("p8", "pal8", None),
                          ("mixed", "pal4", {"op_name": {"blocks.0.in_proj": "pal8"}})]:
        art = coreml.export(m, m.example_inputs(), _spec(key, make_method(key, {"weight_threshold": 0}, ov)),
                            tmp_path / name)
        size[name] = art.size_bytes
        if name == "mixed":
            assert any("1 at pal8" in n for n in art.notes), art.notes
            assert "blocks.0.in_proj" not in art.not_quantized  # palettized, only finer
    assert size["p4"] < size["mixed"] < size["p8"], size


def test_bad_options_are_config_errors(tmp_path):
    m = make_tower("conv")
    for opts, needle in [({"minimum_deployment_target": "iOS99"}, "iOS99"),
                         ({"compute_precision": "int4"}, "compute_precision"),
                         ({"compute_units": "NPU"}, "compute_units")]:
        with pytest.raises(ConfigError, match=needle):
            coreml.export(m, m.example_inputs(), _spec("fp32", **opts), tmp_path)
    with pytest.raises(ConfigError, match="contradicts"):
        coreml.export(m, m.example_inputs(), _spec("fp16", compute_precision="fp32"), tmp_path)
