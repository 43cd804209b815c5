"""DC-CLIP: the feature loss by hand, options, adapter folding, stage 1 pulling Chinese captions
onto the teacher's English embeddings, and a two-stage recipe built end to end (ONNX target)
whose bundle carries the trained multilingual tokenizer."""
from __future__ import annotations

import json
import math

import pytest
import torch

from edgeclip.config import DataSource, DistillStage
from edgeclip.distill.dcclip import DcClipOptions, _fold, check, parse_options, train_stage
from edgeclip.distill.losses import feature_loss
from edgeclip.errors import ConfigError

from _bundle_checks import assert_tokenizer_json_reproduces_vectors, run_web_snippet
from _tiny_configs import build_mini


def test_feature_loss_by_hand():
    t = torch.tensor([[0.0, 1.0]])
    assert feature_loss(t.clone(), t).item() == 0.0
    s = torch.tensor([[1.0, 0.0]])
    # SmoothL1 (beta 1) of differences (1, -1): 0.5 each, mean 0.5; cosine 0 -> 1 - 0 = 1
    assert feature_loss(s, t).item() == pytest.approx(1.5)
    assert feature_loss(s, t, smooth_l1_weight=0.0).item() == pytest.approx(1.0)
    u = torch.tensor([[math.sqrt(0.5), math.sqrt(0.5)]])
    assert feature_loss(u, t, smooth_l1_weight=0.0).item() == pytest.approx(1 - math.sqrt(0.5))
    with pytest.raises(ValueError, match="equal shapes"):
        feature_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_options_are_validated_before_work():
    assert parse_options({}).phase == "features"
    for bad, match in [({"phase": "magic"}, "phase"), ({"tokenizer": "bpe"}, "tokenizer"),
                       ({"tokenizer": {"train": {"size": 3}}}, "tokenizer"), ({"bogus": 1}, "unknown keys"),
                       ({"smooth_l1_weight": 0, "cosine_weight": 0}, "not both 0")]:
        with pytest.raises(ConfigError, match=match):
            parse_options(bad)
    with pytest.raises(ConfigError, match="student"):
        check(DistillStage(method="dcclip"))
    check(DistillStage(method="dcclip", options={"phase": "align"}))


def test_folded_adapters_equal_adapted_towers():
    from edgeclip.models import build_builtin

    m = build_builtin("tiny-vit", seed=0)
    g = torch.Generator().manual_seed(0)
    a_img, a_txt = torch.nn.Linear(64, 48, bias=False), torch.nn.Linear(64, 48, bias=False)
    with torch.no_grad():
        a_img.weight.copy_(torch.randn(48, 64, generator=g))
        a_txt.weight.copy_(torch.randn(48, 64, generator=g))
    folded = _fold(m, a_img, a_txt)
    px = m.image.example_inputs(2)[0]
    ids = torch.from_numpy(m.tokenizer.encode(["a red square", "一个红色的正方形"]))
    norm = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(folded.image(px), norm(a_img(m.image.encoder(px))), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(folded.text(ids), norm(a_txt(m.text.encoder(ids))), atol=1e-5, rtol=1e-5)
    assert folded.facts.embed_dim == 48


def test_stage1_pulls_chinese_captions_onto_the_teachers_english():
    from edgeclip.data import SyntheticWorld
    from edgeclip.models import build_builtin

    torch.set_num_threads(1)
    teacher = build_builtin("tiny-vit", seed=3).eval()
    stage = DistillStage(method="dcclip", student="builtin:tiny-vit", steps=40, batch_size=16, lr=3e-3,
                         warmup_steps=2, weight_decay=0.0)
    src = DataSource(source="synthetic", samples=128, languages=("en", "zh"))
    student, rec = train_stage(teacher, None, stage, DcClipOptions(), src, seed=0, progress=False)
    w = SyntheticWorld(seed=5, split="heldout", length=16)
    metas = [w[i][2] for i in range(16)]
    with torch.no_grad():
        t_en = teacher.encode_text([m["caption_en"] for m in metas])
        s_zh = student.encode_text([m["caption_zh"] for m in metas])
        s_en = student.encode_text([m["caption_en"] for m in metas])
    assert (s_zh * t_en).sum(-1).mean() > 0.5 and (s_en * t_en).sum(-1).mean() > 0.5, rec["parts"]
    assert rec["losses"][-1] < rec["losses"][0]


RECIPE = """
version: 1
name: dcclip-mini
teacher: builtin:tiny-vit
seed: 0
pretrain: {steps: 10, batch_size: 16, lr: 0.002, warmup_steps: 2}
distill:
  - {method: dcclip, name: features, student: "builtin:tiny-vit", steps: 10, batch_size: 16, lr: 0.003,
     warmup_steps: 2, options: {phase: features, tokenizer: {train: {vocab_size: 600}}}}
  - {method: dcclip, name: align, steps: 10, batch_size: 16, lr: 0.002, warmup_steps: 2,
     options: {phase: align}}
data:
  train: {source: synthetic, samples: 128, languages: [en, zh]}
  eval:
    - {source: synthetic, split: heldout, samples: 12, languages: [en, zh]}
quantization:
  calibration_samples: 4
"""


@pytest.mark.slow
def test_two_stage_recipe_builds_with_its_multilingual_tokenizer(tmp_path, capsys):
    out = build_mini(tmp_path, RECIPE, capsys)
    records = sorted((tmp_path / ".cache").glob("distill-*/distill.json"), key=lambda p: p.stat().st_mtime)
    first, second = (json.loads(p.read_text()) for p in records)
    assert first["phase"] == "features" and second["phase"] == "align" and not second["fresh_student"]
    assert first["tokenizer"]["kind"] == "hf" and first["tokenizer"]["vocab_size"] <= 600
    assert set(second["eval"]["student"]) == {"en", "zh", "gap_en_zh"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert [d["phase"] for d in manifest["model"]["distill"]] == ["features", "align"]
    report = (out / "report.md").read_text()  # the per-language table and the en-zh gap
    assert "accuracy per language" in report and "| student | gap en−zh |" in report
    assert manifest["tokenizer"]["type"] == "hf"
    vectors = json.loads((out / manifest["tokenizer"]["test_vectors"]).read_text())
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in json.dumps(v, ensure_ascii=False)) for v in vectors)
    assert_tokenizer_json_reproduces_vectors(out, manifest)  # DC-CLIP's own multilingual BPE
    js = run_web_snippet(out, tmp_path / "node", ["一个红色的圆形"])  # and Tokenizers.js in the web snippet
    assert js["ids"] == js["want_ids"]
