"""Train a CLIP from scratch with the contrastive loss: how the offline default teacher
(``builtin:teacher-vit``) gets meaningful weights from the synthetic world, with no downloads.

``pretrain_clip(model, data=None, ...)`` re-draws the transformer blocks with CLIP's init, then
trains both towers and a learned logit scale on image-caption pairs, and returns the same
``ClipModel`` (eval mode, ``logit_scale`` updated). ``data`` defaults to a pool of synthetic
training scenes, each followed by its shape twin (a hard negative), whose renders are cached and
whose captions cycle through paraphrases epoch by epoch: rendering a 64 px scene costs about as
much CPU as a teacher-vit training step spends per sample, so a rendered pool seen several
times with changing captions learns more per second than fresh scenes. No pixel augmentation:
flips, crops and colour jitter would make the captions (left/right, position, size, colour) false.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .batches import StepBatches
from .losses import clip_loss
from .trainer import TrainConfig, TrainResult, Trainer, stage_checkpoint_every

__all__ = ["PRETRAIN_DEFAULTS", "ClipTrainModule", "PromptTrainModule", "ReinforcedTrainModule", "ClipCollate",
           "LabelledClipCollate", "SyntheticPairs", "shape_twin", "clip_init_", "default_pretrain_data", "train_clip",
           "pretrain_clip"]

# Tuned for builtin:teacher-vit on 2 CPU cores in about 2-3 minutes (see the distill report).
PRETRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 300, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.1, "warmup_steps": 50,
    "pool": 1024, "variants": 4, "twins": True,
}
MAX_LOGIT_SCALE = 100.0


class ClipTrainModule(nn.Module):
    """The trainable parts of a CLIP: both towers and the log of the logit scale."""

    def __init__(self, image: nn.Module, text: nn.Module, logit_scale: float):
        super().__init__()
        self.image, self.text = image, text
        self.logit_scale = nn.Parameter(torch.tensor(math.log(float(logit_scale))))

    def scale(self) -> torch.Tensor:
        # clamped in the graph (open_clip clamps the parameter after each step): at most 100
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor):
        # length-packed: the same embeddings, without the work on padding (TextTower.forward_packed)
        return self.image(pixels), self.text.forward_packed(ids), self.scale()


class PromptTrainModule(ClipTrainModule):
    """A CLIP's trainable parts whose forward also embeds the label prompts (``prompt_loss.py``),
    in one text batch with the captions, so everything goes through the (DDP-wrapped) forward."""

    def __init__(self, image: nn.Module, text: nn.Module, logit_scale: float, prompt_ids: torch.Tensor):
        super().__init__(image, text, logit_scale)
        self.register_buffer("prompt_ids", prompt_ids, persistent=False)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor):
        both = self.text.forward_packed(torch.cat([ids, self.prompt_ids.to(ids.dtype)]))
        n = ids.shape[0]
        return self.image(pixels), both[:n], both[n:], self.scale()


class ReinforcedTrainModule(ClipTrainModule):
    """MobileCLIP's trainable parts: the forward also embeds the synthetic captions (one text
    batch with the real ones), so everything goes through the (DDP-wrapped) forward."""

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor, syn_ids: torch.Tensor):
        both = self.text.forward_packed(torch.cat([ids, syn_ids]))
        n = ids.shape[0]
        return self.image(pixels), both[:n], both[n:], self.scale()


def clip_init_(module: nn.Module, seed: int = 0) -> int:
    """Re-draw the transformer blocks of ``module`` with CLIP's initialization (Radford et al.,
    open_clip's text tower): q/k/v ``width^-0.5``, attention and MLP output projections
    ``width^-0.5 * (2*layers)^-0.5``, MLP input ``(2*width)^-0.5``; biases zero. Returns the number
    of blocks re-drawn (0 for towers that are not edgeclip transformers, left untouched).

    Why: with a 0.02-normal init every attention is near uniform and every embedding of a batch
    nearly identical (off-diagonal cosine 0.98 on teacher-vit), so the CLIP loss sits at log(B)
    for ~100 steps; with this init the same budget ends ~0.7 nats lower."""
    blocks = [m for m in module.modules() if _is_block(m)]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for b in blocks:
            w = b.attn.q.in_features
            depth_std = w ** -0.5 * (2 * len(blocks)) ** -0.5
            for lin, std in ((b.attn.q, w ** -0.5), (b.attn.k, w ** -0.5), (b.attn.v, w ** -0.5),
                             (b.attn.out, depth_std), (b.mlp.fc, (2 * w) ** -0.5), (b.mlp.proj, depth_std)):
                nn.init.normal_(lin.weight, std=std)
                if lin.bias is not None:
                    nn.init.zeros_(lin.bias)
    return len(blocks)


def _is_block(m: nn.Module) -> bool:
    attn, mlp = getattr(m, "attn", None), getattr(m, "mlp", None)
    names = (("q", "k", "v", "out"), ("fc", "proj"))
    return all(isinstance(getattr(part, n, None), nn.Linear)
               for part, ns in zip((attn, mlp), names) for n in ns)


def _clip_step(model: nn.Module, batch) -> torch.Tensor:
    pixels, ids = batch
    image_emb, text_emb, scale = model(pixels, ids)
    return clip_loss(image_emb, text_emb, scale)


def _prompt_step(prompts):
    def step(model: nn.Module, batch) -> dict[str, torch.Tensor]:
        pixels, ids, labels = batch
        image_emb, text_emb, prompt_emb, scale = model(pixels, ids)
        clip = clip_loss(image_emb, text_emb, scale)
        prompt = prompts(image_emb, prompt_emb, labels, scale)
        return {"loss": clip + prompt, "clip": clip.detach(), "prompt": prompt.detach()}
    return step


def shape_twin(scene, rng: np.random.Generator):
    """``scene`` with its first object (all objects of a count scene) given another shape, the
    colour kept and the new shape-colour pair a train pair: a counterfactual hard negative."""
    from ..data import HELDOUT_PAIRS
    from ..data.synthetic import SHAPES

    first = scene.objects[0]
    taken = {(o.shape, o.colour) for o in scene.objects}
    options = [s for s in SHAPES if (s, first.colour) not in HELDOUT_PAIRS | taken]
    new = options[int(rng.integers(len(options)))]
    objs = tuple(replace(o, shape=new) if scene.kind == "count" or k == 0 else o
                 for k, o in enumerate(scene.objects))
    return replace(scene, objects=objs)


class SyntheticPairs:
    """A ``SyntheticWorld`` with renders cached and ``variants`` paraphrases per scene, the
    caption of epoch ``e`` being variant ``e % variants`` (canonical captions without paraphrase).

    ``twins=True`` follows every scene with its ``shape_twin`` (items ``2k``, ``2k+1``; ``group``
    is 2 so they share a batch): in random batches a caption is told apart by its colour,
    background, size or position long before shape matters; a twin can only be told by shape."""

    def __init__(self, world, variants: int = 4, twins: bool = False, renders: dict | None = None):
        self.world, self.variants, self.epoch = world, max(1, int(variants)), 0
        self.twins, self.group = bool(twins), 2 if twins else 1
        self._items: dict[int, tuple[np.ndarray, list[str]]] = {}
        # renders shared with the same world's pairs in other languages: same scenes, same pixels
        self._renders: dict = {} if renders is None else renders

    def __len__(self) -> int:
        return len(self.world) * self.group

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def scene(self, i: int):
        w = self.world
        base = w.scene(i // self.group)
        if i % self.group == 0:
            return base
        return shape_twin(base, np.random.default_rng([w.seed, 7, i // self.group]))

    def captions(self, i: int) -> list[str]:
        """Every caption variant of pair ``i``, epoch by epoch (nothing rendered)."""
        return self._captions_of(self.scene(i))

    def _captions_of(self, scene) -> list[str]:
        from ..data import caption, paraphrases

        w = self.world
        return paraphrases(scene, self.variants, w.lang, seed=w.seed) if w.paraphrase else [caption(scene, w.lang)]

    def __getitem__(self, i: int):
        from ..data import render_scene
        from .prompt_loss import scene_labels

        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} pairs")
        if i not in self._items:
            w, s = self.world, self.scene(i)
            key = (w.seed, w.split, w.image_size, self.twins, i)
            if key not in self._renders:
                self._renders[key] = render_scene(s, w.image_size)
            self._items[i] = (self._renders[key], self._captions_of(s), scene_labels(s))
        image, caps, labels = self._items[i]
        return image, caps[self.epoch % len(caps)], {"index": i, "labels": labels}


class ClipCollate:
    """``[(uint8 HWC image, caption, meta), ...]`` -> ``(float32[B,3,S,S], int32[B,L])``, with the
    model's own preprocessing (size, mean, std, resize mode) and tokenizer; token ids cached."""

    def __init__(self, facts, tokenizer):
        self.facts, self.tokenizer = facts, tokenizer
        self._pre: dict[tuple[int, int], nn.Module] = {}
        self._ids: dict[str, np.ndarray] = {}

    def _pixels(self, image: np.ndarray) -> torch.Tensor:
        from ..models.towers import InGraphPreprocess

        a = np.ascontiguousarray(image[..., :3])
        hw = (int(a.shape[0]), int(a.shape[1]))
        if hw not in self._pre:
            f = self.facts
            self._pre[hw] = InGraphPreprocess(f.image_size, f.mean, f.std, hw, f.resize_mode)
        with torch.no_grad():
            return self._pre[hw](torch.from_numpy(a)[None])[0]

    def __call__(self, items: list) -> tuple[torch.Tensor, torch.Tensor]:
        if not items:
            raise ConfigError("cannot collate an empty batch")
        pixels = torch.stack([self._pixels(img) for img, _, _ in items]).contiguous()
        return pixels, self.encode([c for _, c, _ in items])

    def encode(self, caps: list[str]) -> torch.Tensor:
        """``int32[B, L]`` token ids, each distinct caption tokenized once."""
        new = [c for c in dict.fromkeys(caps) if c not in self._ids]
        if new:
            self._ids.update(zip(new, self.tokenizer.encode(new)))
        return torch.from_numpy(np.stack([self._ids[c] for c in caps]))


