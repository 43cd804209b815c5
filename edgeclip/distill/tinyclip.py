"""TinyCLIP (Wu et al., ICCV 2023; microsoft/Cream ``TinyCLIP/``): affinity mimicking with
weight inheritance.

One recipe stage::

    - method: tinyclip
      steps: 300
      batch_size: 64
      options:
        inherit: manual          # manual | auto | none (random init of the same shape)
        image: {width: 64}       # student shape: layers, width, heads, mlp_ratio, embed_dim, patch_size
        text: {layers: 2}
        inherit_towers: [image, text]  # manual: towers that inherit (the others start from CLIP's init)
        alpha: 1.0               # affinity weight; 1 - alpha goes to the CLIP loss
        logit_scale: 50          # student scale, fixed (the paper) or "learn"
        teacher_logit_scale: 50  # teacher scale, fixed (the paper) or "teacher" (its learned one)
        target_sparsity: 0.5     # auto: fraction of the transformer blocks' parameters to remove
        sparsity_warmup: 150     # auto: steps over which the target ramps up from 0 (default steps/2)
        mask_lr: 0.02            # auto: lr of the hard-concrete masks and Lagrange multipliers;
        init_log_alpha: 4.6      #   TinyCLIP's values need thousands of steps: short stages want ~0.2, ~2

Automatic inheritance (``inherit: auto``) learns which hidden dims, heads and FFN neurons to keep
with hard-concrete masks and a Lagrangian sparsity penalty (``hard_concrete.py``) while mimicking,
then physically prunes them (``models/prune.py``); the pruned student exports like any other.

The affinity teacher is always the recipe's teacher; the student starts from the previous stage's
model (the teacher itself for the first stage), which is how progressive recipes
(100% -> 50% -> 25%) chain: each stage inherits from the last and mimics the same teacher.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._options import options_from
from ..config.names import STUDENT_SHAPE_KEYS

__all__ = ["TinyClipOptions", "parse_options", "check", "describe", "make_student", "distill", "run"]

INHERIT_MODES = ("manual", "auto", "none")


@dataclass(frozen=True)
class TinyClipOptions:
    inherit: str = "manual"
    image: dict[str, Any] = field(default_factory=dict)
    text: dict[str, Any] = field(default_factory=dict)
    inherit_towers: tuple[str, ...] = ("image", "text")
    alpha: float = 1.0
    logit_scale: float | str = 50.0
    teacher_logit_scale: float | str = 50.0
    target_sparsity: float | None = None
    sparsity_warmup: int | None = None
    mask_lr: float = 0.02                # auto: lr of the masks and the Lagrange multipliers (TinyCLIP's)
    init_log_alpha: float = math.log(100)  # auto: masks start nearly open (TinyCLIP's)
    evaluate: bool = True

    def __post_init__(self):
        if self.inherit not in INHERIT_MODES:
            raise ConfigError(f"tinyclip inherit: unknown {self.inherit!r}; use one of {', '.join(INHERIT_MODES)}")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(f"tinyclip alpha: must be in [0, 1], found {self.alpha}")
        for key, word in (("logit_scale", "learn"), ("teacher_logit_scale", "teacher")):
            v = getattr(self, key)
            if not (v == word or (isinstance(v, (int, float)) and 0 < v <= 100)):
                raise ConfigError(f"tinyclip {key}: a number in (0, 100] or {word!r}, found {v!r}")
        if self.inherit == "auto":
            if self.target_sparsity is None or not 0 < self.target_sparsity < 1:
                raise ConfigError("tinyclip inherit: auto needs target_sparsity in (0, 1), the fraction of "
                                  f"parameters to remove, found {self.target_sparsity!r}")
            if self.image or self.text:
                raise ConfigError("tinyclip inherit: auto learns the student's shape; drop options.image/"
                                  "options.text (or use inherit: manual to give the shape)")
            if not self.mask_lr > 0:
                raise ConfigError(f"tinyclip mask_lr: must be > 0, found {self.mask_lr}")
        elif self.target_sparsity is not None or self.sparsity_warmup is not None:
            raise ConfigError("tinyclip target_sparsity/sparsity_warmup only apply to inherit: auto")
        object.__setattr__(self, "inherit_towers", tuple(self.inherit_towers))
        bad = sorted(set(self.inherit_towers) - {"image", "text"})
        if bad or (self.inherit == "manual" and not self.inherit_towers):
            raise ConfigError(f"tinyclip inherit_towers: a non-empty subset of [image, text], found "
                              f"{list(self.inherit_towers)}")
        for tower in ("image", "text"):
            bad = sorted(set(getattr(self, tower)) - set(STUDENT_SHAPE_KEYS))
            if bad:
                raise ConfigError(f"tinyclip options.{tower}: unknown keys {bad}; valid keys: {list(STUDENT_SHAPE_KEYS)}")


def parse_options(options: dict[str, Any]) -> TinyClipOptions:
    return options_from(TinyClipOptions, options, "tinyclip")


def check(stage, recipe=None) -> None:
    """Validate a stage before any work starts (called by the plan)."""
    opts = parse_options(stage.options)
    if stage.student is not None:
        raise ConfigError(f"tinyclip shapes its student from the previous stage's model with "
                          f"options.image/options.text; remove student: {stage.student}")
    if opts.inherit == "auto" and opts.sparsity_warmup is not None and not 0 <= opts.sparsity_warmup <= stage.steps:
        raise ConfigError(f"tinyclip sparsity_warmup {opts.sparsity_warmup} must be in [0, steps={stage.steps}]")


def describe(stage) -> str:
    """One line for ``build --plan``."""
    o = parse_options(stage.options)
    shape = ", ".join(f"{t} {getattr(o, t)}" for t in ("image", "text") if getattr(o, t))
    shape = shape or ("shape learned" if o.inherit == "auto" else "same shape")
    if o.inherit == "auto":
        how = f"learns its shape (auto, {o.target_sparsity:.0%} of its block parameters removed)"
    else:
        how = f"inherits {'+'.join(o.inherit_towers)} (manual)" if o.inherit == "manual" else "random init"
    return f"student {how}, {shape}; affinity alpha {o.alpha}"


def make_student(init, opts: TinyClipOptions, seed: int):
    """The stage's starting student: the init model reshaped, with inherited or fresh weights
    (towers that do not inherit get CLIP's init, as pretraining from scratch does)."""
    from ..models.inherit import inherit_model
    from .pretrain import clip_init_

    towers = {"manual": opts.inherit_towers, "auto": ("image", "text"), "none": ()}[opts.inherit]
    student, info = inherit_model(init, image=opts.image, text=opts.text, towers=towers, seed=seed)
    for i, tower in enumerate(("image", "text")):
        if tower not in towers:
            clip_init_(getattr(student, tower), seed + i)
    return student, info


def _teacher_scale(opts: TinyClipOptions, teacher) -> float:
    return float(teacher.logit_scale if opts.teacher_logit_scale == "teacher" else opts.teacher_logit_scale)


def distill(teacher, init, opts: TinyClipOptions, *, steps: int, batch_size: int, lr: float,
            weight_decay: float, warmup_steps: int, data, seed: int = 0, device: str = "auto",
            checkpoint_dir: str | None = None, progress: bool = True, desc: str = "tinyclip",
            eval_every: int = 0, on_eval=None):
    """Train a student from ``init`` to mimic ``teacher``'s affinities on ``data`` (a
    ``StepBatches`` or an iterable of ``(pixels, ids, teacher_pixels, teacher_ids)``).
    ``on_eval(step, student)`` is called every ``eval_every`` steps (learning curves).
    Returns ``(student, record)``; the student is in eval mode on the CPU."""
    import torch

    from .losses import tinyclip_loss
    from .pretrain import ClipTrainModule
    from .trainer import TrainConfig, fit_stage, stage_checkpoint_every

    student, info = make_student(init, opts, seed)
    t_scale = _teacher_scale(opts, teacher)
    learn = opts.logit_scale == "learn"
    module = ClipTrainModule(student.image, student.text,
                             student.logit_scale if learn else float(opts.logit_scale))
    module.logit_scale.requires_grad_(learn)
    masks = None
    if opts.inherit == "auto":
        from .hard_concrete import attach_clip_masks

        warm = opts.sparsity_warmup if opts.sparsity_warmup is not None else steps // 2
        masks = attach_clip_masks(module, target_sparsity=float(opts.target_sparsity), warmup_steps=warm,
                                  init_log_alpha=float(opts.init_log_alpha), mask_lr=float(opts.mask_lr),
                                  lambda_lr=float(opts.mask_lr))
    teacher.eval()
    for p in (*teacher.image.parameters(), *teacher.text.parameters()):
        p.requires_grad_(False)

    def step(model, batch):
        pixels, ids, t_pixels, t_ids = batch
        dev = next(teacher.image.parameters()).device
        with torch.no_grad():
            if dev != pixels.device:
                teacher.to(pixels.device)
            t_img, t_txt = teacher.image(t_pixels), teacher.text.forward_packed(t_ids)
        img, txt, scale = model(pixels, ids)
        out = tinyclip_loss(img, txt, scale, t_img, t_txt, t_scale, alpha=float(opts.alpha))
        if masks is not None:
            penalty, parts = masks.penalty(held[0].step)
            out["loss"] = out["loss"] + penalty
            out.update(parts)
        return out

    cfg = TrainConfig(steps=steps, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, seed=seed,
                      device=device, checkpoint_dir=checkpoint_dir, progress=progress, desc=desc,
                      checkpoint_every=stage_checkpoint_every(steps, checkpoint_dir))
    held: list = []  # the penalty's ramp follows the trainer's own step (a resume included)
    result = fit_stage(module, step, data, cfg, eval_every, on_eval and (lambda at: on_eval(at, student)), held)
    teacher.to("cpu")
    if masks is not None:
        student, info["auto"] = masks.prune(student)
    student.to("cpu")
    student.logit_scale = float(module.scale().detach())
    student.config = dict(student.config, logit_scale=student.logit_scale)
    record = {"inherit": opts.inherit, "inherited": info, "teacher_logit_scale": t_scale,
              "student_logit_scale": student.logit_scale, "steps": result.steps,
              "final_loss": result.final_loss, "samples_per_s": result.samples_per_s,
              "wall_s": result.wall_s, "device": result.device, "world_size": result.world_size,
              "precision": result.precision, "resumed_at_step": result.start_step,
              "losses": result.losses[:: max(1, len(result.losses) // 50)],
              "params": {"teacher": _params(teacher), "init": _params(init), "student": _params(student)}}
    return student.eval(), record


def _params(m) -> dict[str, int]:
    return {"image": int(m.facts.params_image), "text": int(m.facts.params_text)}


def run(teacher_dir: Path, init_dir: Path, stage, recipe, out: Path, checkpoint_dir: Path | None = None,
        device: str = "auto") -> None:
    """The pipeline's entry: distil into ``out/model.safetensors`` + ``out/distill.json``;
    ``checkpoint_dir`` (outside ``out``) lets a killed build resume mid-stage."""
    from ..models import load_model, save_model
    from ._data import distill_batches

    opts = parse_options(stage.options)
    teacher = load_model(f"file:{Path(teacher_dir) / 'model.safetensors'}")
    init = load_model(f"file:{Path(init_dir) / 'model.safetensors'}")
    t0 = time.perf_counter()
    # a reshaped student keeps the init model's preprocessing and tokenizer
    data = distill_batches(recipe.data.train, init, teacher, stage.batch_size, recipe.seed)
    student, record = distill(
        teacher, init, opts, steps=stage.steps, batch_size=stage.batch_size, lr=stage.lr,
        weight_decay=stage.weight_decay, warmup_steps=stage.warmup_steps, data=data, seed=recipe.seed,
        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None, device=device,
        desc=f"tinyclip {stage.name or ''}".strip())
    record["stage"] = asdict(stage)
    record["seconds"] = time.perf_counter() - t0
    if opts.evaluate and recipe.data.train.source == "synthetic":
        from .evaluate import evaluate_synthetic

        record["zero_shot"] = {who: {k: s.accuracy for k, s in evaluate_synthetic(m).items()}
                               for who, m in (("teacher", teacher), ("student", student))}
    save_model(student, Path(out) / "model.safetensors")
    (Path(out) / "distill.json").write_text(json.dumps(record, indent=2, default=str))
