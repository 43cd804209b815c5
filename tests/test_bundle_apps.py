"""App-ready bundles end to end: one tiny build with a label set and a zero-shot head on the
MINI (ONNX) target, shared by every test of the module; predict, zip, tampering, snippets.

The zip and tamper tests work on copies; ExecuTorch stays out (slow lowering)."""
from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgeclip.bundle import load_manifest, manifest_schema
from edgeclip.cli import main
from edgeclip.bundle.labels import DEFAULT_TEMPLATES
from edgeclip.commands.predict import predict

from _bundle_checks import as_backend, assert_snippet_matches
from _tiny_configs import MINI_TARGET, stage_log

RECIPE = """
version: 1
name: tiny
teacher: builtin:tiny-vit
seed: 0
data:
  eval:
    - {source: synthetic, split: heldout, samples: 12, languages: [en]}
    - {source: digits, samples: 10}
export:
  towers: [image, text, zero-shot-head]
"""
LABELS = ["red circle", "blue square", "green triangle", "一只猫", "a dog, sitting"]

pytestmark = [pytest.mark.slow, pytest.mark.toolchain]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from PIL import Image
    from skimage import data
    root = tmp_path_factory.mktemp("apps")
    recipe, target, labels = root / "tiny.yaml", root / "mini.yaml", root / "labels.txt"
    recipe.write_text(textwrap.dedent(RECIPE))
    target.write_text(MINI_TARGET)
    labels.write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    images = []
    for name in ("astronaut", "coffee", "chelsea"):
        images.append(str(root / f"{name}.png"))
        Image.fromarray(getattr(data, name)()).save(images[-1])
    bundle = root / "mini"
    rc = main(["build", "--target", str(target), "--recipe", str(recipe), "--out", str(bundle),
               "--labels", str(labels)])
    return SimpleNamespace(root=root, recipe=recipe, target=target, labels=labels, bundle=bundle, rc=rc,
                           images=images, zip=root / "mini.zip")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLIP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _model(built):
    from edgeclip.models import load_model
    teacher = next((built.root / ".cache").glob("teacher-*/model.safetensors"))
    return load_model(f"file:{teacher}").eval()


