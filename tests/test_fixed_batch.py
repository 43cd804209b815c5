"""A target with a fixed batch N > 1: every backend that runs here exports, verifies, benches and
predicts with N-row inputs (the last call of an evaluation set that is no multiple of N is
padded with copies of its last row, whose outputs are dropped)."""
from __future__ import annotations


import numpy as np
import pytest

from edgeclip.cli import main
from edgeclip.verify.run import run_rows

from _tiny_configs import build_mini

pytestmark = [pytest.mark.slow, pytest.mark.toolchain]

N = 3
RECIPE = """
version: 1
name: batch
teacher: builtin:tiny-vit
seed: 0
data:
  eval:
    - {source: synthetic, split: heldout, samples: 10, languages: [en]}
    - {source: digits, samples: 10}
"""
TARGET = f"""
version: 1
name: batch3
platform: android
towers: [image, text]
batch_size: {N}
backends:
  - backend: onnx
    quant: [fp32]
  - backend: litert
    quant: [fp32]
  - backend: executorch
    quant: [fp32]
thresholds:
  cosine_mean: 0.9999
  cosine_min: 0.999
  top1_agreement: 0.95
  r1_agreement: 0.95
"""


def test_run_rows_feeds_fixed_batches_and_drops_the_padding():
    seen = []

    def runner(x):
        seen.append(x.shape)
        assert x.flags.c_contiguous
        return x.reshape(len(x), -1)[:, :2] * 2

    rows = np.arange(7 * 4, dtype=np.float32).reshape(7, 4)
    out = run_rows(runner, rows, 3)
    assert seen == [(3, 4)] * 3
    np.testing.assert_array_equal(out, rows[:, :2] * 2)


def test_a_batch_3_target_builds_verifies_and_predicts_on_every_backend(tmp_path, capsys):
    from skimage import data
    from PIL import Image

    from edgeclip.bundle import load_manifest
    from edgeclip.commands.predict import predict

    out = build_mini(tmp_path, RECIPE, capsys, TARGET)
    m = load_manifest(out)
    shipped = {(a["backend"], a["tower"]): a for a in m["artifacts"]}
    assert set(shipped) == {(b, t) for b in ("onnx", "litert", "executorch") for t in ("image", "text")}
    for a in shipped.values():
        assert a["inputs"][0]["shape"][0] == N and a["outputs"][0]["shape"][0] == N, a
        assert a["runtime"] and a["metrics"]["cosine_min"] > 0.999 and a["metrics"]["r1_agreement"] >= 0.95
    report = (out / "report.json").read_text()
    assert '"latency_p50_ms"' in report
    assert main(["verify", str(out)]) == 0
    capsys.readouterr()
    img = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(img)
    for backend in ("onnx", "litert", "executorch"):  # one image: a padded batch of 3
        res = predict(out, [str(img)], texts=["a cup of coffee", "a red square"], backend=backend)
        assert len(res["results"]) == 1 and len(res["results"][0]["ranking"]) == 2
