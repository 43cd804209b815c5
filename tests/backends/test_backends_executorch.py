"""ExecuTorch specifics: delegation report, CoreML partitioner, overrides, partitioner options."""
from __future__ import annotations

import numpy as np
import pytest

from edgeclip.backends import BACKENDS, ExportSpec
from edgeclip.backends.executorch import ExecuTorchRunner
from edgeclip.errors import ConfigError, ExportError
from edgeclip.quantize import make_method

from _backends_towers import make_tower

pytestmark = [pytest.mark.toolchain, pytest.mark.slow]
et = BACKENDS.get("executorch")


def test_delegation_report_names_what_xnnpack_left(exports):
    art = exports.get("executorch", "vit", "fp32").artifact
    assert art.extra["delegates"]["XnnpackBackend"] > 0
    assert 0.3 < art.delegated_fraction < 1.0
    # ExecuTorch 1.5's XNNPACK partitioner has no layer-norm support: it must be reported
    assert any(s.startswith("aten.native_layer_norm.default x") for s in art.not_delegated)
    assert not any("getitem" in s or "executorch_call_delegate" in s for s in art.not_delegated)
    n_out = sum(int(s.rsplit("x", 1)[1]) for s in art.not_delegated)
    total = art.extra["delegates"]["XnnpackBackend"] + n_out
    assert art.delegated_fraction == pytest.approx(art.extra["delegates"]["XnnpackBackend"] / total)


def test_coreml_partitioner_lowers_but_cannot_run_here(tmp_path):
    m = make_tower("conv")
    spec = ExportSpec(tower="image", options={"partitioners": ["coreml", "xnnpack"]}, name="ios")
    art = et.export(m, m.example_inputs(), spec, tmp_path)
    assert art.extra["delegates"].get("CoreMLBackend", 0) > 0 and art.path.stat().st_size > 0
    assert et.runner(art) is None
    why = et.why_no_runner(art)
    assert "CoreML" in why and "macOS" in why and "partitioners=['xnnpack']" in why
    with pytest.raises(ExportError, match="CoreML, which runs only on macOS"):
        ExecuTorchRunner(art)  # loading it directly says why instead of "error 0x20"


def test_op_name_override_keeps_a_linear_float(tmp_path, exports):
    from conftest import get_case

    case = get_case("conv")
    cfg = make_method("int8-dynamic", overrides={"op_name": {"head": "fp32"}})
    spec = ExportSpec(tower="image", quant="int8-dynamic", quant_config=cfg, name="pinned")
    art = et.export(case.tower, case.example, spec, tmp_path)
    plain = exports.get("executorch", "conv", "int8-dynamic").artifact
    assert "head" in art.not_quantized and "head" not in plain.not_quantized
    assert art.size_bytes > plain.size_bytes
    y = et.runner(art)(*case.inputs[0])
    assert np.dot(y.ravel(), case.reference[0].ravel()) > 0.99


def test_bad_partitioner_is_a_config_error(tmp_path):
    m = make_tower("conv")
    with pytest.raises(ConfigError, match="xnnpack, coreml"):
        et.export(m, m.example_inputs(), ExportSpec(tower="image", options={"partitioners": ["qnn"]}), tmp_path)
