"""`edgeclip pretrain`: trains the recipe's teacher once, scores it in en + zh, builds reuse it."""
from __future__ import annotations

import json
import textwrap

import pytest

from edgeclip.cli import main

from _tiny_configs import MINI_TARGET

RECIPE = """
version: 1
name: tinypt
teacher: builtin:tiny-vit
seed: 0
pretrain: {steps: 3, batch_size: 8, warmup_steps: 1}
data:
  train: {source: synthetic, samples: 64, languages: [en]}
  eval:
    - {source: digits, samples: 10}
"""


@pytest.mark.slow
@pytest.mark.toolchain
def test_pretrain_trains_once_scores_both_languages_and_builds_reuse_it(tmp_path, capsys):
    recipe, target, root = tmp_path / "r.yaml", tmp_path / "mini.yaml", tmp_path / "build"
    recipe.write_text(textwrap.dedent(RECIPE))
    target.write_text(MINI_TARGET)
    assert main(["pretrain", "--recipe", str(recipe), "--out", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "trained in" in printed and "chance" in printed and "zh" in printed
    [folder] = list((root / ".cache").glob("teacher-*"))
    assert not list((root / ".cache").glob("ckpt-*"))   # the resume checkpoint goes once the teacher is in
    scores = json.loads((folder / "zero_shot.json").read_text())
    assert set(scores) == {"en", "zh"}
    for kinds in scores.values():
        assert set(kinds) == {"shape", "colour", "shape-colour", "retrieval-i2t", "retrieval-t2i"}
        for k, s in kinds.items():
            assert 0.0 <= s["accuracy"] <= 1.0
            if not k.startswith("retrieval"):
                assert s["chance"] == pytest.approx(1 / s["classes"])
            else:  # duplicate captions make chance a little above 1/n
                assert 1 / s["n"] <= s["chance"] < 0.1

    assert main(["pretrain", "--recipe", str(recipe), "--out", str(root)]) == 0
    assert "found cached" in capsys.readouterr().out

    # a build under the same root finds the pretrained teacher instead of training again
    assert main(["build", "--target", str(target), "--recipe", str(recipe), "--out", str(root / "mini")]) == 0
    log = [json.loads(x) for x in (root / "mini" / "stage-log.jsonl").read_text().splitlines()]
    assert {"stage": "teacher", "status": "cached"}.items() <= next(e for e in log if e["stage"] == "teacher").items()


def test_recipe_without_pretrain_section_is_a_one_line_input_error(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(RECIPE).replace("pretrain: {steps: 3, batch_size: 8, warmup_steps: 1}\n", ""))
    assert main(["pretrain", "--recipe", str(recipe), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "no 'pretrain' section" in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_teacher_key_follows_the_builtin_architecture_and_a_checkpoint_s_bytes(tmp_path, monkeypatch):
    """An edited builtin or a replaced checkpoint file is a new teacher, not a cache hit whose
    weights no longer fit the architecture."""
    from dataclasses import replace

    from edgeclip.build.stages.teacher import teacher_key
    from edgeclip.config import default_recipe
    from edgeclip.models import builtins

    recipe = default_recipe()
    key = teacher_key(recipe, "t")
    assert teacher_key(recipe, "t") == key
    name = recipe.teacher.removeprefix("builtin:")
    original = builtins.MODELS.get(name)
    monkeypatch.setitem(builtins.MODELS._items, name,
                        lambda **o: {**original(**o), "image": {**original(**o)["image"], "image_size": 32}})
    assert teacher_key(recipe, "t") != key
    ckpt = tmp_path / "t.safetensors"
    ckpt.write_bytes(b"one")
    r = replace(recipe, teacher=f"file:{ckpt}", pretrain=None)
    before = teacher_key(r, "t")
    ckpt.write_bytes(b"two")
    assert teacher_key(r, "t") != before
