"""MobileCLIP method: options, reinforcement (ensemble of two teachers, sharded, resumable,
byte-identical on rerun, stored embeddings equal the teachers' on the replayed views), reinforced
training without the teachers, and a recipe built end to end (ONNX target, real runtime)."""
from __future__ import annotations

import hashlib
import json
import textwrap

import numpy as np
import pytest
import torch

from edgeclip.cli import main
from edgeclip.config import DataSource, DistillStage
from edgeclip.errors import ConfigError
from edgeclip.distill.mobileclip import check, parse_options

from _tiny_configs import build_mini

REINFORCE = {"k": 2, "syn": 2, "shard_size": 10, "samples": 24, "image_size": 48,
             "augment": {"crop_scale": [0.6, 1.0], "num_ops": 1, "ops": ["Identity", "Brightness", "ShearX"]}}


def test_options_are_validated_before_work():
    assert parse_options({}).w1 == 1.0
    for bad, match in [({"w0": 0, "w1": 0}, "w0/w1"), ({"bogus": 1}, "unknown keys"),
                       ({"teacher_logit_scale": "big"}, "teacher_logit_scale"),
                       ({"reinforce": {"k": 0}}, "k"), ({"reinforce": {"dtype": "fp8"}}, "dtype"),
                       ({"reinforce": {"augment": {"ops": ["Melt"]}}}, "Melt"),
                       ({"teachers": ["nope"]}, "SCHEME")]:
        with pytest.raises(ConfigError, match=match):
            parse_options(bad)
    with pytest.raises(ConfigError, match="student"):
        check(DistillStage(method="mobileclip"))


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def teachers():
    from edgeclip.models import build_builtin

    return [build_builtin("tiny-vit", seed=0).eval(), build_builtin("tiny-vit", seed=1).eval()]


@pytest.fixture(scope="module")
def reinforced(tmp_path_factory, teachers):
    from edgeclip.distill.reinforce import parse_reinforce_options, reinforce

    out = tmp_path_factory.mktemp("dr") / "reinforced"
    index = reinforce(DataSource(source="synthetic", samples=64), teachers, ["builtin:tiny-vit", "builtin:tiny-vit#1"],
                      parse_reinforce_options(REINFORCE), out, seed=0, progress=False)
    return out, index


