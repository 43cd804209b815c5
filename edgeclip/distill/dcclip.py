"""DC-CLIP (arXiv 2404.11249): a multilingual student in two stages. The paper has no public
code; where it is silent the choices below are ours (and tested):

- Stage 1, ``phase: features``: a lightweight image student learns the teacher's image
  embeddings, and a multilingual text student learns the teacher's *English* text embedding from
  the caption in every language (its embedding of a Chinese caption must land on the teacher's
  embedding of the parallel English one). Each tower ends in an adapter (a linear map from the
  student's embedding width to the teacher's, the 1x1 adapter of the paper applied to the pooled
  embedding rather than to feature maps); loss ``SmoothL1 + (1 - cosine)`` per tower. After the
  stage the adapters are folded into the towers' output projections, so the student speaks the
  teacher's embedding space with no extra op at inference.
- Stage 2, ``phase: align``: symmetric InfoNCE between images and their captions in every
  language (the mean over languages), learned logit scale. It starts from the previous stage's
  student, or from a fresh ``student:`` (the stage-2-only baseline).
- Tokenizer: ``tokenizer: teacher`` keeps the student's own, ``{train: {vocab_size: N}}`` trains a
  multilingual BPE (``models/bpe_train.py``: NFKC + lowercase, one pre-token per CJK character,
  byte fallback, context 48 unless ``context_length`` is given) on the recipe's training captions
  in every language; the student's text tower is sized to it and it ships with the bundle.

    - method: dcclip
      student: builtin:tiny-vit
      options: {phase: features, tokenizer: {train: {vocab_size: 2000}}, smooth_l1_weight: 1, cosine_weight: 1}
    - method: dcclip
      options: {phase: align}
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import check_tokenizer_train
from ..errors import ConfigError
from ._options import options_from

__all__ = ["DcClipOptions", "parse_options", "check", "describe", "run", "evaluate_languages"]

PHASES = ("features", "align")


@dataclass(frozen=True)
class DcClipOptions:
    phase: str = "features"
    tokenizer: Any = "teacher"
    smooth_l1_weight: float = 1.0
    cosine_weight: float = 1.0
    logit_scale: float | str = "learn"
    evaluate: bool = True

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ConfigError(f"dcclip phase: {self.phase!r}; use one of {', '.join(PHASES)}")
        if self.tokenizer != "teacher":
            check_tokenizer_train(self.tokenizer, "dcclip tokenizer ('teacher' or a trained BPE)")
        if min(self.smooth_l1_weight, self.cosine_weight) < 0 or self.smooth_l1_weight + self.cosine_weight == 0:
            raise ConfigError("dcclip smooth_l1_weight/cosine_weight: non-negative and not both 0")


def parse_options(options: dict[str, Any]) -> DcClipOptions:
    return options_from(DcClipOptions, options, "dcclip")


def check(stage, recipe=None) -> None:
    opts = parse_options(stage.options)
    src = recipe.data.train if recipe is not None else None
    if src is not None:
        from ._data import parallel_pairs

        parallel_pairs(src, 64, 0)  # a wrong source, too few languages, a CSV without the columns: now
    if opts.phase == "features" and stage.student is None:
        raise ConfigError("dcclip phase features trains a new lightweight student: set student: "
                          "(e.g. builtin:tiny-vit)")
    if opts.tokenizer != "teacher" and stage.student is None:
        raise ConfigError("dcclip tokenizer: train only applies to a new student (set student:)")


def describe(stage) -> str:
    o = parse_options(stage.options)
    who = f"new student {stage.student}" if stage.student else "previous stage's student"
    from ..models.bpe_train import DEFAULT_VOCAB
    tok = "own tokenizer" if o.tokenizer == "teacher" else \
        f"trained BPE ({o.tokenizer['train'].get('vocab_size', DEFAULT_VOCAB)})"
    what = "feature distillation to the teacher (SmoothL1 + cosine, adapters folded)" if o.phase == "features" \
        else "multilingual InfoNCE alignment"
    return f"{what}, {who}, {tok}"


def _new_student(stage, opts: DcClipOptions, pairs, seed: int):
    from ..models import load_model
    from .pretrain import clip_init_

    student = load_model(stage.student)
    if opts.tokenizer != "teacher":
        from ..models.bpe_train import train_bpe, with_tokenizer

        texts = _caption_texts(pairs)
        # Chinese costs about a token per character: 48 holds the embedded world's longest caption
        kw = {"context_length": 48, **opts.tokenizer["train"]}
        tok = train_bpe(texts, **kw)
        student = with_tokenizer(student.config, tok)
    clip_init_(student.image, seed)
    clip_init_(student.text, seed + 1)
    return student


def _caption_texts(pairs, limit: int = 50_000) -> list[str]:
    """Every language's captions of the first ``limit`` pairs."""
    if hasattr(pairs, "__getitem__"):
        return [c for i in range(min(len(pairs), limit)) for c in pairs[i][1].values()]
    texts = []
    for n, caps in enumerate(pairs.captions()):  # every row of the file, images not decoded
        if n == limit:
            break
        texts += caps.values()
    if not texts:
        raise ConfigError(f"{pairs.path} has no row with a caption in every language to train the tokenizer on")
    return texts


