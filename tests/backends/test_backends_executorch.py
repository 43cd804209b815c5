"""ExecuTorch specifics: delegation report, CoreML partitioner, overrides, partitioner options."""
from __future__ import annotations

import numpy as np
import pytest

from edgeclip.backends import BACKENDS, ExportSpec
from edgeclip.backends.executorch import ExecuTorchRunner
from edgeclip.errors import ConfigError, ExportError
from edgeclip.quantize import make_method

from _backends_cases import HAVE_MODELS
from _backends_towers import make_tower

pytestmark = [pytest.mark.toolchain, pytest.mark.slow]
et = BACKENDS.get("executorch")


@pytest.mark.parametrize("kind,quant", [("vit", "fp32"), ("vit", "int8-static"), ("conv", "fp32"),
                                        ("text", "fp32"), ("text", "int8-dynamic")])
def test_every_compute_op_is_delegated_and_the_rest_is_named(exports, kind, quant):
    """The test towers use the constructs XNNPACK lacks (layer_norm, F.normalize, fused SDPA,
    a pooled mean without keepdim): after the rewrite every compute op is in a delegate."""
    art = exports.get("executorch", kind, quant).artifact
    assert art.extra["delegates"]["XnnpackBackend"] > 0
    assert art.extra["compute_delegated_fraction"] == 1.0, art.not_delegated
    for op in ("layer_norm", "sum.dim", "mean.dim", "pow", "mul.Scalar", "where", "any.dim"):
        assert not any(op in s for s in art.not_delegated), art.not_delegated
    # what is left is data movement / indexing, named with counts
    assert not any("getitem" in s or "executorch_call_delegate" in s for s in art.not_delegated)
    n_out = sum(int(s.rsplit("x", 1)[1]) for s in art.not_delegated)
    total = art.extra["delegates"]["XnnpackBackend"] + n_out
    assert art.delegated_fraction == pytest.approx(art.extra["delegates"]["XnnpackBackend"] / total)


def test_rewrite_keeps_the_maths(tmp_path):
    """The XNNPACK rewrite changes ops, not results: the rewritten program equals eager."""
    import torch

    from edgeclip.backends._xnnpack_rewrite import xnnpack_friendly

    for kind, mean in (("vit", "fc"), ("vit", "reduce"), ("conv", "fc"), ("text", "fc"), ("text", "reduce")):
        m = make_tower(kind)
        ex = m.example_inputs()
        ep = xnnpack_friendly(torch.export.export(m, ex, strict=False), mean=mean)
        names = {str(n.target) for n in ep.graph.nodes}
        assert not {"aten.layer_norm.default", "aten.native_layer_norm.default",
                    "aten.scaled_dot_product_attention.default"} & names
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(*ex), m(*ex), rtol=1e-5, atol=1e-5)


