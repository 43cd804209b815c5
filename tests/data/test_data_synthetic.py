"""The synthetic world: determinism, held-out pairs, parallel captions, label sets, datasets."""
from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import pytest

from edgeclip.data import (
    HELDOUT_PAIRS, LABEL_KINDS, PreprocessCollate, SyntheticWorld, caption, class_labels, collate,
    labelled_eval_set, paraphrases, render_scene,
)
from edgeclip.data._vocab import COLOURS, SHAPES, WORDS
from edgeclip.errors import ConfigError


def test_same_seed_same_bytes_different_seed_different():
    a, b = SyntheticWorld(seed=7, length=6), SyntheticWorld(seed=7, length=6)
    c = SyntheticWorld(seed=8, length=6)
    for i in range(6):
        (ia, ca, ma), (ib, cb, mb) = a[i], b[i]
        assert ia.tobytes() == ib.tobytes() and ca == cb and ma == mb
    assert sum(a[i][0].tobytes() != c[i][0].tobytes() for i in range(6)) == 6
    assert [a[i][1] for i in range(6)] != [c[i][1] for i in range(6)]
    # Random access gives the same item as iteration (workers and DDP ranks rely on it).
    assert [x[1] for x in a] == [a[i][1] for i in range(6)]


@pytest.mark.parametrize("size", [32, 64, 224])
def test_resolutions_are_uint8_contiguous_and_consistent(size):
    world = SyntheticWorld(seed=1, image_size=size, length=3)
    img, _, meta = world[2]
    assert img.shape == (size, size, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    # The same scene at another resolution is the same picture: box-averaged down to 32 px
    # it matches the 32 px rendering up to anti-aliasing and noise.
    small = render_scene(world.scene(2), 32).astype(np.float32)
    down = img.astype(np.float32).reshape(32, size // 32, 32, size // 32, 3).mean((1, 3))
    assert np.abs(down - small).mean() < 6.0
    assert img.std() > 10  # not a blank canvas


def test_train_split_never_holds_heldout_pairs_and_heldout_always_does():
    train = SyntheticWorld(seed=0, split="train")
    held = SyntheticWorld(seed=0, split="heldout")
    seen_shapes, seen_colours, kinds, counts = set(), set(), set(), set()
    for i in range(400):
        s = train.scene(i)
        assert not set(s.pairs()) & HELDOUT_PAIRS, s
        seen_shapes |= {p[0] for p in s.pairs()}
        seen_colours |= {p[1] for p in s.pairs()}
        kinds.add(s.kind)
        counts.add(s.count)
    assert seen_shapes == set(SHAPES) and seen_colours == set(COLOURS)  # all parts seen...
    assert kinds == {"single", "count", "relation"} and counts == {1, 2, 3}
    for i in range(200):
        assert set(held.scene(i).pairs()) & HELDOUT_PAIRS  # ...just never these wholes
    assert len(HELDOUT_PAIRS) == 8
    assert {s for s, _ in HELDOUT_PAIRS} == set(SHAPES) and {c for _, c in HELDOUT_PAIRS} == set(COLOURS)


# --- parallel captions -------------------------------------------------------------------

_DIRECTION = {"left": "left", "right": "right", "top": "up", "above": "up", "bottom": "down",
              "below": "down", "centre": "centre"}


def _mentions(text: str, lang: str, kind: str) -> dict[str, set]:
    """Which attribute values a caption names, read back with the vocabulary tables."""
    li = 0 if lang == "en" else 1
    found: dict[str, set] = defaultdict(set)

    def has(word: str, plural: bool = False) -> bool:
        if lang == "zh":
            return word in text
        return re.search(rf"\b{re.escape(word)}{'(e?s)?' if plural else ''}\b", text) is not None

    for cat in ("shape", "colour", "size", "texture", "background", "bg_texture"):
        for value, words in WORDS[cat].items():
            if any(has(w, plural=cat == "shape") for w in words[li]):
                found[cat].add(value)
    where = "position" if kind == "single" else "relation" if kind == "relation" else None
    if where:
        for value, words in WORDS[where].items():
            if any(has(w) for w in words[li]):
                found["direction"].add(_DIRECTION[value])
    if kind == "count":
        for n, words in WORDS["count"].items():
            if any(has(w if lang == "en" else w + "个") for w in words[li][:1]):
                found["count"].add(n)
    return dict(found)


def test_english_and_chinese_captions_are_parallel():
    world = SyntheticWorld(seed=3, split="train")
    checked = 0
    for i in range(120):
        s = world.scene(i)
        en = [caption(s, "en")] + paraphrases(s, 8, "en")
        zh = [caption(s, "zh")] + paraphrases(s, 8, "zh")
        for e, z in zip(en, zh):
            me, mz = _mentions(e, "en", s.kind), _mentions(z, "zh", s.kind)
            assert me == mz, (e, z, me, mz)
            checked += 1
        # The canonical caption names exactly the scene's attributes.
        m = _mentions(en[0], "en", s.kind)
        assert m["shape"] == {o.shape for o in s.objects}
        assert m["colour"] == {o.colour for o in s.objects}
        assert m["size"] == {o.size for o in s.objects}
        assert m.get("texture", set()) == {o.texture for o in s.objects} - {"solid"}
        assert m["background"] == {s.background}
        if s.kind == "count":
            assert m["count"] == {s.count}
        if s.kind == "single":
            assert m["direction"] == {_DIRECTION[s.position]}
    assert checked == 120 * 9


def test_chinese_templates_read_naturally():
    world = SyntheticWorld(seed=0)
    by_kind = {}
    for i in range(60):
        s = world.scene(i)
        by_kind.setdefault(s.kind, s)
    rel = by_kind["relation"]
    zh = caption(rel, "zh")
    a, b = rel.objects
    # "一个红色的小正方形在蓝色圆形的左边" shape: subject, 在, reference, 的, direction word.
    assert re.search(rf"一个.*{WORDS['shape'][a.shape][1][0]}在.*{WORDS['shape'][b.shape][1][0]}的"
                     rf"{WORDS['relation'][rel.relation][1][0]}$", zh), zh
    cnt = by_kind["count"]
    assert ("两个" if cnt.count == 2 else "三个") in caption(cnt, "zh")
    assert not re.search(r"[a-zA-Z]", zh) and "的的" not in zh


def test_paraphrases_distinct_truthful_and_deterministic():
    s = SyntheticWorld(seed=5).scene(4)
    p = paraphrases(s, 5, "en")
    assert len(set(p)) == 5 and p == paraphrases(s, 5, "en")
    assert paraphrases(s, 5, "en", seed=1) != p
    for text in p:
        m = _mentions(text, "en", s.kind)
        assert m["shape"] == {o.shape for o in s.objects} and m["colour"] == {o.colour for o in s.objects}


def test_no_single_attribute_gives_the_caption_away():
    world = SyntheticWorld(seed=2)
    by_colour: dict[str, set] = defaultdict(set)
    shapes_by_colour: dict[str, set] = defaultdict(set)
    for i in range(300):
        s = world.scene(i)
        if s.kind == "single":
            o = s.objects[0]
            by_colour[o.colour].add(caption(s))
            shapes_by_colour[o.colour].add(o.shape)
    # Same colour, different shapes -> different captions: colour alone cannot retrieve them.
    rich = [c for c in by_colour if len(shapes_by_colour[c]) >= 2]
    assert len(rich) >= 6
    for c in rich:
        assert len(by_colour[c]) >= len(shapes_by_colour[c])
    # And a "shape" eval set on train pairs mixes colours within every class.
    ev = labelled_eval_set(64, "shape", split="train", seed=1, image_size=32)
    for label in range(len(SHAPES)):
        colours = {next(c for c in COLOURS if re.search(rf"\b{c}\b", cap))
                   for cap, y in zip(ev.captions, ev.labels) if y == label}
        assert len(colours) >= 3


@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_labelled_eval_sets_match_their_labels(kind):
    ev = labelled_eval_set(24, kind, split="heldout", seed=0, image_size=32)
    ls = class_labels(kind)
    assert ev.images.shape == (24, 32, 32, 3) and ev.images.dtype == np.uint8
    assert ev.images.flags.c_contiguous and ev.labels.dtype == np.int64
    assert ev.label_names == ls.names and len(ev.captions) == len(ev.captions_zh) == 24
    prompts = ls.prompts("en")
    assert len(prompts) == len(ls) and all("{}" not in p for ps in prompts for p in ps)
    assert all("{}" not in p for ps in ls.prompts("zh") for p in ps)
    for y, en, zh in zip(ev.labels, ev.captions, ev.captions_zh):
        v = ls.values[y]
        if kind == "shape-colour":
            assert v in HELDOUT_PAIRS
            assert re.search(rf"\b{v[1]} (\w+ )?{v[0]}\b", en), en
        elif kind == "count":
            assert re.search(rf"^{WORDS['count'][v][0][0]} " if v > 1 else r"^a ", en), en
            assert zh.startswith(f"{WORDS['count'][v][1][0]}个") or v == 1, zh
        elif kind in ("shape", "colour", "size"):
            assert re.search(rf"\b{v}", en)
        elif kind == "texture":
            assert (v in en) if v != "solid" else not re.search(r"striped|dotted", en)
        elif kind == "position":
            assert WORDS["position"][v][0][0] in en and WORDS["position"][v][1][0] in zh
    counts = np.unique(ev.labels, return_counts=True)[1]
    assert counts.max() - counts.min() <= 1


def test_heldout_shape_colour_eval_uses_only_heldout_classes_and_train_only_train():
    ls = class_labels("shape-colour")
    held = labelled_eval_set(16, "shape-colour", "heldout", image_size=32)
    train = labelled_eval_set(16, "shape-colour", "train", image_size=32)
    assert {ls.values[y] for y in held.labels} == set(HELDOUT_PAIRS)
    assert not {ls.values[y] for y in train.labels} & HELDOUT_PAIRS
    assert len(set(ls.names)) == 64 and "red square" in ls.names
    assert ls.names_zh[ls.names.index("red square")] == "红色正方形"
    assert class_labels("colour").prompts("zh")[0][0] == "一张红色图形的照片"


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="known: train, heldout"):
        SyntheticWorld(split="test")
    with pytest.raises(ConfigError, match="known: shape"):
        class_labels("material")
    with pytest.raises(ConfigError, match="en, zh"):
        SyntheticWorld(lang="fr")
    with pytest.raises(IndexError):
        SyntheticWorld(length=3)[3]


def test_chinese_items_and_epoch_paraphrases():
    zh_world = SyntheticWorld(seed=4, lang="zh", length=4)
    _, cap, meta = zh_world[1]
    assert cap == meta["caption_zh"] and re.search(r"[\u4e00-\u9fff]", cap)
    para = SyntheticWorld(seed=4, paraphrase=True, length=4)
    s = para.scene(1)
    e0 = para[1][1]
    para.set_epoch(1)
    e1 = para[1][1]
    assert e0 in paraphrases(s, 40, "en") and e1 in paraphrases(s, 40, "en", seed=1)
    assert para[1][2]["caption_en"] == caption(s, "en")


def test_torch_dataloader_with_both_collates():
    import torch
    from torch.utils.data import DataLoader

    from edgeclip.data import as_torch_dataset

    ds = as_torch_dataset(SyntheticWorld(seed=0, image_size=32, length=8))
    imgs, caps, metas = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert imgs.shape == (4, 32, 32, 3) and imgs.dtype == np.uint8 and len(caps) == 4
    assert [m["index"] for m in metas] == [0, 1, 2, 3]
    x, caps2, _ = next(iter(DataLoader(ds, batch_size=4, collate_fn=PreprocessCollate(size=24))))
    assert x.shape == (4, 3, 24, 24) and x.dtype == torch.float32 and x.is_contiguous()
    assert caps2 == caps
    assert -2.5 < float(x.min()) < float(x.max()) < 2.7  # normalized with CLIP's mean/std
