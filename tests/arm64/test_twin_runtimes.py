"""The ARM64 twin's runtimes on real artifacts: ExecuTorch (the cross-compiled et_runner), ONNX
Runtime and LiteRT (ai-edge-litert 1.4, its newest aarch64 wheel) under qemu-aarch64 give the host runtime's outputs on real
photos, their instruction counts repeat, int8 is cheaper than fp32 on the dot-product core, and an
artifact run on a core that was told it has instructions it lacks fails, naming the core."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeclip.backends import BACKENDS
from edgeclip.backends.base import ExportSpec
from edgeclip.errors import ExportError
from edgeclip.verify.arm64 import CORES, count_instructions, cpuinfo, run_outputs
from edgeclip.verify.arm64.kit import core_view

from _tiny_configs import twin_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.toolchain]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")


def _pixels(names) -> np.ndarray:
    import skimage.data
    from skimage.color import gray2rgb
    from skimage.transform import resize
    out = []
    for n in names:
        img = getattr(skimage.data, n)()
        img = gray2rgb(img) if img.ndim == 2 else img[..., :3]
        out.append(resize(img, (32, 32), anti_aliasing=True).transpose(2, 0, 1) * 2 - 1)
    return np.ascontiguousarray(np.stack(out).astype(np.float32))  # decoded HWC -> contiguous NCHW


class _Conv(nn.Module):
    """A small conv tower: enough MACs (4.5 M) that the kernels, not the call, dominate the count;
    ``extra``: one more 64-channel block (a deliberately heavier artifact)."""

    def __init__(self, extra: bool = False):
        super().__init__()
        more = [nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU()] if extra else []
        self.body = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(64, 64, 3, 2, 1), nn.ReLU(), *more, nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(64, 32))

    def forward(self, x):
        return nn.functional.normalize(self.body(x), dim=-1)


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    kit = twin_or_skip()
    torch.manual_seed(0)
    tower = _Conv().eval()
    pixels = _pixels(PHOTOS)
    calib = [(x[None],) for x in _pixels(("retina", "colorwheel", "clock", "text"))]
    example = (torch.from_numpy(pixels[:1]),)
    out = tmp_path_factory.mktemp("twin-arts")
    arts = {}
    torch.manual_seed(0)
    heavier = _Conv(extra=True).eval()
    for backend, quant in (("executorch", "fp32"), ("executorch", "int8-static"), ("litert", "fp32"), ("onnx", "fp32"),
                           ("executorch", "heavier")):
        spec = ExportSpec(tower="image", quant="fp32" if quant == "heavier" else quant, input_names=("pixels",),
                          output_names=("image_embedding",), calibration=calib if quant == "int8-static" else None,
                          name=f"conv-{quant}", options={"partitioners": ["xnnpack"]} if backend == "executorch" else {})
        folder = out / f"{backend}-{quant}"
        folder.mkdir()
        arts[(backend, quant)] = BACKENDS.get(backend).export(heavier if quant == "heavier" else tower, example, spec,
                                                              folder)
    return kit, arts, pixels


@pytest.mark.parametrize("key", [("executorch", "fp32"), ("executorch", "int8-static"), ("litert", "fp32"),
                                 ("onnx", "fp32")])
def test_outputs_on_arm_match_the_host_runtime(twin, key):
    kit, arts, pixels = twin
    art = arts[key]
    # the suite's other ExecuTorch tests may have sized this process's XNNPACK pool to 2 threads: use those
    host_runner = BACKENDS.get(art.backend).runner(art, threads=2)
    host = np.concatenate([np.asarray(host_runner(pixels[i:i + 1])).reshape(1, -1) for i in range(len(pixels))])
    arm = run_outputs(kit, CORES["cortex-a76"], art.path, pixels, 1)
    assert arm.shape == host.shape
    cos = (arm * host).sum(-1) / np.linalg.norm(arm, axis=-1) / np.linalg.norm(host, axis=-1)
    assert cos.min() > 0.9999, (key, cos)  # ARM NEON kernels against x86 AVX ones: rounding apart


def test_counts_repeat_and_int8_is_cheaper_on_the_dot_product_core(twin):
    kit, arts, pixels = twin
    x = pixels[:1]
    fp32, int8 = arts[("executorch", "fp32")].path, arts[("executorch", "int8-static")].path
    a76 = CORES["cortex-a76"]
    first = count_instructions(kit, a76, fp32, x)
    assert first == count_instructions(kit, a76, fp32, x)  # the C++ runner's count repeats exactly
    ratio = count_instructions(kit, a76, int8, x) / first
    assert ratio < 0.6, ratio  # XNNPACK's dot-product int8 kernels (measured 0.25-0.45 on conv towers)
    # a core without dot product pays more for int8 relative to fp32 than the A76 does
    a53 = CORES["cortex-a53"]
    assert count_instructions(kit, a53, int8, x) / count_instructions(kit, a53, fp32, x) > ratio
    # the Python guests (ORT, TFLite) add a little interpreter noise per process: within 0.1%
    onnx = arts[("onnx", "fp32")].path
    a, b = count_instructions(kit, a76, onnx, x), count_instructions(kit, a76, onnx, x)
    assert abs(a / b - 1) < 1e-3 and a > 1e6


def _report(instructions: float) -> dict:
    from dataclasses import asdict

    from edgeclip.verify.report import SCHEMA, Record
    rec = Record(model="m", target="android", backend="executorch", tower="image", quant="fp32",
                 runner="arm64-emulated:cortex-a76", emulated=True, metric="instructions_per_inference",
                 value=instructions, device="arm64:cortex-a76")
    return {"schema": SCHEMA, "machine": {}, "results": [asdict(rec)]}


def test_the_count_gate_fails_one_more_block_and_passes_a_rerun(twin):
    """The CI gate on counts: no noise band, 1%; machines need no yardstick (the reports have none)."""
    from edgeclip.verify.compare import compare_reports
    kit, arts, pixels = twin
    a76, x = CORES["cortex-a76"], pixels[:1]
    base = count_instructions(kit, a76, arts[("executorch", "fp32")].path, x)
    rerun = count_instructions(kit, a76, arts[("executorch", "fp32")].path, x)
    heavier = count_instructions(kit, a76, arts[("executorch", "heavier")].path, x)
    ok = compare_reports(_report(rerun), _report(base))
    assert ok.basis == "instructions" and not ok.regressions and ok.rows[0].change == 0.0
    bad = compare_reports(_report(heavier), _report(base))
    assert [s.metric for s in bad.regressions] == ["instructions_per_inference"], bad.table()
    assert bad.rows[0].change > 0.01


def test_a_core_told_it_has_dot_product_fails_naming_the_core(twin, tmp_path):
    """A cortex-a53 (no dot product) whose cpuinfo claims the A76's features and MIDR: XNNPACK picks
    dot-product kernels the core cannot execute, and the run fails on the twin in one line."""
    kit, arts, pixels = twin
    view = tmp_path / "planted-a53"
    core_view(kit.dir, view, cpuinfo(CORES["cortex-a76"], cpus=1))
    with pytest.raises(ExportError) as e:
        run_outputs(kit, CORES["cortex-a53"], arts[("executorch", "int8-static")].path, pixels, 1, core_root=view)
    msg = str(e.value)
    assert "cortex-a53" in msg and "\n" not in msg and "arm64 twin" in msg, msg
    # the same artifact on the honest a53 view runs
    assert run_outputs(kit, CORES["cortex-a53"], arts[("executorch", "int8-static")].path, pixels[:2], 1).shape == (2, 32)