def test_transposes_in_a_row_fold_into_one_permute_also_across_static_int8_pairs():
    """Attention's ``k.transpose(1, 2).transpose(-1, -2)``: one permute after the rewrite, in fp32
    and across the quantize/dequantize pair static int8 puts between the two, with the program's
    output unchanged bit for bit (the pair is per-tensor, so it commutes with the permute)."""
    import torch
    from torch import nn

    from edgeclip.backends._xnnpack_rewrite import _fold_permutes
    from edgeclip.backends.executorch import _pt2e

    class KT(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k = nn.Linear(16, 16), nn.Linear(16, 16)

        def forward(self, x):
            q = self.q(x).reshape(1, 5, 2, 8).transpose(1, 2)
            k = self.k(x).reshape(1, 5, 2, 8).transpose(1, 2)
            return torch.softmax(q @ k.transpose(-1, -2), dim=-1)

    def permutes(ep):
        return [n for n in ep.graph.nodes
                if n.op == "call_function" and ("transpose" in str(n.target) or "permute" in str(n.target))]

    torch.manual_seed(0)
    m, x = KT().eval(), torch.randn(1, 5, 16)
    float_ep = torch.export.export(m, (x,), strict=False)
    int8_ep, _ = _pt2e(m, (x,), make_method("int8-static"), [(x,)], [])
    for ep in (float_ep, int8_ep):
        before = ep.module()(x)
        n_before = len(permutes(ep))
        folded = _fold_permutes(ep)
        assert len(permutes(folded)) == n_before - 1  # q's transpose stays; k's two are one
        assert torch.equal(folded.module()(x), before)


@pytest.mark.parametrize("quant,fc_kernel", [("fp32", "Fully Connected (NC, F32)"),
                                             ("int8-static", "Fully Connected (NC, QS8, QC8W)")])
def test_layer_norm_means_run_as_fc_kernels_without_transposes(tmp_path, quant, fc_kernel):
    """A LayerNorm's two means as a 1/C Linear: XNNPACK runs them as FC kernels (ETDump), not as
    Mean (ND) reductions wrapped in NCHW/NHWC transposes; int8 weights stay int8."""
    import torch
    from torch import nn

    from edgeclip.verify.profile import profile_artifact

    torch.manual_seed(0)
    m = nn.Sequential(nn.LayerNorm(64), nn.Linear(64, 64), nn.LayerNorm(64), nn.Linear(64, 64)).eval()
    x = np.random.default_rng(0).standard_normal((1, 8, 64)).astype(np.float32)
    ref = m(torch.from_numpy(x)).detach().numpy()
    ops, sizes = {}, {}
    for mean in ("reduce", "fc"):
        art = et.export(m, (x,), ExportSpec(tower="image", quant=quant, name=f"ln-{mean}", input_names=("x",),
                                            calibration=[(x,)] * 2, options={"xnnpack_mean": mean}), tmp_path)
        assert art.extra["compute_delegated_fraction"] == 1.0, art.not_delegated
        y = et.runner(art)(x)
        assert float((y * ref).sum() / np.linalg.norm(y) / np.linalg.norm(ref)) > 0.999
        ops[mean] = {o["op"]: o["count"] for o in profile_artifact(art, (x,), runs=2)["by_op_type"]}
        sizes[mean] = art.size_bytes
    assert ops["reduce"].get("Mean (ND) Reduce2") == 4 and ops["reduce"].get("Transpose (ND, X32)", 0) > 0
    assert "Mean (ND) Reduce2" not in ops["fc"] and "Transpose (ND, X32)" not in ops["fc"], ops["fc"]
    assert ops["fc"].get("Fully Connected (NC, F32) GEMM", 0) >= 4  # the four 1/C rows
    assert any(k.startswith(fc_kernel) for k in ops["fc"]), ops["fc"]  # the model's own Linears
    assert abs(sizes["fc"] - sizes["reduce"]) < 0.05 * sizes["reduce"]


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
    from _backends_cases import get_case

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


_RESIZE_CHILD = r"""
import gc, json, sys
from pathlib import Path
import numpy as np
from edgeclip.backends.base import Artifact
from edgeclip.backends.executorch import ExecuTorchRunner
from edgeclip.errors import ConfigError
art = Artifact.from_dict(json.loads(Path(sys.argv[1]).read_text()))
x = np.load(sys.argv[2])
first = ExecuTorchRunner(art, threads=1)
y1 = first(x)
try:
    ExecuTorchRunner(art, threads=2)  # growing the pool under a loaded method crashed the process
    print("no error"); sys.exit(1)
except ConfigError as e:
    print("refused:", e)
del first; gc.collect()
second = ExecuTorchRunner(art, threads=2)  # nothing loaded any more: resizing is safe
print("max diff", float(np.abs(second(x) - y1).max()))
"""


def test_thread_pool_is_not_resized_under_a_loaded_method(tmp_path, exports):
    """XNNPACK's pool is process-wide: a second runner asking another thread count while one
    is loaded gets a one-line ConfigError (it used to segfault on the next call); once the
    first is gone, the pool resizes and runs. In a child process: the pool is global state."""
    import json
    import subprocess
    import sys

    from _backends_cases import get_case

    res = exports.get("executorch", "vit", "fp32")
    (tmp_path / "art.json").write_text(json.dumps(res.artifact.to_dict()))
    np.save(tmp_path / "x.npy", get_case("vit").inputs[0][0])
    p = subprocess.run([sys.executable, "-c", _RESIZE_CHILD, str(tmp_path / "art.json"), str(tmp_path / "x.npy")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr[-2000:]
    assert "refused: executorch: this process already runs .pte files on 1 threads" in p.stdout
    assert float(p.stdout.rsplit("max diff", 1)[1]) < 1e-4


@pytest.mark.skipif(not HAVE_MODELS, reason="builtin models unavailable")
def test_int8_text_tower_quantizes_its_token_table(tmp_path, exports):
    """XNNPACKQuantizer leaves nn.Embedding alone; the CLIP BPE table (49408 rows) then kept an
    int8 text artifact at 0.92x its fp32 sibling. Now it is int8 rows on embedding_byte, which
    this machine's runtime runs, unless an override keeps it float."""
    from _backends_cases import get_case

    fp32 = exports.get("executorch", "builtin-vit-text", "fp32")
    q = exports.get("executorch", "builtin-vit-text", "int8-dynamic")
    assert q.artifact.size_bytes < 0.4 * fp32.artifact.size_bytes
    assert any("token table" in n for n in q.artifact.notes) and not q.artifact.not_quantized
    assert q.cos.min() > 0.99
    case = get_case("builtin-vit-text")
    cfg = make_method("int8-dynamic", overrides={"op_type": {"embedding": "fp32"}})
    spec = ExportSpec(tower="text", quant="int8-dynamic", quant_config=cfg, name="float-table")
    kept = et.export(case.tower, case.example, spec, tmp_path)
    assert kept.size_bytes > 0.8 * fp32.artifact.size_bytes and kept.not_quantized
    assert not any("token table" in n for n in kept.notes)


_LIGHT_CHILD = """
import json, sys
from pathlib import Path
import numpy as np
import torch
from edgeclip.backends import BACKENDS, ExportSpec
from edgeclip.backends.base import Artifact
et = BACKENDS.get("executorch")
et.start_runtime()
print("exporter loaded:", sorted(m for m in sys.modules if m.startswith("executorch.exir.")))
art = Artifact.from_dict(json.loads(Path(sys.argv[1]).read_text()))
np.save(sys.argv[2], et.runner(art, threads=2)(np.load(sys.argv[3])))
# the exporter still imports whole afterwards, and exports and runs in this process
from executorch.exir import to_edge_transform_and_lower  # noqa: F401
lin = torch.nn.Linear(4, 3).eval()
x = np.ones((1, 4), np.float32)
small = et.export(lin, (x,), ExportSpec(tower="image", name="lin"), Path(sys.argv[4]))
print("exported max diff", float(np.abs(et.runner(small, threads=2)(x) - lin(torch.from_numpy(x)).detach().numpy()).max()))
"""


@pytest.mark.skipif(not HAVE_MODELS, reason="builtin models unavailable")
def test_runtime_starts_without_the_exporter_and_the_exporter_still_loads_after(tmp_path, exports):
    """A process that only runs .pte files (the bench children) loads the runtime, not the
    exporter package (8 s of imports here), runs an int8 text artifact (embedding_byte) exactly as
    a process with the exporter does, and can still import the exporter and export afterwards."""
    import json
    import subprocess
    import sys

    from _backends_cases import get_case

    res = exports.get("executorch", "builtin-vit-text", "int8-dynamic")
    (tmp_path / "art.json").write_text(json.dumps(res.artifact.to_dict(), default=str))
    ids = get_case("builtin-vit-text").inputs[0][0]
    np.save(tmp_path / "ids.npy", ids)
    p = subprocess.run([sys.executable, "-c", _LIGHT_CHILD, str(tmp_path / "art.json"), str(tmp_path / "out.npy"),
                        str(tmp_path / "ids.npy"), str(tmp_path / "lin")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr[-2000:]
    assert "exporter loaded: ['executorch.exir._warnings']" in p.stdout, p.stdout
    assert np.array_equal(np.load(tmp_path / "out.npy"), res.runner(ids))
    assert float(p.stdout.rsplit("exported max diff", 1)[1]) < 1e-5
