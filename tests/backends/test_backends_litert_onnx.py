"""LiteRT and ONNX specifics: I/O names from the runtime, overrides, options, reuse."""
from __future__ import annotations

import numpy as np
import pytest

from edgeclip.backends import BACKENDS, ExportSpec
from edgeclip.errors import ConfigError
from edgeclip.quantize import make_method

from _backends_towers import make_tower

pytestmark = pytest.mark.toolchain
litert, onnx_b = BACKENDS.get("litert"), BACKENDS.get("onnx")


def test_litert_names_and_shapes_come_from_the_interpreter(exports):
    from ai_edge_litert.interpreter import Interpreter

    art = exports.get("litert", "text", "fp32").artifact
    it = Interpreter(model_path=str(art.path))
    sig = it.get_signature_list()["serving_default"]
    assert sig == {"inputs": ["input_ids"], "outputs": ["embedding"]}
    assert art.input_names == ["input_ids"] and art.input_dtypes == ["int32"]
    assert art.input_shapes == [[1, 16]] and art.output_shapes == [[1, 32]]
    assert 0.5 < art.delegated_fraction < 1.0 and any(s.startswith("ARG_MAX") for s in art.not_delegated)


def test_litert_static_keeps_float_io(exports):
    art = exports.get("litert", "vit", "int8-static").artifact
    assert art.input_dtypes == ["float32"] and art.output_dtypes == ["float32"]


def test_litert_overrides_keep_named_layers_float(tmp_path):
    from _backends_cases import get_case

    case = get_case("text")
    cfg = make_method("int8-dynamic", overrides={"op_name": {"blocks.0.mlp.*": "fp32"},
                                                 "op_type": {"embedding": "fp32"}})
    spec = ExportSpec(tower="text", quant="int8-dynamic", quant_config=cfg, name="pinned")
    art = litert.export(case.tower, case.example, spec, tmp_path)
    assert sorted(art.not_quantized) == ["EMBEDDING_LOOKUP token_embedding",
                                         "FULLY_CONNECTED blocks.0.mlp.0", "FULLY_CONNECTED blocks.0.mlp.2"]
    y = litert.runner(art)(*case.inputs[1])
    assert np.dot(y.ravel(), case.reference[1].ravel()) > 0.999


def test_litert_reuses_the_fp32_conversion_only_for_the_same_weights(tmp_path):
    import torch

    m = make_tower("conv", seed=3)
    a = litert.export(m, m.example_inputs(), ExportSpec(tower="image", name="a"), tmp_path)
    b = litert.export(m, m.example_inputs(), ExportSpec(tower="image", quant="fp16", name="b"), tmp_path)
    assert any("reused" in n for n in b.notes) and not any("reused" in n for n in a.notes)
    with torch.no_grad():
        m.head.bias += 1.0
    c = litert.export(m, m.example_inputs(), ExportSpec(tower="image", name="c"), tmp_path)
    assert not any("reused" in n for n in c.notes)
    x = np.ascontiguousarray(m.example_inputs()[0].numpy())
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    assert np.allclose(litert.runner(c)(x), ref, atol=1e-5)
    assert not np.allclose(litert.runner(a)(x), ref, atol=1e-3)


def test_litert_per_block_weight_quant_is_refused(tmp_path):
    m = make_tower("conv")
    cfg = make_method("int8-weight", {"granularity": "per_block"})
    with pytest.raises(ConfigError, match="per_block"):
        litert.export(m, m.example_inputs(), ExportSpec(tower="image", quant="int8-weight", quant_config=cfg), tmp_path)


def test_onnx_io_names_survive_an_internal_name_collision(exports):
    """The text tower has an internal value named ``embedding`` (the aten.embedding output);
    naming the graph output ``embedding`` must not produce a duplicate definition."""
    import onnx

    art = exports.get("onnx", "text", "fp32").artifact
    model = onnx.load(str(art.path))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["embedding"] and art.output_names == ["embedding"]
    assert [i.name for i in model.graph.input] == ["input_ids"]
    produced = [o for n in model.graph.node for o in n.output]
    assert len(produced) == len(set(produced)) and "embedding__internal" in produced
    assert {p.key: p.value for p in model.metadata_props}["author"] == "edgeclip tests"


def test_onnx_fp16_offered_only_with_onnxconverter_common(tmp_path):
    import importlib.util

    has = importlib.util.find_spec("onnxconverter_common") is not None
    assert ("fp16" in onnx_b.quant_modes) == has
    if not has:
        m = make_tower("conv")
        with pytest.raises(ConfigError, match="supported: fp32, int8-dynamic, int8-static"):
            onnx_b.export(m, m.example_inputs(), ExportSpec(tower="image", quant="fp16"), tmp_path)


def test_onnx_dynamic_reduce_range_and_overrides(tmp_path):
    from _backends_cases import get_case

    case = get_case("vit")
    cfg = make_method("int8-dynamic", {"reduce_range": False}, {"op_name": {"proj": "fp32"}})
    art = onnx_b.export(case.tower, case.example,
                        ExportSpec(tower="image", quant="int8-dynamic", quant_config=cfg, name="rr"), tmp_path)
    assert any("reduce_range=False" in n for n in art.notes)
    assert art.not_quantized == ["MatMul proj"]
    y = onnx_b.runner(art)(*case.inputs[2])
    assert y.shape == case.reference[2].shape and np.isfinite(y).all()