def test_reinforced_dataset_holds_the_ensembles_view_embeddings(reinforced, teachers):
    from edgeclip.data.augment import AugmentConfig, apply_params
    from edgeclip.data.reinforced import ReinforcedDataset
    from edgeclip.distill.reinforce import teacher_image_embeddings

    out, index = reinforced
    assert index["complete"] and index["samples"] == 24 and len(index["shards"]) == 3
    assert [t["dim"] for t in index["teachers"]] == [64, 64]
    ds = ReinforcedDataset(out)
    s = ds[13]
    assert s.image_emb.shape == (2, 128) and s.text_emb.shape == (3, 128) and len(s.syn_captions) == 2
    for emb in (s.image_emb, s.text_emb):  # each teacher's slice is L2-normalized
        np.testing.assert_allclose(np.linalg.norm(emb[:, :64], axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(emb[:, 64:], axis=1), 1, atol=1e-5)
    assert len(set(s.syn_captions)) == 2 and s.caption not in s.syn_captions  # paraphrases, not copies
    aug = AugmentConfig.from_dict(index["augment"])
    again = teacher_image_embeddings(teachers, s.image, s.param_aug, aug)
    np.testing.assert_allclose(s.image_emb, again, atol=1e-5)
    with torch.no_grad():
        t1 = teachers[1].encode_text([s.syn_captions[1]]).numpy()[0]
    np.testing.assert_allclose(s.text_emb[2, 64:], t1, atol=1e-5)
    # the views differ from one another: the stored augmentations are real
    views = [apply_params(s.image, p, 32, aug) for p in s.param_aug]
    assert not np.array_equal(views[0], views[1])


def test_reinforce_resumes_and_is_byte_identical(reinforced, teachers):
    from edgeclip.data.reinforced import read_index, write_index
    from edgeclip.distill.reinforce import parse_reinforce_options, reinforce

    out, index = reinforced
    before = {p.name: _sha(p) for p in out.glob("*.tar")}
    (out / index["shards"][1]["file"]).unlink()     # a killed run: one shard missing,
    write_index(out, dict(read_index(out), complete=False))  # the index not finished
    again = reinforce(DataSource(source="synthetic", samples=64), teachers, ["builtin:tiny-vit", "builtin:tiny-vit#1"],
                      parse_reinforce_options(REINFORCE), out, seed=0, progress=False)
    assert again["complete"] and {p.name: _sha(p) for p in out.glob("*.tar")} == before


def test_reinforced_training_learns_from_stored_targets(reinforced):
    from edgeclip.distill.mobileclip import MobileClipOptions, make_student, train_reinforced

    out, _ = reinforced
    student = make_student("builtin:tiny-mci", seed=0)
    rec = train_reinforced(student, out, MobileClipOptions(), steps=30, batch_size=8, lr=3e-3, weight_decay=0.0,
                           warmup_steps=2, progress=False)
    losses = rec["losses"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05, losses
    assert rec["teacher_dims"] == [64, 64] and rec["samples"] == 24


RECIPE = """
version: 1
name: mobileclip-mini
teacher: builtin:tiny-vit
seed: 0
pretrain: {steps: 10, batch_size: 16, lr: 0.002, warmup_steps: 2}
distill:
  - method: mobileclip
    student: builtin:tiny-mci
    steps: 10
    batch_size: 8
    lr: 0.002
    warmup_steps: 2
    options:
      reinforce: {k: 2, syn: 2, samples: 16, shard_size: 8, image_size: 48}
data:
  train: {source: synthetic, samples: 64}
  eval:
    - {source: synthetic, split: heldout, samples: 12, languages: [en]}
    - {source: digits, samples: 10}
quantization:
  calibration_samples: 4
"""


@pytest.mark.slow
def test_mobileclip_recipe_builds_end_to_end(tmp_path, capsys):
    out = build_mini(tmp_path, RECIPE, capsys)
    [record] = list((tmp_path / ".cache").glob("distill-*/distill.json"))
    rec = json.loads(record.read_text())
    assert rec["samples"] == 16 and rec["steps"] == 10
    manifest = json.loads((out / "manifest.json").read_text())
    shipped = {a["tower"] for a in manifest["artifacts"] if a["shipped"]}
    assert shipped == {"image", "text"}
    # the bundle holds the conv student, not the ViT teacher
    from edgeclip.models import load_model
    student = load_model(f"file:{record.parent / 'model.safetensors'}")
    assert student.config["image"]["kind"] == "mci"


NO_PRETRAIN = """
version: 1
name: reinforce-mini
teacher: builtin:tiny-vit
seed: 0
distill:
  - method: mobileclip
    student: builtin:tiny-mci
    options:
      reinforce: {k: 2, syn: 2, samples: 20, shard_size: 5, image_size: 40}
data:
  train: {source: synthetic, samples: 64}
"""


@pytest.mark.slow
def test_reinforce_command_under_torchrun_matches_one_process(tmp_path, capsys):
    """`edgeclip reinforce` on 2 torchrun ranks (gloo) writes the same shards, byte for byte, as
    one process: each rank takes shards r, r+2, ... and rank 0 completes the index."""
    import os
    import subprocess
    import sys

    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(NO_PRETRAIN))
    one = tmp_path / "one"
    assert main(["reinforce", "--recipe", str(recipe), "--out", str(one)]) == 0
    assert "reinforced 20 samples in 4 shards" in capsys.readouterr().out
    two = tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                           "-m", "edgeclip", "reinforce", "--recipe", str(recipe), "--out", str(two)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shards = sorted(p.name for p in one.glob("*.tar"))
    assert shards == sorted(p.name for p in two.glob("*.tar")) and len(shards) == 4
    assert all(_sha(one / s) == _sha(two / s) for s in shards)
    a, b = (json.loads((d / "index.json").read_text()) for d in (one, two))
    assert a["complete"] and b["complete"] and a["shards"] == b["shards"]