class _Collate:
    """``[(image, {lang: caption})]`` -> ``(pixels, {lang: ids}, teacher_pixels, teacher_ids)``:
    the teacher reads the first language (English), the student every language."""

    def __init__(self, student, teacher, langs):
        from .pretrain import ClipCollate

        self.s, self.t, self.langs = ClipCollate(student.facts, student.tokenizer), ClipCollate(teacher.facts, teacher.tokenizer), langs

    def __call__(self, items):
        import torch

        first = self.langs[0]
        pixels = torch.stack([self.s._pixels(im) for im, _ in items]).contiguous()
        ids = {lang: self.s.encode([caps[lang] for _, caps in items]) for lang in self.langs}
        t_pixels, t_ids = self.t([(im, caps[first], None) for im, caps in items])
        return pixels, ids, t_pixels, t_ids


def _fold(student, image_adapter, text_adapter):
    """A model whose projections are ``adapter @ proj``: embeddings in the teacher's space."""
    import torch

    from ..models import assemble

    cfg = json.loads(json.dumps(student.config))
    dim = int(image_adapter.weight.shape[0])
    cfg["image"]["embed_dim"] = cfg["text"]["embed_dim"] = dim
    cfg.pop("weights", None)
    folded = assemble(cfg, uri=student.uri, tokenizer=student.tokenizer, init=False)
    with torch.no_grad():
        for tower, adapter in (("image", image_adapter), ("text", text_adapter)):
            sd = getattr(student, tower).state_dict()
            w = sd["encoder.proj.weight"]
            sd["encoder.proj.weight"] = adapter.weight @ w
            if "encoder.proj.bias" in sd:
                sd["encoder.proj.bias"] = adapter.weight @ sd["encoder.proj.bias"]
            getattr(folded, tower).load_state_dict(sd)
    folded.logit_scale = student.logit_scale
    return folded


def _features(student, teacher, opts, batches, langs, cfg_kwargs):
    import torch
    from torch import nn

    from ..models import l2_normalize
    from .losses import feature_loss
    from .trainer import TrainConfig, fit_stage

    dt, ds = teacher.facts.embed_dim, student.facts.embed_dim

    class Stage1(nn.Module):
        def __init__(self):
            super().__init__()
            self.image, self.text = student.image, student.text
            self.image_adapter, self.text_adapter = nn.Linear(ds, dt, bias=False), nn.Linear(ds, dt, bias=False)

        def forward(self, pixels, ids: dict):
            img = l2_normalize(self.image_adapter(self.image.encoder(pixels)))
            return img, {lang: l2_normalize(self.text_adapter(self.text.encoder(x))) for lang, x in ids.items()}

    module = Stage1()
    teacher.eval()

    def step(model, batch):
        pixels, ids, t_pixels, t_ids = batch
        with torch.no_grad():
            t_img, t_txt = teacher.image(t_pixels), teacher.text(t_ids)
        img, txt = model(pixels, ids)
        w = dict(smooth_l1_weight=opts.smooth_l1_weight, cosine_weight=opts.cosine_weight)
        out = {"image": feature_loss(img, t_img, **w)}
        for lang in langs:  # every language's caption lands on the teacher's English embedding
            out[f"text_{lang}"] = feature_loss(txt[lang], t_txt, **w)
        out["loss"] = sum(out.values())
        return {k: (v if k == "loss" else v.detach()) for k, v in out.items()}

    result = fit_stage(module, step, batches, TrainConfig(**cfg_kwargs))
    student.to("cpu")
    return _fold(student, module.image_adapter.cpu(), module.text_adapter.cpu()), result


def _align(student, opts, batches, langs, cfg_kwargs):
    from .losses import clip_loss
    from .pretrain import ClipTrainModule
    from .trainer import TrainConfig, fit_stage

    learn = opts.logit_scale == "learn"
    module = ClipTrainModule(student.image, student.text, student.logit_scale if learn else float(opts.logit_scale))
    module.logit_scale.requires_grad_(learn)

    def step(model, batch):
        pixels, ids, _, _ = batch
        out = {}
        for lang in langs:
            img, txt, scale = model(pixels, ids[lang])
            out[f"clip_{lang}"] = clip_loss(img, txt, scale)
        out["loss"] = sum(out.values()) / len(langs)
        return {k: (v if k == "loss" else v.detach()) for k, v in out.items()}

    result = fit_stage(module, step, batches, TrainConfig(**cfg_kwargs))
    student.to("cpu")
    student.logit_scale = float(module.scale().detach())
    student.config = dict(student.config, logit_scale=student.logit_scale)
    return student, result


