"""TinyCLIP method: options, manual inheritance + affinity mimicking on the embedded world, and a
two-stage progressive recipe built end to end (ONNX target, real runtime)."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch

from edgeclip.cli import main
from edgeclip.config import DistillStage
from edgeclip.errors import ConfigError
from edgeclip.distill.tinyclip import TinyClipOptions, check, distill, parse_options

from _tiny_configs import MINI_TARGET


def test_options_are_validated_before_work():
    assert parse_options({}).inherit == "manual" and parse_options({}).logit_scale == 50.0
    for bad, match in [({"inherit": "magic"}, "inherit"), ({"alpha": 2}, "alpha"),
                       ({"logit_scale": 0}, "logit_scale"), ({"image": {"depth": 2}}, "unknown keys"),
                       ({"inherit": "auto"}, "target_sparsity"), ({"target_sparsity": 0.5}, "only apply"),
                       ({"bogus": 1}, "unknown keys")]:
        with pytest.raises(ConfigError, match=match):
            parse_options(bad)
    with pytest.raises(ConfigError, match="sparsity_warmup"):
        check(DistillStage(method="tinyclip", steps=10,
                           options={"inherit": "auto", "target_sparsity": 0.5, "sparsity_warmup": 50}))


def _data(student, teacher, n=64, batch=16):
    from edgeclip.config import DataSource
    from edgeclip.distill._data import distill_batches

    return distill_batches(DataSource(source="synthetic", samples=n), student, teacher, batch, seed=0)


def test_manual_inheritance_mimics_the_teacher():
    from edgeclip.models import build_builtin

    teacher = build_builtin("tiny-vit", seed=0)
    opts = TinyClipOptions(image={"width": 32}, text={"layers": 1})
    student, rec = distill(teacher, teacher, opts, steps=24, batch_size=16, lr=2e-3, weight_decay=0.0,
                           warmup_steps=2, data=_data(teacher, teacher), progress=False)
    assert rec["inherited"]["image"]["heads"] == 2 and rec["inherited"]["text"]["layers"] == [0]
    assert rec["params"]["student"]["image"] < 0.4 * rec["params"]["teacher"]["image"]
    losses = rec["losses"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05, losses  # it learns the affinities
    assert student.logit_scale == pytest.approx(50.0)                # fixed, as the paper runs
    assert student.text.encoder.spec.layers == 1 and student.image.encoder.spec.width == 32


TINY_TEACHER = """
version: 1
name: tinyclip-mini
teacher: builtin:tiny-vit
seed: 0
pretrain: {steps: 20, batch_size: 16, lr: 0.002, warmup_steps: 2}
distill:
  - {method: tinyclip, name: half, steps: 12, batch_size: 16, lr: 0.002, warmup_steps: 2,
     options: {image: {width: 48}, text: {layers: 1}}}
  - {method: tinyclip, name: quarter, steps: 12, batch_size: 16, lr: 0.002, warmup_steps: 2,
     options: {image: {width: 32, layers: 2}}}
data:
  train: {source: synthetic, samples: 64}
  eval:
    - {source: synthetic, split: heldout, samples: 12, languages: [en]}
    - {source: digits, samples: 10}
quantization:
  calibration_samples: 4