class LabelledClipCollate(ClipCollate):
    """``ClipCollate`` plus each item's ``meta["labels"]`` (``prompt_loss.scene_labels``) as
    ``int64[B, kinds]``: what the label prompt loss trains on."""

    def __call__(self, items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pixels, ids = super().__call__(items)
        try:
            labels = [meta["labels"] for _, _, meta in items]
        except (KeyError, TypeError):
            raise ConfigError("pretrain.prompt_loss needs the synthetic world's scene labels; set it to 0 "
                              "for other training data") from None
        return pixels, ids, torch.tensor(labels, dtype=torch.int64)


def _languages(pairs) -> tuple[str, ...]:
    """The caption languages of synthetic pairs (one dataset, or one per language interleaved)."""
    sets = getattr(pairs, "datasets", [pairs])
    langs = tuple(dict.fromkeys(getattr(getattr(d, "world", None), "lang", None) for d in sets))
    if None in langs:
        raise ConfigError("pretrain.prompt_loss needs synthetic-world training data (its labels and "
                          "languages); set it to 0 for other training data")
    return langs


def default_pretrain_data(image_size: int, seed: int = 0, pool: int = PRETRAIN_DEFAULTS["pool"],
                          variants: int = PRETRAIN_DEFAULTS["variants"], lang: str = "en",
                          twins: bool = PRETRAIN_DEFAULTS["twins"], renders: dict | None = None):
    """The synthetic world's train split (English, paraphrased captions) as cached pairs:
    ``pool`` scenes (each followed by its shape twin when ``twins``); ``renders``: a cache shared
    with the same pool in other languages."""
    from ..data import SyntheticWorld

    world = SyntheticWorld(seed=seed, image_size=image_size, split="train", length=pool,
                           lang=lang, paraphrase=True)
    return SyntheticPairs(world, variants, twins, renders)


def _as_pairs(data, model, seed: int):
    from ..data import SyntheticWorld

    if data is None:
        return default_pretrain_data(model.facts.image_size, seed)
    if isinstance(data, SyntheticWorld):
        return SyntheticPairs(data, PRETRAIN_DEFAULTS["variants"], PRETRAIN_DEFAULTS["twins"])
    return data


def train_clip(model, data=None, *, steps: int, batch_size: int, lr: float, weight_decay: float,
               warmup_steps: int, seed: int = 0, device: str = "auto", checkpoint_dir: str | None = None,
               progress: bool = True, desc: str = "pretrain", reinit: bool = False,
               threads: int | None = None, prompt_loss: float = 0.0) -> TrainResult:
    """Train ``model`` (a ``ClipModel``) in place with ``clip_loss``; returns the training record.
    ``reinit``: first re-draw the transformer blocks with ``clip_init_`` (training from scratch).

    ``data``: None (the synthetic world), a ``SyntheticWorld``, any map-style dataset of
    ``(image, caption, meta)`` (batched by ``StepBatches``: resumable, sharded by rank), or an
    iterable of ready ``(float32[B,3,S,S], int32[B,L])`` batches. ``prompt_loss`` > 0 adds the label
    prompt loss with that weight (``prompt_loss.py``; synthetic-world data only)."""
    home = model.device
    if reinit:
        clip_init_(model.image, seed)
        clip_init_(model.text, seed + 1)
    pairs = _as_pairs(data, model, seed)
    collate, module, step = ClipCollate(model.facts, model.tokenizer), None, _clip_step
    if prompt_loss > 0:
        from .prompt_loss import PromptLoss

        prompts = PromptLoss(_languages(pairs), prompt_loss, getattr(model.image.encoder, "slices", None))
        collate = LabelledClipCollate(model.facts, model.tokenizer)
        module = PromptTrainModule(model.image, model.text, model.logit_scale, collate.encode(prompts.prompts))
        step = _prompt_step(prompts)
    if hasattr(pairs, "__getitem__") and hasattr(pairs, "__len__"):
        batches = StepBatches(pairs, batch_size, seed=seed, collate=collate, group=getattr(pairs, "group", 1))
    elif prompt_loss > 0:
        raise ConfigError("pretrain.prompt_loss needs synthetic-world training data; set it to 0 for "
                          "ready-made batches")
    else:
        batches = pairs
    module = module or ClipTrainModule(model.image, model.text, model.logit_scale)
    cfg = TrainConfig(steps=steps, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, seed=seed,
                      device=device, checkpoint_dir=checkpoint_dir, progress=progress, desc=desc,
                      threads=threads, checkpoint_every=stage_checkpoint_every(steps, checkpoint_dir))
    trainer = Trainer(module, step, batches, cfg)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    model.logit_scale = float(module.scale().detach())
    model.config = dict(model.config, logit_scale=model.logit_scale)
    model.facts = replace(model.facts, weights="trained:clip-loss")
    model.to(home).eval()
    return result


def pretrain_clip(model, data=None, steps: int = PRETRAIN_DEFAULTS["steps"],
                  batch_size: int = PRETRAIN_DEFAULTS["batch_size"], lr: float = PRETRAIN_DEFAULTS["lr"],
                  weight_decay: float = PRETRAIN_DEFAULTS["weight_decay"],
                  warmup_steps: int = PRETRAIN_DEFAULTS["warmup_steps"], seed: int = 0,
                  device: str = "auto", *, checkpoint_dir: str | None = None, progress: bool = True,
                  reinit: bool = True, threads: int | None = None, prompt_loss: float = 0.0):
    """Train a ``ClipModel`` from scratch with ``clip_loss``; returns it (eval mode, on its
    original device, ``logit_scale`` learned). Its transformer blocks are first re-drawn with
    CLIP's init (``reinit=False`` keeps the given weights, e.g. to fine-tune). See ``train_clip``
    for ``data``. ``threads``: CPU threads while training (1 is several times faster than 2 on a
    2-core machine that something else keeps busy)."""
    train_clip(model, data, steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
               warmup_steps=warmup_steps, seed=seed, device=device, checkpoint_dir=checkpoint_dir,
               progress=progress, reinit=reinit, threads=threads, prompt_loss=prompt_loss)
    return model
