"""Damaged and unusual packages: flipped weight bytes fail verification, truncated or corrupt
weights and unknown ops raise one-line errors that say where and what to do; Runner contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _mil_helpers import copy_package, cosine, weight_file

from edgeclip.errors import ExportError, InputError

pytestmark = pytest.mark.toolchain


@pytest.fixture(scope="module")
def vit_fp16(models, real_inputs, coreml_export):
    """(package, eval inputs, torch reference) of tiny-vit's image tower in fp16."""
    module = models("tiny-vit").image
    x, _ = real_inputs("tiny-vit", "image")
    pkg = coreml_export("tiny-vit-image-fp16", module, (x,), quant="fp16")
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    return pkg, x, ref


def _one_line_error(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def test_intact_package_passes_the_gate(vit_fp16):
    from edgeclip.verify.mil import MILRunner
    from edgeclip.verify.metrics import embedding_metrics

    pkg, x, ref = vit_fp16
    m = embedding_metrics(ref, MILRunner(pkg)(x))
    assert m["cosine_min"] >= 0.999 and m["psnr_db"] > 35


def test_flipped_weight_bytes_change_outputs_and_fail_verification(vit_fp16, tmp_path):
    from edgeclip.verify.mil import BlobFile, MILRunner
    from edgeclip.verify.metrics import embedding_metrics

    pkg, x, ref = vit_fp16
    bad = copy_package(pkg, tmp_path)
    wf = weight_file(bad)
    _, _, size, start = max(BlobFile(wf).entries(), key=lambda e: e[2])  # the largest weight
    buf = bytearray(wf.read_bytes())
    lo = start + size // 2 - 512
    buf[lo:lo + 1024] = bytes(b ^ 0x5A for b in buf[lo:lo + 1024])
    wf.write_bytes(bytes(buf))
    out = MILRunner(bad)(x)
    good = MILRunner(pkg)(x)
    assert not np.array_equal(out, good)
    cos = cosine(ref, out)
    assert not np.all(cos >= 0.999), f"damaged weights still pass: cosine {cos}"
    m = embedding_metrics(ref, out)
    assert not (m["cosine_min"] >= 0.999)


def test_truncated_weights_raise_one_line_error(vit_fp16, tmp_path):
    from edgeclip.verify.mil import MILRunner

    bad = copy_package(vit_fp16[0], tmp_path)
    wf = weight_file(bad)
    wf.write_bytes(wf.read_bytes()[: wf.stat().st_size // 2])
    with pytest.raises(ExportError) as e:
        MILRunner(bad)
    msg = _one_line_error(e)
    assert "truncated" in msg and "re-export" in msg and "weight.bin" in msg


def test_corrupt_blob_header_raises(vit_fp16, tmp_path):
    from edgeclip.verify.mil import MILRunner

    bad = copy_package(vit_fp16[0], tmp_path)
    wf = weight_file(bad)
    buf = bytearray(wf.read_bytes())
    buf[64:68] = b"\0\0\0\0"  # the first blob's 0xDEADBEEF sentinel
    wf.write_bytes(bytes(buf))
    with pytest.raises(ExportError) as e:
        MILRunner(bad)
    assert "sentinel" in _one_line_error(e)


def test_unknown_op_names_type_and_location(vit_fp16, tmp_path):
    from edgeclip.verify.mil import MILRunner
    from edgeclip.verify.mil._package import _model_pb2

    bad = copy_package(vit_fp16[0], tmp_path)
    spec_file = bad / "Data" / "com.apple.CoreML" / "model.mlmodel"
    model = _model_pb2().Model()
    model.ParseFromString(spec_file.read_bytes())
    block = model.mlProgram.functions["main"].block_specializations[model.mlProgram.functions["main"].opset]
    index, gelu = next((i, o) for i, o in enumerate(block.operations) if o.type == "gelu")
    gelu.type = "gelu_v99"
    spec_file.write_bytes(model.SerializeToString())
    with pytest.raises(ExportError) as e:
        MILRunner(bad)
    msg = _one_line_error(e)
    assert "'gelu_v99'" in msg and "function 'main'" in msg and f"op #{index}" in msg
    assert repr(gelu.outputs[0].name) in msg


def test_not_a_package_and_missing_spec(tmp_path):
    from edgeclip.verify.mil import MILRunner

    (tmp_path / "empty.mlpackage").mkdir()
    with pytest.raises(ExportError, match="Manifest.json"):
        MILRunner(tmp_path / "empty.mlpackage")


def test_runner_contract_and_input_checks(vit_fp16):
    from edgeclip.backends.base import Runner
    from edgeclip.verify.mil import MILRunner

    pkg, x, _ = vit_fp16
    r = MILRunner(pkg, threads=1)
    assert isinstance(r, Runner)
    assert (r.runtime, r.emulated, r.threads) == ("mil-interpreter", True, 1) and r.load_ms > 0
    assert r.input_names == ["input"] and r.output_names == ["embedding"]
    outs = r.run(torch.from_numpy(x))           # tensors are accepted like arrays
    np.testing.assert_array_equal(outs["embedding"], r(x))
    with pytest.raises(InputError, match=r"shape \[1, 3, 64, 64\]"):
        r(x[:1])
    with pytest.raises(InputError, match="takes 1 input"):
        r(x, x)
