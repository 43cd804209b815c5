"""Backend contract: registry, cheap import, quant checks, atomic writes, contiguity, errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from edgeclip.backends import BACKENDS, ExportSpec
from edgeclip.backends._common import as_tensors, atomic_path, canonical, export_error
from edgeclip.errors import ConfigError, ExportError, InputError
from edgeclip.config.names import BACKENDS as BACKEND_NAMES, FORMATS, QUANT_MODES
from edgeclip.quantize import make_method

from _backends_towers import make_tower


def test_registry_holds_every_backend_with_its_format():
    assert BACKENDS.names() == sorted(BACKEND_NAMES)
    for name, b in BACKENDS.items():
        assert b.name == name
        assert b.formats == (FORMATS[name],)
        assert set(b.quant_modes) <= set(QUANT_MODES) and "fp32" in b.quant_modes
        assert b.available() is None  # every toolchain is installed in this environment


def test_unknown_backend_lists_known_ones():
    with pytest.raises(ConfigError, match="coreml, executorch, litert, onnx"):
        BACKENDS.get("tensorrt")


def test_importing_backends_imports_no_toolchain():
    code = ("import sys, edgeclip.backends as b; [x.available() for _, x in b.BACKENDS.items()];"
            "heavy = [m for m in ('torch', 'coremltools', 'executorch', 'litert_torch', 'ai_edge_litert',"
            " 'onnxruntime', 'onnx') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("backend", sorted(BACKEND_NAMES))
def test_unsupported_quant_is_a_config_error_listing_supported(backend, tmp_path):
    b = BACKENDS.get(backend)
    missing = [q for q in QUANT_MODES if q not in b.quant_modes]
    m = make_tower("conv")
    spec = ExportSpec(tower="image", quant=missing[0])
    with pytest.raises(ConfigError) as e:
        b.export(m, m.example_inputs(), spec, tmp_path)
    assert all(q in str(e.value) for q in b.quant_modes) and missing[0] in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_tower_name_is_a_config_error(tmp_path):
    m = make_tower("conv")
    with pytest.raises(ConfigError, match="allowed: image, text, zero-shot-head"):
        BACKENDS.get("onnx").export(m, m.example_inputs(), ExportSpec(tower="vision"), tmp_path)


def test_quant_config_must_match_quant(tmp_path):
    m = make_tower("conv")
    spec = ExportSpec(tower="image", quant="int8-dynamic", quant_config=make_method("int8-static"))
    with pytest.raises(ConfigError, match="agree"):
        BACKENDS.get("onnx").export(m, m.example_inputs(), spec, tmp_path)


@pytest.mark.parametrize("backend,quant", [("onnx", "int8-static"), ("executorch", "int8-static"),
                                           ("litert", "int8-static"), ("coreml", "w8a8")])
def test_static_quant_without_calibration_is_an_input_error(backend, quant, tmp_path):
    m = make_tower("conv")
    with pytest.raises(InputError, match="calibration"):
        BACKENDS.get(backend).export(m, m.example_inputs(), ExportSpec(tower="image", quant=quant), tmp_path)


def test_calibration_with_wrong_shape_is_an_input_error(tmp_path):
    m = make_tower("conv")
    cal = [(np.zeros((1, 3, 16, 16), np.float32),)]
    spec = ExportSpec(tower="image", quant="int8-static", calibration=cal)
    with pytest.raises(InputError, match=r"\(1, 3, 32, 32\)"):
        BACKENDS.get("onnx").export(m, m.example_inputs(), spec, tmp_path)


def test_as_tensors_gives_canonical_strides_for_strided_numpy():
    ids = np.arange(32, dtype=np.int32).reshape(2, 16)[0][None]     # stride 0 on the batch axis
    img = np.asfortranarray(np.random.rand(1, 3, 8, 8).astype(np.float32))
    hwc = np.random.rand(8, 8, 3).astype(np.float32).transpose(2, 0, 1)[None]
    assert 0 in ids.strides and torch.from_numpy(np.ascontiguousarray(ids)).stride()[0] == 0
    for a in (ids, img, hwc):
        t, = as_tensors((a,))
        expect = torch.empty(a.shape).stride()
        assert t.stride() == expect and np.array_equal(t.numpy(), a)
        assert canonical(a).strides == tuple(s * a.itemsize for s in expect)


def test_atomic_path_success_replaces_and_failure_leaves_nothing(tmp_path):
    with atomic_path(tmp_path, "m", ".bin") as (tmp, final):
        tmp.write_bytes(b"one")
    assert final.read_bytes() == b"one"
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path, "m", ".bin") as (tmp, final):
            tmp.write_bytes(b"half")
            raise RuntimeError("converter crashed")
    assert final.read_bytes() == b"one" and sorted(p.name for p in tmp_path.iterdir()) == ["m.bin"]
    # directories (.mlpackage) too
    with atomic_path(tmp_path, "pkg", ".mlpackage") as (tmp, final):
        (tmp / "Data").mkdir(parents=True)
        (tmp / "Data" / "w").write_bytes(b"1")
    with atomic_path(tmp_path, "pkg", ".mlpackage") as (tmp, final):
        tmp.mkdir()
        (tmp / "v2").write_bytes(b"2")
    assert [p.name for p in final.iterdir()] == ["v2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "pkg.mlpackage"]


def test_export_error_is_one_line_and_names_the_stage():
    spec = ExportSpec(tower="text", quant="int8-static")
    try:
        raise ValueError("bad\nsecond line")
    except ValueError as cause:
        err = export_error("onnx", spec, "quantization", cause, "try fp32")
    assert "\n" not in str(err) and "onnx" in str(err) and "text tower (int8-static)" in str(err)
    assert "ValueError: bad" in str(err) and str(err).endswith("try fp32")


class _DataDependent(torch.nn.Module):
    def forward(self, x):  # value-dependent Python control flow: torch.export cannot trace it
        return x * 2 if float(x.sum()) > 0 else x - 1


@pytest.mark.toolchain
@pytest.mark.parametrize("backend", ["executorch", "coreml", "litert"])
def test_failed_export_raises_chained_export_error_and_writes_nothing(backend, tmp_path):
    spec = ExportSpec(tower="image", name="broken")
    with pytest.raises(ExportError) as e:
        BACKENDS.get(backend).export(_DataDependent(), (torch.ones(1, 4),), spec, tmp_path)
    assert e.value.__cause__ is not None and "\n" not in str(e.value) and backend in str(e.value)
    assert not any(p.name.startswith(("broken", ".broken")) for p in tmp_path.iterdir())


@pytest.mark.toolchain
def test_onnx_falls_back_to_torchscript_exporter_and_says_so(tmp_path):
    """The dynamo exporter refuses data-dependent control flow; the TorchScript exporter
    traces the example's branch. That fallback must be visible in the artifact notes."""
    b = BACKENDS.get("onnx")
    art = b.export(_DataDependent(), (torch.ones(1, 4),), ExportSpec(tower="image", name="dd"), tmp_path)
    assert any("TorchScript exporter" in n for n in art.notes), art.notes
    assert np.allclose(b.runner(art)(np.ones((1, 4), np.float32)), 2.0)


def test_artifact_dict_round_trip(tmp_path):
    from edgeclip.backends.base import Artifact

    f = tmp_path / "a.onnx"
    f.write_bytes(b"12345")
    a = Artifact(path=f, backend="onnx", tower="image", quant="fp32", input_names=["pixel_values"],
                 output_names=["embedding"], input_shapes=[[1, 3, 8, 8]], input_dtypes=["float32"],
                 output_shapes=[[1, 4]], output_dtypes=["float32"], notes=["n"], extra={"k": 1})
    d = a.to_dict()
    assert d["size_bytes"] == 5 and Artifact.from_dict(d) == a
    assert Artifact.from_dict({**d, "path": "a.onnx"}, base=tmp_path) == a