def test_bundle_carries_labels_and_head_and_validates(built):
    import jsonschema
    assert built.rc == 0
    m = load_manifest(built.bundle)  # schema + every sha256
    jsonschema.validate(m, manifest_schema())
    lab = m["labels"]
    assert lab["names"] == LABELS and lab["count"] == len(LABELS) and lab["templates"] == list(DEFAULT_TEMPLATES)
    assert lab["embed_dim"] == m["model"]["embed_dim"] and lab["source"] == str(built.labels)
    assert {lab["file"], lab["embeddings_file"]} <= set(m["files"])
    doc = json.loads((built.bundle / lab["file"]).read_text(encoding="utf-8"))
    assert doc["labels"] == LABELS and doc["templates"] == list(DEFAULT_TEMPLATES)
    emb = np.load(built.bundle / lab["embeddings_file"])
    assert emb.dtype == np.float32 and emb.shape == (len(LABELS), m["model"]["embed_dim"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    # the fp32 model's prompt-averaged embeddings, computed as distillation's evaluation does
    from edgeclip.distill.evaluate import class_embeddings
    model = _model(built)
    want = class_embeddings(model, [[t.format(x) for t in DEFAULT_TEMPLATES] for x in LABELS]).numpy()
    np.testing.assert_allclose(emb, want, atol=1e-5)

    head = [a for a in m["artifacts"] if a["tower"] == "zero-shot-head"]
    assert len(head) == 1 and head[0]["shipped"] and head[0]["labels_file"] == lab["file"]
    assert head[0]["inputs"][0]["name"] == "pixels" and head[0]["outputs"][0]["name"] == "logits"
    assert head[0]["outputs"][0]["shape"] == [1, len(LABELS)]
    assert head[0]["metrics"]["top1_agreement"] == 1.0 and head[0]["metrics"]["cosine_mean"] > 0.9999
    report = json.loads((built.bundle / "report.json").read_text())
    assert {r["metric"] for r in report["results"] if r["tower"] == "zero-shot-head"} >= {
        "cosine_mean", "top1_agreement", "latency_p50_ms"}
    # an ONNX web bundle: the onnxruntime-web + transformers.js snippet, nothing for Swift/Kotlin
    assert [(e["file"], e["language"]) for e in m["snippets"]] == [("snippets/EdgeClip.js", "javascript")]


def test_head_artifact_equals_the_fp32_torch_head(built):
    import torch
    from edgeclip.bundle import artifact_from_entry
    from edgeclip.verify.reference import Reference
    from edgeclip.verify.run import open_runner, run_rows
    m = load_manifest(built.bundle)
    entry = next(a for a in m["artifacts"] if a["tower"] == "zero-shot-head")
    ref = Reference.load(built.bundle / "reference")
    got = run_rows(open_runner(artifact_from_entry(built.bundle, entry)), ref.pixels)
    model = _model(built)
    with torch.no_grad():
        want = model.tower("zero-shot-head", LABELS, DEFAULT_TEMPLATES)(torch.from_numpy(ref.pixels)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_predict_ranks_with_stored_label_embeddings_and_logit_scale(built, capsys):
    out = predict(built.bundle, built.images)
    assert out["candidates_from"] == "bundle labels" and out["text_artifact"] is None  # no text tower ran
    m = load_manifest(built.bundle)
    scale = m["model"]["logit_scale"]
    assert out["logit_scale"] == scale
    for r in out["results"]:
        assert sorted(x["text"] for x in r["ranking"]) == sorted(LABELS)
        cos = np.array([x["cosine"] for x in r["ranking"]])
        p = np.exp(scale * cos - (scale * cos).max())
        np.testing.assert_allclose([x["probability"] for x in r["ranking"]], p / p.sum(), rtol=1e-6)
        assert (np.diff([x["probability"] for x in r["ranking"]]) <= 0).all()
    # the fused head artifact ranks the same way: its logits are scale x cosine with the same labels
    from edgeclip.commands.predict import BundleRunner
    br = BundleRunner(built.bundle)
    img_emb = br.encode_images(built.images[:1])
    head_logits = br._rows("zero-shot-head", _pixels(br, built.images[:1]))
    first = {x["text"]: x["cosine"] for x in out["results"][0]["ranking"]}
    np.testing.assert_allclose(head_logits[0] / scale, [first[x] for x in LABELS], atol=1e-4)
    assert img_emb.shape == (1, m["model"]["embed_dim"])

    assert main(["predict", str(built.bundle), "--image", built.images[0], "--top", "2"]) == 0
    printed = capsys.readouterr().out
    assert "text artifact none" in printed and printed.count("%") == 2


def test_predict_on_an_undecodable_or_truncated_image_is_a_one_line_input_error(built, tmp_path, capsys):
    junk = tmp_path / "broken.jpg"
    junk.write_bytes(b"not an image at all")
    whole = Path(built.images[0]).read_bytes()
    cut = tmp_path / f"truncated{Path(built.images[0]).suffix}"
    cut.write_bytes(whole[:len(whole) // 2])
    for bad in (junk, cut):
        assert main(["predict", str(built.bundle), "--image", str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("edgeclip: error: image ") and str(bad) in err[0], err
        assert "cannot decode" in err[0] and "internal error" not in err[0]


def _pixels(br, paths):
    from edgeclip.data import decode_image
    from edgeclip.models._preprocess import preprocess_images
    p = br.manifest["preprocessing"]
    return preprocess_images([np.array(decode_image(x)) for x in paths], p["image_size"], p["mean"], p["std"],
                             p["resize_mode"]).numpy()


def test_labels_argument_matches_stored_labels(built, capsys):
    stored = predict(built.bundle, built.images)
    given = predict(built.bundle, built.images, labels=LABELS)
    assert given["text_artifact"] and given["templates"] == list(DEFAULT_TEMPLATES)
    for a, b in zip(stored["results"], given["results"]):
        assert [x["text"] for x in a["ranking"]] == [x["text"] for x in b["ranking"]]
        np.testing.assert_allclose([x["probability"] for x in a["ranking"]],
                                   [x["probability"] for x in b["ranking"]], atol=1e-4)
    # the CLI takes the same labels from the file too, and --text ranks raw texts
    assert main(["predict", str(built.bundle), "--image", *built.images, "--labels", str(built.labels), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert [x["text"] for x in cli["results"][0]["ranking"]] == [x["text"] for x in given["results"][0]["ranking"]]
    assert main(["predict", str(built.bundle), "--image", built.images[0], "--text", "a cat", "a dog", "--json"]) == 0
    assert {x["text"] for x in json.loads(capsys.readouterr().out)["results"][0]["ranking"]} == {"a cat", "a dog"}
    assert main(["predict", str(built.bundle), "--image", built.images[0], "--labels", "cat,cat"]) == 2
    assert "'cat' appears twice" in capsys.readouterr().err


def test_zip_round_trip(built, cache, capsys):
    m = load_manifest(built.bundle)
    with zipfile.ZipFile(built.zip) as zf:
        assert sorted(zf.namelist()) == sorted(["manifest.json", *m["files"]])
    before = hashlib.sha256(built.zip.read_bytes()).hexdigest()
    from edgeclip.bundle.archive import write_zip
    write_zip(built.bundle, m)  # the same bundle gives the same bytes
    assert hashlib.sha256(built.zip.read_bytes()).hexdigest() == before

    a, b = predict(built.bundle, built.images), predict(built.zip, built.images)
    assert [r["ranking"] for r in a["results"]] == [r["ranking"] for r in b["results"]]
    extracted = [p for p in cache.glob("bundles/*") if p.is_dir()]
    assert len(extracted) == 1 and extracted[0].name.startswith("mini-")
    assert main(["inspect", str(built.zip)]) == 0
    assert "labels      red circle, blue square" in capsys.readouterr().out
    assert main(["verify", str(built.zip)]) == 0
    assert "all 3 shipped artifact(s) pass" in capsys.readouterr().out
    assert [p for p in cache.glob("bundles/*") if p.is_dir()] == extracted  # reused, not extracted again


def _rezip(src: Path, dst: Path, change: dict[str, bytes | None], extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = change.get(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info, data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return dst


def test_tampered_zip_is_refused_naming_the_file(built, cache, tmp_path, capsys):
    target = "artifacts/onnx-image-fp32.onnx"
    with zipfile.ZipFile(built.zip) as zf:
        raw = bytearray(zf.read(target))
    raw[len(raw) // 2] ^= 0xFF
    bad = _rezip(built.zip, tmp_path / "tampered.zip", {target: bytes(raw)})
    for cmd in (["predict", str(bad), "--image", built.images[0]], ["verify", str(bad)], ["inspect", str(bad)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert f"{target} does not match its sha256" in err and str(bad) in err and err.count("\n") == 1, err
    missing = _rezip(built.zip, tmp_path / "short.zip", {"labels/label_embeddings.npy": None})
    assert main(["inspect", str(missing)]) == 2
    assert "labels/label_embeddings.npy is missing" in capsys.readouterr().err
    extra = _rezip(built.zip, tmp_path / "extra.zip", {}, {"artifacts/payload.so": b"\x7fELF"})
    assert main(["inspect", str(extra)]) == 2
    assert "'artifacts/payload.so' is not listed in manifest.json" in capsys.readouterr().err
    assert not [p for p in cache.glob("bundles/*")]  # refused archives leave nothing behind


def test_snippets_agree_with_the_real_manifest(built, tmp_path):
    from edgeclip.bundle.snippets import write_snippets
    real = load_manifest(built.bundle)
    for backend, platform, name in (("litert", "android", "LiteRT.kt"), ("executorch", "android", "ExecuTorch.kt"),
                                    ("coreml", "ios", "CoreML.swift"), ("onnx", "web", "EdgeClip.js")):
        m = as_backend(real, backend, platform)
        entries = write_snippets(tmp_path / backend, m)
        assert [e["file"] for e in entries] == [f"snippets/{name}"]
        assert entries[0]["artifacts"] == [a["file"] for a in m["artifacts"]]
        assert_snippet_matches((tmp_path / backend / entries[0]["file"]).read_text(), m, backend)


def test_recipe_labels_rebuild_only_the_head_and_bundle(built):
    """Other labels, from the recipe this time, beside the first bundle: teacher, reference and the
    image/text exports come from the shared cache; only the head is exported again."""
    other = ["cat", "dog"]
    recipe = built.root / "tiny-labels.yaml"
    recipe.write_text(textwrap.dedent(RECIPE) + f"  labels: {json.dumps(other)}\n")
    out = built.root / "mini-recipe-labels"
    assert main(["build", "--target", str(built.target), "--recipe", str(recipe), "--out", str(out)]) == 0
    ran = {(e["stage"], e["status"]) for e in stage_log(out)}
    assert ("teacher", "cached") in ran and ("reference", "cached") in ran and ("teacher", "ran") not in ran
    exports = [e for e in stage_log(out) if e["stage"] == "export"]
    assert [e["status"] for e in exports].count("ran") == 1 and [e["status"] for e in exports].count("cached") == 2
    m = load_manifest(out)
    assert m["labels"]["names"] == other and m["labels"]["source"] == "recipe export.labels"
    head = next(a for a in m["artifacts"] if a["tower"] == "zero-shot-head")
    assert head["outputs"][0]["shape"] == [1, 2]
    shutil.rmtree(out)
