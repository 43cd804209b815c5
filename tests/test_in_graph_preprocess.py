"""in_graph_preprocess: image artifacts take decoded RGB pixels 0..255 at the model's size (NHWC,
as camera frames and Bitmaps come) and normalize inside the graph, on every backend; verified
against the same fp32 reference, and predict feeds them what the manifest says."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from edgeclip.cli import main
from edgeclip.errors import ConfigError

from _bundle_checks import assert_snippet_matches
from _tiny_configs import build_mini

pytestmark = [pytest.mark.slow, pytest.mark.toolchain]

RECIPE = """
version: 1
name: raw
teacher: builtin:tiny-vit
seed: 0
data:
  eval:
    - {source: synthetic, split: heldout, samples: 10, languages: [en]}
    - {source: photos}
quantization:
  calibration_samples: 4
"""
TARGET = """
version: 1
name: raw-pixels
platform: android
towers: [image, text]
in_graph_preprocess: true
backends:
  - backend: onnx
    quant: {image: [fp32, int8-static], text: [fp32]}
  - backend: litert
    quant: {image: [fp32, int8-static], text: [fp32]}
  - backend: executorch
    quant: {image: [fp32, int8-static], text: [fp32]}
    options: {partitioners: [xnnpack]}
  - backend: coreml
    quant: {image: [fp16], text: [fp16]}
    options: {minimum_deployment_target: iOS17}
thresholds:
  cosine_mean: 0.98
  cosine_min: 0.9
  top1_agreement: 0.8
  r1_agreement: 0.8
"""


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_raw_pixel_artifacts_build_verify_and_predict_on_every_backend(tmp_path, capsys):
    from PIL import Image
    from skimage import data

    from edgeclip.bundle import load_manifest
    from edgeclip.commands.predict import BundleRunner
    from edgeclip.models import load_model, preprocess_images

    out = build_mini(tmp_path, RECIPE, capsys, TARGET)
    m = load_manifest(out)
    p = m["preprocessing"]
    assert p["in_graph"] is True and p["input_layout"] == "NHWC" and p["input_dtype"] == "int32/uint8"
    s = p["image_size"]
    images = [a for a in m["artifacts"] if a["tower"] == "image"]  # the shipped ones
    assert {a["backend"] for a in images} == {"onnx", "litert", "executorch", "coreml"}
    for a in images:
        want = "int32" if a["backend"] == "coreml" else "uint8"
        assert a["in_graph_preprocess"] and a["inputs"][0] == {**a["inputs"][0], "dtype": want, "shape": [1, s, s, 3]}
    report = json.loads((out / "report.json").read_text())
    cos = {(r["backend"], r["quant"]): r["value"] for r in report["results"]
           if r["tower"] == "image" and r["metric"] == "cosine_min"}
    for b in ("onnx", "litert", "executorch", "coreml"):  # CoreML in the MIL interpreter off macOS
        assert cos[(b, "fp32" if b != "coreml" else "fp16")] > 0.999, cos
    for b in ("onnx", "litert", "executorch"):
        assert cos[(b, "int8-static")] > 0.9, cos
    assert all(not a["in_graph_preprocess"] for a in m["artifacts"] if a["tower"] == "text")
    assert main(["verify", str(out)]) == 0
    capsys.readouterr()
    snippets = {e["file"]: e["backend"] for e in m["snippets"]}
    assert snippets == {"snippets/LiteRT.kt": "litert", "snippets/ExecuTorch.kt": "executorch",
                        "snippets/CoreML.swift": "coreml"}
    for f, backend in snippets.items():  # raw NHWC pixels, no normalization in the app
        assert_snippet_matches((out / f).read_text(), m, backend)

    photo = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).save(photo)
    model = load_model("builtin:tiny-vit")
    f = model.facts
    with torch.no_grad():  # the float path on the host: what the artifact must agree with
        want = model.image(preprocess_images([data.chelsea()], f.image_size, f.mean, f.std, f.resize_mode)).numpy()
    for b in ("onnx", "litert", "executorch"):
        got = BundleRunner(out, b).encode_images([str(photo)])
        assert float((_unit(got) * _unit(want)).sum()) > 0.995, b


def test_in_graph_preprocess_without_an_image_tower_is_refused(tmp_path):
    from edgeclip.build.plan import make_plan
    from edgeclip.config import load_recipe, load_target

    (tmp_path / "r.yaml").write_text(textwrap.dedent(RECIPE))
    (tmp_path / "t.yaml").write_text(TARGET.replace("towers: [image, text]", "towers: [text]"))
    with pytest.raises(ConfigError, match="in_graph_preprocess.*no image tower"):
        make_plan(load_recipe(tmp_path / "r.yaml"), load_target(tmp_path / "t.yaml"), tmp_path / "o",
                  check_toolchains=False)
