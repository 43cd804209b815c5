"""The label prompt loss (``distill/prompt_loss.py``) and pretraining with it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeclip.data import class_labels
from edgeclip.distill.pretrain import LabelledClipCollate, default_pretrain_data, pretrain_clip
from edgeclip.distill.prompt_loss import PROMPT_KINDS, PromptLoss, scene_labels
from edgeclip.errors import ConfigError

FACTORED = {"outline_widths": [8, 16, 16], "colour_widths": [8], "shape_dim": 16, "colour_dim": 8, "context_dim": 8,
            "context_width": 16, "context_layers": 1, "context_heads": 2, "embed_dim": 32, "image_size": 32}
TEXT = {"width": 32, "layers": 1, "heads": 2, "embed_dim": 32}


def factored(seed: int = 0):
    from edgeclip.models import build_builtin

    return build_builtin("teacher-factored", seed=seed, image=FACTORED, text=TEXT)


def test_scene_labels_name_the_shared_shape_and_colour_or_none():
    pairs = default_pretrain_data(32, pool=64)
    seen = {"single": 0, "mixed": 0}
    for i in range(len(pairs)):
        s = pairs.scene(i)
        got = scene_labels(s)
        for kind, label in zip(PROMPT_KINDS, got):
            vals = {getattr(o, kind) for o in s.objects}
            if len(vals) == 1:
                assert class_labels(kind).values[label] == vals.pop()
                seen["single"] += 1
            else:
                assert label == -1
                seen["mixed"] += 1
        assert pairs[i][2]["labels"] == got                  # what the collate reads
    assert seen["single"] and seen["mixed"]


def test_collate_adds_labels_and_refuses_data_without_them():
    m = factored()
    pairs = default_pretrain_data(32, pool=8)
    pixels, ids, labels = LabelledClipCollate(m.facts, m.tokenizer)([pairs[i] for i in range(4)])
    assert labels.shape == (4, len(PROMPT_KINDS)) and labels.dtype == torch.int64
    odd = (np.zeros((32, 32, 3), np.uint8), "a red square", {"index": 0})
    with pytest.raises(ConfigError, match="scene labels"):
        LabelledClipCollate(m.facts, m.tokenizer)([odd])


def _loss_inputs(slices):
    torch.manual_seed(0)
    loss = PromptLoss(("en", "zh"), 1.0, slices)
    image = torch.nn.functional.normalize(torch.randn(6, 32), dim=-1)
    prompts = torch.randn(len(loss.prompts), 32)
    labels = torch.tensor([[0, 1], [3, -1], [-1, 2], [5, 5], [7, 0], [-1, -1]])
    return loss, image, prompts, labels, torch.tensor(10.0)


def test_on_a_factored_tower_each_kind_sees_only_its_own_slice():
    sl = factored().image.encoder.slices
    loss, image, prompts, labels, scale = _loss_inputs(sl)
    shape_only = labels.clone()
    shape_only[:, 1] = -1
    base = loss(image, prompts, shape_only, scale)
    other = image.clone()
    other[:, sl["colour"]] += torch.randn(6, sl["colour"].stop - sl["colour"].start)
    other[:, sl["context"]] = 0
    torch.testing.assert_close(loss(other, prompts, shape_only, scale), base)   # shape ignores colour, context
    moved = prompts.clone()
    moved[:, sl["colour"]] += 1.0                           # a shape prompt that says "some colour"
    assert loss(image, moved, shape_only, scale) != base    # is told apart: its colour slice is trained
    plain, *_ = _loss_inputs(None)                          # no slices (a ViT): the whole embedding counts
    assert plain(other, prompts, shape_only, scale) != plain(image, prompts, shape_only, scale)


def test_the_loss_averages_languages_and_skips_rows_without_a_label():
    loss, image, prompts, labels, scale = _loss_inputs(None)
    assert len(loss.prompts) == 2 * sum(len(class_labels(k).values) * len(class_labels(k).prompts("en")[0])
                                        for k in PROMPT_KINDS)
    none = torch.full_like(labels, -1)
    assert loss(image, prompts, none, scale) == 0
    assert loss(image, prompts, labels, scale) > 0


def test_pretraining_with_the_prompt_loss_logs_both_terms_and_trains_both_towers():
    from edgeclip.distill.pretrain import train_clip

    m = factored()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    res = train_clip(m, default_pretrain_data(32, pool=32), steps=4, batch_size=16, lr=3e-3, weight_decay=0.1,
                     warmup_steps=1, device="cpu", progress=False, prompt_loss=1.0)
    assert set(res.parts) == {"clip", "prompt"} and all(len(v) == 4 for v in res.parts.values())
    assert min(res.parts["prompt"]) > 0
    after = m.state_dict()
    for part in ("image.encoder.outline.", "image.encoder.colours.", "image.encoder.context.", "text."):
        assert any(not torch.equal(before[k], v) for k, v in after.items() if k.startswith(part)), part


def test_the_prompt_loss_refuses_data_that_is_not_the_synthetic_world():
    m = factored()
    batches = [(torch.zeros(2, 3, 32, 32), torch.zeros(2, 32, dtype=torch.int32))]
    with pytest.raises(ConfigError, match="synthetic"):
        pretrain_clip(m, batches, steps=1, batch_size=2, progress=False, prompt_loss=1.0)


def test_a_negative_prompt_loss_is_a_config_error():
    from edgeclip.config.config import PretrainConfig

    with pytest.raises(ConfigError, match="prompt_loss: must be >= 0"):
        PretrainConfig(prompt_loss=-1)
