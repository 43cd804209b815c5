"""Interpreter output vs torch eager, per tower architecture x CoreML quant mode, on real inputs.

Thresholds are the measured minimum per-row cosine over 4 photos / 4 captions with a margin
(see the MIL interpreter report): fp32 must match to 1e-4, fp16 and weight compression within
what their rounding costs on these random-init tiny towers.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _mil_helpers import cosine

pytestmark = [pytest.mark.toolchain, pytest.mark.slow]

QUANTS = ("fp32", "fp16", "int8-weight", "pal8", "pal6", "pal4", "w8a8")
TOWERS = (("tiny-vit", "image"), ("tiny-vit", "text"), ("tiny-mci", "image"))
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.9999, "int8-weight": 0.9995, "pal8": 0.9995, "pal6": 0.995,
              "pal4": 0.97, "w8a8": 0.995}
# the op a mode must put into the program, so each test proves the interpreter ran it
EXPECTED_OPS = {"fp16": {"cast"}, "int8-weight": {"constexpr_affine_dequantize"},
                "pal8": {"constexpr_lut_to_dense"}, "pal6": {"constexpr_lut_to_dense"},
                "pal4": {"constexpr_lut_to_dense"}, "w8a8": {"quantize", "dequantize"}}


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("arch,tower", TOWERS, ids=[f"{a}-{t}" for a, t in TOWERS])
def test_interpreter_matches_torch(arch, tower, quant, models, real_inputs, coreml_export):
    from edgeclip.verify.mil import MILRunner

    module = models(arch).tower(tower)
    x, cal = real_inputs(arch, tower)
    pkg = coreml_export(f"{arch}-{tower}-{quant}", module, (x,), quant=quant,
                        calibration=[(cal,)] if quant == "w8a8" else None, tower=tower)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    runner = MILRunner(pkg)
    out = runner(x)
    assert out.shape == ref.shape and out.dtype == np.float32
    cos = cosine(ref, out)
    assert np.all(cos >= MIN_COSINE[quant]), f"{arch} {tower} {quant}: cosine per row {cos}"
    assert EXPECTED_OPS.get(quant, set()) <= set(runner.op_counts), dict(runner.op_counts)
    assert runner.first_nonfinite is None


@pytest.mark.parametrize("resize_mode", ["squash", "shortest"])
def test_in_graph_preprocessing_on_a_decoded_photo(resize_mode, models, coreml_export):
    """Raw float32 HxWx3 pixels in (CoreML has no uint8 inputs): crop, bilinear resize and the
    folded mean/std run inside the program (upsample_bilinear, batch_norm)."""
    from skimage import data

    from edgeclip.models import InGraphPreprocess
    from edgeclip.verify.mil import MILRunner

    img = models("tiny-vit").image
    photo = data.rocket()  # 427 x 640, not square
    tower = img.with_preprocess(input_hw=photo.shape[:2], input_dtype=torch.float32)
    tower.preprocess = InGraphPreprocess(img.image_size, img.mean, img.std, photo.shape[:2], resize_mode,
                                         torch.float32)
    x = np.ascontiguousarray(photo[None].astype(np.float32))
    runner = MILRunner(coreml_export(f"tiny-vit-preprocess-{resize_mode}", tower, (x,), quant="fp32"))
    assert "upsample_bilinear" in runner.op_counts
    with torch.no_grad():
        ref = tower(torch.from_numpy(x)).numpy()
    assert np.all(cosine(ref, runner(x)) >= 0.9999)