def evaluate_languages(model, langs, n: int = 200) -> dict:
    """Per language: held-out zero-shot top-1 (shape, colour, shape-colour) and retrieval R@1."""
    import torch

    from .evaluate import evaluate_synthetic, retrieval_r1

    out = {}
    with torch.no_grad():
        for lang in langs:
            zs = {k: s.accuracy for k, s in evaluate_synthetic(model, n=n, lang=lang).items()}
            r = retrieval_r1(model, n=n, lang=lang)
            out[lang] = {**zs, "i2t_r1": r["i2t_r1"], "t2i_r1": r["t2i_r1"]}
    if len(langs) > 1:
        a, b = langs[0], langs[1]
        out[f"gap_{a}_{b}"] = {k: out[a][k] - out[b][k] for k in out[a]}
    return out


def train_stage(teacher, init, stage, opts: DcClipOptions, source, seed: int = 0, checkpoint_dir=None,
                progress: bool = True, device: str = "auto"):
    """One DC-CLIP stage; returns ``(student, record)``."""
    import os

    from ._data import parallel_pairs, stream_batches
    from .batches import StepBatches
    from .trainer import stage_checkpoint_every

    # torchrun's environment: a streaming CSV is sharded by rank now, the trainer joins the group later
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    pairs = parallel_pairs(source, (init or teacher).facts.image_size, seed, rank=rank, world_size=world)
    fresh = stage.student is not None
    # (a CSV's tokenizer trains on every row of the file, so every rank trains the same one)
    student = _new_student(stage, opts, pairs, seed) if fresh else init
    collate = _Collate(student, teacher, pairs.langs)
    batches = (StepBatches(pairs, stage.batch_size, seed=seed, collate=collate) if hasattr(pairs, "__getitem__")
               else stream_batches(pairs, collate, max(1, stage.batch_size // world)))
    cfg = dict(steps=stage.steps, lr=stage.lr, weight_decay=stage.weight_decay, warmup_steps=stage.warmup_steps,
               seed=seed, checkpoint_dir=checkpoint_dir, progress=progress, desc=f"dcclip {opts.phase}", device=device,
               checkpoint_every=stage_checkpoint_every(stage.steps, checkpoint_dir))
    if opts.phase == "features":
        student, result = _features(student, teacher, opts, batches, pairs.langs, cfg)
    else:
        student, result = _align(student, opts, batches, pairs.langs, cfg)
    record = {"phase": opts.phase, "fresh_student": fresh, "languages": list(pairs.langs),
              "data": _describe_pairs(source, pairs),
              "params": {who: {"image": int(m.facts.params_image), "text": int(m.facts.params_text)}
                         for who, m in (("teacher", teacher), ("student", student))},
              "tokenizer": {"kind": student.tokenizer.kind, "vocab_size": int(student.tokenizer.vocab_size)},
              "steps": result.steps, "final_loss": result.final_loss, "samples_per_s": result.samples_per_s,
              "wall_s": result.wall_s, "device": result.device, "world_size": result.world_size,
              "precision": result.precision, "resumed_at_step": result.start_step, "losses": result.losses[:: max(1, len(result.losses) // 50)],
              "parts": {k: v[-1] for k, v in result.parts.items()}}
    return student.eval(), record


def _describe_pairs(source, pairs) -> dict:
    """What the stage trained on: the source, and for a CSV its columns and a whole pass's counts."""
    if source.source != "csv":
        return {"source": source.source, "samples": len(pairs)}
    done = pairs.completed
    return {"source": "csv", "path": str(source.path), "columns": pairs.columns,
            "rows": done.summary() if done else "no pass over the whole file finished within the stage's steps"}


def run(teacher_dir: Path, init_dir: Path, stage, recipe, out: Path, checkpoint_dir: Path | None = None,
        device: str = "auto") -> None:
    from ..models import load_model, save_model

    opts = parse_options(stage.options)
    check(stage)
    t0 = time.perf_counter()
    teacher = load_model(f"file:{Path(teacher_dir) / 'model.safetensors'}").eval()
    init = None if stage.student else load_model(f"file:{Path(init_dir) / 'model.safetensors'}")
    student, record = train_stage(teacher, init, stage, opts, recipe.data.train, seed=recipe.seed,
                                  checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None, device=device)
    record.update({"stage": asdict(stage), "seconds": time.perf_counter() - t0})
    if opts.evaluate:
        langs = tuple(recipe.data.train.languages)
        record["eval"] = {"teacher": evaluate_languages(teacher, langs), "student": evaluate_languages(student, langs)}
    save_model(student, Path(out) / "model.safetensors")
    (Path(out) / "distill.json").write_text(json.dumps(record, indent=2, default=str))
