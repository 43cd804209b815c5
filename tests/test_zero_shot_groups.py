"""Honest zero-shot accuracy: per evaluation group beside its chance level and the fp32
reference, never one average across groups; a group whose labels the model never learned
(digits and photos for a model trained on the embedded world; everything for random weights)
reports agreement with the reference only, and says so."""
from __future__ import annotations

import json
import textwrap
from types import SimpleNamespace

import pytest

from edgeclip.build.evalset import label_domain, labels_in_domain
from edgeclip.cli import main
from edgeclip.config import Thresholds
from edgeclip.verify.gate import check_accuracy
from edgeclip.verify.report import Record, metric_records

from _tiny_configs import MINI_TARGET


def _recipe(teacher, pretrain=None, distill=()):
    return SimpleNamespace(teacher=teacher, pretrain=pretrain, distill=list(distill))


@pytest.mark.parametrize("recipe, domain", [
    (_recipe("builtin:teacher-vit"), "none"), (_recipe("builtin:teacher-vit", pretrain=object()), "world"),
    (_recipe("builtin:tiny-vit", distill=[object()]), "world"), (_recipe("file:/x/model.safetensors"), "world"),
    (_recipe("openclip:ViT-B-32"), "none"), (_recipe("openclip:ViT-B-32/laion2b_s34b_b79k"), "web"),
    (_recipe("openclip:ViT-B-32//ckpt.pt"), "web"), (_recipe("hf:openai/clip-vit-base-patch32", distill=[1]), "web"),
])
def test_what_the_weights_learned(recipe, domain):
    assert label_domain(recipe) == domain


def test_which_groups_report_absolute_accuracy():
    assert labels_in_domain("synthetic", "world") and not labels_in_domain("digits", "world")
    assert labels_in_domain("photos", "web") and labels_in_domain("digits", "web")
    assert not any(labels_in_domain(s, "none") for s in ("synthetic", "digits", "photos"))


def test_gate_checks_each_learned_group_and_keeps_the_whole_set_agreement():
    base = dict(model="m", target="t", backend="onnx", tower="image", quant="fp32", runner="ort", emulated=False)
    metrics = {"top1_agreement": 0.97, "zero_shot_groups": {
        "synthetic-heldout-shape-colour": {"agreement": 0.5, "top1": 0.40, "in_domain": True},
        "digits": {"agreement": 0.2, "top1": None, "in_domain": False}}}
    records = metric_records(base, metrics)
    assert {(r.metric, r.group) for r in records} == {
        ("top1_agreement", ""), ("top1_agreement", "synthetic-heldout-shape-colour"), ("top1_agreement", "digits"),
        ("zero_shot_top1", "synthetic-heldout-shape-colour")}  # no average over groups, no accuracy for digits
    short = check_accuracy(records, {"onnx/image/fp32": Thresholds(top1_agreement=0.9, zero_shot_top1=0.5)})
    assert [(s.metric, s.value) for s in short] == [("zero_shot_top1[synthetic-heldout-shape-colour]", 0.40)]
    assert not check_accuracy(records, {"onnx/image/fp32": Thresholds(top1_agreement=0.9, zero_shot_top1=0.3)})
    assert Record(**base, metric="zero_shot_top1", value=0.4, group="a").key() != \
        Record(**base, metric="zero_shot_top1", value=0.4, group="b").key()


RECIPE = """
version: 1
name: groups
teacher: builtin:tiny-vit
seed: 0
{pretrain}
data:
  train: {{source: synthetic, samples: 64, languages: [en]}}
  eval:
    - {{source: synthetic, split: heldout, samples: 12, languages: [en]}}
    - {{source: digits, samples: 10}}
"""


@pytest.mark.slow
@pytest.mark.toolchain
@pytest.mark.parametrize("pretrain", [True, False])
def test_report_shows_each_group_beside_chance_and_the_reference(tmp_path, pretrain, capsys):
    (tmp_path / "r.yaml").write_text(textwrap.dedent(RECIPE.format(
        pretrain="pretrain: {steps: 3, batch_size: 8, warmup_steps: 1}" if pretrain else "")))
    (tmp_path / "t.yaml").write_text(MINI_TARGET)
    out = tmp_path / "out"
    rc = main(["build", "--target", str(tmp_path / "t.yaml"), "--recipe", str(tmp_path / "r.yaml"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    groups = report["zero_shot_groups"]
    syn = next(g for name, g in groups.items() if name.startswith("synthetic"))
    assert syn["chance"] == pytest.approx(1 / syn["classes"]) and groups["digits"]["chance"] == pytest.approx(0.1)
    assert groups["digits"]["in_domain"] is False and groups["digits"]["reference_top1"] is None
    assert syn["in_domain"] is pretrain and (syn["reference_top1"] is not None) == pretrain
    zs = [r for r in report["results"] if r["metric"] == "zero_shot_top1"]
    assert all(r["group"] for r in zs)  # never one number across groups
    assert {r["group"] for r in zs} == ({n for n in groups if n.startswith("synthetic")} if pretrain else set())
    md = (out / "report.md").read_text()
    assert "## Zero-shot accuracy per evaluation group" in md and "| chance |" in md
    digits_row = next(line for line in md.splitlines() if line.startswith("| digits |"))
    assert "not trained on these labels" in digits_row and "agr " in digits_row
    assert "never learned the labels of" in md
    assert "zero_shot_top1" not in md.split("## Zero-shot accuracy per evaluation group")[0]
    assert main(["verify", str(out)]) == 0  # the bundle re-check reads the per-group metrics too
