"""`edgeclip reference` once, `build --reference` reuses it, `edgeclip verify` re-checks the bundle.

One tiny recipe, one reference, one ONNX build (two exports) shared by every test of the module;
the failure cases work on copies of that bundle.
"""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgeclip.bundle import load_manifest, write_manifest
from edgeclip.cli import main

from _tiny_configs import MINI_TARGET, stage_log

RECIPE = """
version: 1
name: tiny
teacher: builtin:tiny-vit
seed: 0
data:
  eval:
    - {source: synthetic, split: heldout, samples: 12, languages: [en, zh]}
    - {source: digits, samples: 10}
"""
GATED_TARGET = MINI_TARGET + """thresholds:
  cosine_mean: 0.99
  cosine_min: 0.95
  top1_agreement: 0.9
  r1_agreement: 0.9
"""

pytestmark = [pytest.mark.slow, pytest.mark.toolchain]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("refverify")
    recipe, target = root / "tiny.yaml", root / "mini.yaml"
    recipe.write_text(textwrap.dedent(RECIPE))
    target.write_text(GATED_TARGET)
    ref, bundle = root / "ref", root / "mini"
    rc_ref = main(["reference", "--recipe", str(recipe), "--out", str(ref)])
    rc_build = main(["build", "--target", str(target), "--recipe", str(recipe), "--out", str(bundle),
                     "--reference", str(ref)])
    return SimpleNamespace(root=root, recipe=recipe, target=target, ref=ref, bundle=bundle,
                           rc_ref=rc_ref, rc_build=rc_build)


def _copy(bundle: Path, dst: Path) -> Path:
    shutil.copytree(bundle, dst, ignore=shutil.ignore_patterns(".cache", ".edgeclip.lock"))
    return dst


def test_reference_made_once_is_reused_by_build_and_recorded(built):
    import torch
    assert built.rc_ref == 0 and built.rc_build == 0
    info = json.loads((built.ref / "reference.json").read_text())
    assert info["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert info["recipe"] == "tiny" and len(info["weights_sha256"]) == 64
    status = {(e["stage"], e["status"]) for e in stage_log(built.bundle)}
    assert ("reference", "stored") in status and ("reference", "ran") not in status
    assert ("teacher", "cached") in status  # `edgeclip reference` left it in the shared cache

    manifest = load_manifest(built.bundle)  # schema + every sha256, reference/ included
    ref = manifest["reference"]
    assert ref["source"] == "stored" and ref["stored_path"] == str(built.ref)
    assert ref["device"] == info["device"] and ref["model_hash"] == info["model_hash"]
    assert set(ref["files"]) <= set(manifest["files"])
    assert (built.bundle / "reference" / "reference.npz").read_bytes() == (built.ref / "reference.npz").read_bytes()
    assert all(a["thresholds"]["cosine_mean"] == 0.99 for a in manifest["artifacts"])
    report = json.loads((built.bundle / "report.json").read_text())
    assert report["reference"]["device"] == info["device"] and report["reference"]["source"] == "stored"
    assert f"on {info['device']}" in (built.bundle / "report.md").read_text()


def test_reference_of_another_model_is_a_one_line_exit_2(built, capsys):
    other = built.root / "other.yaml"
    other.write_text(textwrap.dedent(RECIPE).replace("seed: 0", "seed: 1").replace("name: tiny", "name: tiny-b"))
    out = built.root / "other"
    rc = main(["build", "--target", str(built.target), "--recipe", str(other), "--out", str(out),
               "--reference", str(built.ref)])
    err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("[")]  # not progress lines
    assert rc == 2
    assert len(err) == 1 and "made for recipe 'tiny'" in err[0] and "recipe 'tiny-b'" in err[0], err
    assert f"edgeclip reference --recipe {other} --out {built.ref}" in err[0]
    assert not (out / "manifest.json").exists()


def test_reference_on_cuda_without_one_is_exit_2(built, tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc = main(["reference", "--recipe", str(built.recipe), "--out", str(tmp_path / "r"), "--device", "cuda"])
    assert rc == 2 and "no CUDA device here" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_verify_passes_on_the_fresh_bundle(built, capsys):
    assert main(["verify", str(built.bundle)]) == 0
    out = capsys.readouterr().out
    assert "onnx/image/fp32" in out and "onnx/text/fp32" in out
    assert "cosine_mean" in out and ">= 0.99" in out and "FAIL" not in out


def test_verify_names_the_metric_of_an_artifact_with_perturbed_weights(built, tmp_path, capsys):
    import onnx
    from onnx import numpy_helper
    bundle = _copy(built.bundle, tmp_path / "b")
    manifest = json.loads((bundle / "manifest.json").read_text())
    image = next(a for a in manifest["artifacts"] if a["tower"] == "image")
    model = onnx.load(bundle / image["file"])
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:  # every weight matrix gets noise of half its spread
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.ndim >= 2:
            w = w + rng.standard_normal(w.shape).astype(np.float32) * w.std() * 0.5
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, bundle / image["file"])
    write_manifest(bundle, {k: v for k, v in manifest.items() if k not in ("files", "schema")})  # new sha256s

    assert main(["verify", str(bundle)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "onnx/image/fp32 cosine_mean" in err[0] and "onnx/text" not in err[0], err
    row = next(x for x in captured.out.splitlines() if x.strip().startswith("cosine_mean") and "FAIL" in x)
    assert ">= 0.99" in row


def test_verify_refuses_a_tampered_or_incomplete_bundle(built, tmp_path, capsys):
    tampered = _copy(built.bundle, tmp_path / "t")
    with open(tampered / "artifacts" / "onnx-text-fp32.onnx", "ab") as f:
        f.write(b"\0")
    assert main(["verify", str(tampered)]) == 2
    err = capsys.readouterr().err
    assert "onnx-text-fp32.onnx does not match its sha256" in err and err.count("\n") == 1

    incomplete = _copy(built.bundle, tmp_path / "i")
    (incomplete / "reference" / "reference.npz").unlink()
    assert main(["verify", str(incomplete)]) == 2
    err = capsys.readouterr().err
    assert "reference/reference.npz is missing" in err and err.count("\n") == 1