def _op_types(path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_onnx_int8_exports_the_patch_embedding_as_matmul(tmp_path, exports):
    """ConvInteger is ORT's slow path: int8 ViTs carry no Conv; fp32 keeps its Conv; a recipe
    pinning conv layers to float keeps the Conv, in float."""
    from _backends_cases import get_case

    case = get_case("vit")
    for quant in ("int8-dynamic", "int8-static"):
        art = exports.get("onnx", "vit", quant).artifact
        ops = _op_types(art.path)
        assert not {"Conv", "ConvInteger"} & ops, ops
        assert any("patch embedding conv1 exported as MatMul" in n for n in art.notes), art.notes
        y = onnx_b.runner(art)(*case.inputs[0])
        assert float(np.dot(y.ravel(), case.reference[0].ravel())) > 0.99
    assert "Conv" in _op_types(exports.get("onnx", "vit", "fp32").artifact.path)
    cfg = make_method("int8-dynamic", overrides={"op_type": {"conv": "fp32"}})
    pinned = onnx_b.export(case.tower, case.example,
                           ExportSpec(tower="image", quant="int8-dynamic", quant_config=cfg, name="pin"), tmp_path)
    assert "Conv" in _op_types(pinned.path) and "ConvInteger" not in _op_types(pinned.path)
    assert any(s.startswith("Conv ") for s in pinned.not_quantized), pinned.not_quantized


def test_onnx_dynamic_int8_leaves_a_conv_towers_convs_float(exports):
    """ORT's dynamic ConvInteger is a trap (12x slower than fp32 on MobileCLIP2-S0): int8-dynamic
    keeps every Conv float, names them as not quantized, and still quantizes the MatMuls."""
    from _backends_cases import get_case

    art = exports.get("onnx", "conv", "int8-dynamic").artifact
    ops = _op_types(art.path)
    assert "ConvInteger" not in ops and "Conv" in ops, ops
    assert any("kept float" in n and "ConvInteger" in n for n in art.notes), art.notes
    assert any(s.startswith("Conv ") for s in art.not_quantized), art.not_quantized
    case = get_case("conv")
    y = onnx_b.runner(art)(*case.inputs[0])
    assert float(np.dot(y.ravel(), case.reference[0].ravel())) > 0.99
    vit = _op_types(exports.get("onnx", "vit", "int8-dynamic").artifact.path)
    assert "MatMulInteger" in vit or "DynamicQuantizeMatMul" in vit, vit


def test_patch_matmul_equals_the_conv_and_leaves_other_convs():
    import torch
    from torch import nn

    from edgeclip.backends._patchify import PatchMatMul, patchify_patch_embeddings

    torch.manual_seed(0)
    tower = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4, bias=True), nn.Conv2d(16, 8, 1),
                          nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 2, stride=1))
    out, names = patchify_patch_embeddings(tower)
    assert names == ["0"] and isinstance(out[0], PatchMatMul)
    assert [type(m) for m in out][1:] == [nn.Conv2d] * 3 and isinstance(tower[0], nn.Conv2d)  # input untouched
    x = torch.randn(2, 3, 12, 20)
    torch.testing.assert_close(out(x), tower(x), rtol=1e-5, atol=1e-5)
    rest = tower[1:]
    same, none = patchify_patch_embeddings(rest)
    assert none == [] and same is rest


@pytest.mark.parametrize("kind", ["vit", "conv"])
def test_litert_static_int8_runs_whole_on_xnnpack(exports, kind):
    """int8-static quantizes the weight ops only: XNNPACK has no int8 layer-norm pieces,
    BATCH_MATMUL, SOFTMAX or GELU, and quantizing them left ~24% of ViT-B/32's ops undelegated
    (slower than fp32, cosine 0.979); now it leaves undelegated only what fp32 does."""
    art = exports.get("litert", kind, "int8-static").artifact
    fp32 = exports.get("litert", kind, "fp32").artifact  # the test towers' F.normalize: one POW
    assert art.not_delegated == fp32.not_delegated, (art.not_delegated, fp32.not_delegated)
    ops = _tflite_ops(art.path)
    assert {"FULLY_CONNECTED" if kind == "vit" else "CONV_2D", "QUANTIZE", "DEQUANTIZE"} <= ops, ops


def _tflite_ops(path) -> set[str]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return {o["op_name"] for o in it._get_ops_details()}


def test_litert_feeds_many_inputs_in_the_artifacts_order(tmp_path):
    """The signature lists inputs sorted by name (x0, x1, x10, x2 ...); positional inputs must
    still reach the input of their own name (a model with 11 inputs of different widths)."""
    import torch
    from torch import nn

    class Many(nn.Module):
        def forward(self, *xs):
            return torch.cat([x * (i + 1) for i, x in enumerate(xs)], 1)

    names = tuple(f"x{i}" for i in range(11))
    xs = tuple(np.full((1, i + 1), 1.0, np.float32) for i in range(11))
    art = litert.export(Many().eval(), xs, ExportSpec(tower="image", quant="fp32", name="many", input_names=names),
                        tmp_path)
    out = litert.runner(art)(*xs)
    np.testing.assert_allclose(out, np.concatenate([x * (i + 1) for i, x in enumerate(xs)], 1))
