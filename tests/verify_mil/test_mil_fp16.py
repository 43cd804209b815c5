"""fp16 emulation and the iOS18 compression forms, through real conversions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _mil_helpers import Overflow, cosine

pytestmark = pytest.mark.toolchain


def test_fp16_overflow_shows_up_where_fp32_is_finite(coreml_export):
    from edgeclip.verify.mil import MILRunner

    m = Overflow().eval()
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    r32 = MILRunner(coreml_export("overflow-fp32", m, (x,), quant="fp32"))
    r16 = MILRunner(coreml_export("overflow-fp16", m, (x,), quant="fp16"))
    out32, out16 = r32(x), r16(x)
    assert np.all(cosine(ref, out32) >= 0.9999) and r32.first_nonfinite is None
    assert not np.isfinite(out16).all()
    assert r16.first_nonfinite is not None and "(fp16)" in r16.first_nonfinite


def test_fp16_program_rounds_every_op(models, real_inputs, coreml_export):
    """Rounding each op's result to fp16 changes the output by about fp16 epsilon, and both runs
    of the fp16 program stay close to torch."""
    from edgeclip.verify.mil import MILRunner

    module = models("tiny-vit").image
    x, _ = real_inputs("tiny-vit", "image")
    pkg = coreml_export("tiny-vit-image-fp16", module, (x,), quant="fp16")
    emulated, unrounded = MILRunner(pkg)(x), MILRunner(pkg, emulate_fp16=False)(x)
    err = np.abs(emulated - unrounded).max()
    assert 1e-6 < err < 2e-2, err  # 0 if results were not rounded; ~1 fp16 ulp when they are
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    assert np.all(cosine(ref, emulated) >= 0.999) and np.all(cosine(ref, unrounded) >= 0.999)


@pytest.mark.slow
@pytest.mark.parametrize("quant,params,op_type", [
    ("int8-weight", {"granularity": "per_block", "block_size": 32}, "constexpr_blockwise_shift_scale"),
    ("pal4", {"granularity": "per_grouped_channel", "group_size": 16, "mode": "uniform"}, "constexpr_lut_to_dense"),
])
def test_ios18_compression(quant, params, op_type, models, real_inputs, coreml_export):
    from edgeclip.quantize import make_method
    from edgeclip.verify.mil import MILRunner

    module = models("tiny-vit").image
    x, _ = real_inputs("tiny-vit", "image")
    pkg = coreml_export(f"ios18-{quant}", module, (x,), quant=quant, quant_config=make_method(quant, params),
                        options={"minimum_deployment_target": "iOS18"})
    r = MILRunner(pkg)
    assert r.program.main.opset == "CoreML8" and op_type in r.op_counts
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    cos = cosine(ref, r(x))
    assert np.all(cos >= (0.999 if quant == "int8-weight" else 0.95)), cos