"""


@pytest.mark.slow
def test_progressive_recipe_builds_end_to_end(tmp_path, capsys):
    recipe, target = tmp_path / "r.yaml", tmp_path / "mini.yaml"
    recipe.write_text(textwrap.dedent(TINY_TEACHER))
    target.write_text(MINI_TARGET)
    out = tmp_path / "out"
    assert main(["build", "--target", str(target), "--recipe", str(recipe), "--plan"]) == 0
    assert "tinyclip" in capsys.readouterr().out
    rc = main(["build", "--target", str(target), "--recipe", str(recipe), "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.out + cap.err
    cache = tmp_path / ".cache"
    records = sorted(cache.glob("distill-*/distill.json"), key=lambda p: p.stat().st_mtime)
    assert len(records) == 2
    first, second = (json.loads(p.read_text()) for p in records)
    # stage 2 starts from stage 1's student, not from the teacher
    assert second["params"]["init"] == first["params"]["student"]
    assert second["params"]["student"]["image"] < first["params"]["student"]["image"] \
        < first["params"]["teacher"]["image"]
    assert second["inherited"]["image"]["layers"] == [0, 1]
    assert "zero_shot" in second and set(second["zero_shot"]) == {"teacher", "student"}
    manifest = json.loads((out / "manifest.json").read_text())
    shipped = [a for a in manifest["artifacts"] if a["shipped"]]
    assert {a["tower"] for a in shipped} == {"image", "text"}
    # the bundle holds the student: its image tower is the quarter-size one
    from edgeclip.models import load_model
    student = load_model(f"file:{sorted(cache.glob('distill-*/model.safetensors'), key=lambda p: p.stat().st_mtime)[-1]}")
    assert student.image.encoder.spec.width == 32
    assert manifest["model"]["uri"].endswith(":student")

    # a killed rerun is not needed: an identical rerun runs no stage
    assert main(["build", "--target", str(target), "--recipe", str(recipe), "--out", str(out)]) == 0
    log = [json.loads(x) for x in (out / "stage-log.jsonl").read_text().splitlines()]
    assert [e for e in log if e["stage"] == "distill" and e["status"] == "cached"]


def test_vit_8m_recipe_student_is_the_papers_shape():
    """recipes/tinyclip-vit-8m.yaml on a random-init ViT-B/32 (no download): the student is
    ViT-8M/16 + Text-3M (parameters without embeddings), its text inherits layers 0, 4, 8."""
    from pathlib import Path

    from edgeclip.config import load_recipe
    from edgeclip.distill.tinyclip import make_student
    from edgeclip.models import load_model

    recipe = load_recipe(Path(__file__).parents[2] / "recipes" / "tinyclip-vit-8m.yaml")
    check(recipe.distill[0])
    teacher = load_model("openclip:ViT-B-32")  # architecture only, random weights
    student, info = make_student(teacher, parse_options(recipe.distill[0].options), seed=0)
    blocks = lambda tower: sum(p.numel() for p in getattr(student, tower).encoder.blocks.parameters())  # noqa: E731
    assert 7.5e6 < blocks("image") < 8.5e6 and 2.2e6 < blocks("text") < 2.6e6
    assert student.image.encoder.spec.patch_size == 16 and student.facts.embed_dim == 512
    assert info == {"text": {"layers": [0, 4, 8], "heads": 4, "width": 256}}
    t_blk, s_blk = teacher.text.encoder.blocks[4], student.text.encoder.blocks[1]
    assert torch.equal(s_blk.attn.q.weight, t_blk.attn.q.weight[:256, :256])


def test_auto_inheritance_learns_a_smaller_student():
    """inherit: auto masks hidden dims, heads and neurons under the ramped sparsity target while
    mimicking, then prunes: the student really is smaller and still a plain, exportable model."""
    from edgeclip.models import build_builtin

    teacher = build_builtin("tiny-vit", seed=0)
    opts = TinyClipOptions(inherit="auto", target_sparsity=0.5, sparsity_warmup=30, mask_lr=0.2,
                           init_log_alpha=2.0)
    student, rec = distill(teacher, teacher, opts, steps=60, batch_size=16, lr=2e-3, weight_decay=0.0,
                           warmup_steps=2, data=_data(teacher, teacher), progress=False)
    blocks = lambda m, t: sum(p.numel() for p in getattr(m, t).encoder.blocks.parameters())  # noqa: E731
    kept = (blocks(student, "image") + blocks(student, "text")) / (blocks(teacher, "image") + blocks(teacher, "text"))
    assert kept < 0.8, (kept, rec["inherited"]["auto"])
    assert set(rec["inherited"]["auto"]) >= {"image", "text"}
    ex = student.image.example_inputs(1)
    ep = torch.export.export(student.image, ex, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(*ex), student.image(*ex))
