"""MobileCLIP (Vasu et al., CVPR 2024; apple/ml-mobileclip): multi-modal reinforced training.

One recipe stage::

    - method: mobileclip
      student: builtin:tiny-mci          # the architecture trained from scratch (required)
      steps: 300
      options:
        reinforced: null                 # a dataset written by `edgeclip reinforce`; null: made here
        teachers: []                     # extra ensemble members after the recipe's teacher
        reinforce: {k: 10, syn: 5, dtype: fp32, captioner: paraphrase, augment: {...}}
        w0: 0.0                          # CLIP-loss weight (MobileCLIP-S: 0, B: 0.25)
        w1: 1.0                          # distillation weight (S: 1, B: 0.75)
        teacher_logit_scale: teacher     # a number, one per teacher, or each teacher's own
        logit_scale: learn               # the student's, learned from its init (or a fixed number)
        synthetic_captions: true         # false: train on the real captions only

Training replays a stored augmentation of each image at the student's resolution and reads the
teachers' stored embeddings of that view and of a real and a synthetic caption: the teachers
never run during training. The reinforced dataset is made once per (teachers, data, options) in
the stage's checkpoint folder, so a killed build resumes it too.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ._options import options_from

__all__ = ["MobileClipOptions", "parse_options", "check", "describe", "ReplayPairs", "train_reinforced", "run"]


@dataclass(frozen=True)
class MobileClipOptions:
    reinforced: str | None = None
    teachers: tuple[str, ...] = ()
    reinforce: dict[str, Any] = field(default_factory=dict)
    w0: float = 0.0
    w1: float = 1.0
    teacher_logit_scale: Any = "teacher"
    logit_scale: float | str = "learn"
    synthetic_captions: bool = True      # false: the real captions only (an ablation/baseline)
    evaluate: bool = True

    def __post_init__(self):
        object.__setattr__(self, "teachers", tuple(self.teachers))
        if self.w0 < 0 or self.w1 < 0 or self.w0 + self.w1 == 0:
            raise ConfigError(f"mobileclip w0/w1: non-negative, not both 0, found {self.w0}, {self.w1}")
        t = self.teacher_logit_scale
        ok = t == "teacher" or isinstance(t, (int, float)) or (
            isinstance(t, (list, tuple)) and all(isinstance(v, (int, float)) for v in t))
        if not ok:
            raise ConfigError(f"mobileclip teacher_logit_scale: a number, a list of numbers or 'teacher', found {t!r}")
        if not (self.logit_scale == "learn" or (isinstance(self.logit_scale, (int, float)) and self.logit_scale > 0)):
            raise ConfigError(f"mobileclip logit_scale: 'learn' or a positive number, found {self.logit_scale!r}")
        from ..config import parse_model_uri

        for uri in self.teachers:
            parse_model_uri(uri)


def parse_options(options: dict[str, Any]) -> MobileClipOptions:
    opts = options_from(MobileClipOptions, options, "mobileclip")
    from .reinforce import parse_reinforce_options

    parse_reinforce_options(opts.reinforce)
    return opts


def check(stage, recipe=None) -> None:
    opts = parse_options(stage.options)
    if stage.student is None:
        raise ConfigError("mobileclip trains a student from scratch: set student: (e.g. builtin:tiny-mci "
                          "or openclip:MobileCLIP2-S0)")
    if opts.reinforced and not Path(opts.reinforced).exists():
        raise ConfigError(f"mobileclip reinforced: {opts.reinforced} does not exist; run edgeclip reinforce "
                          "first or drop the option to reinforce inside the build")


def describe(stage) -> str:
    o = parse_options(stage.options)
    data = f"reinforced data {o.reinforced}" if o.reinforced else "reinforces data.train first"
    return f"student {stage.student} from scratch, {data}, loss w0={o.w0} w1={o.w1}"


class ReplayPairs:
    """A ``ReinforcedDataset`` seen by a student of resolution ``size``: item ``i`` of epoch ``e``
    replays augmentation ``k`` and picks synthetic caption ``j`` from ``rng([seed, e, i])``."""

    def __init__(self, dataset, size: int, seed: int = 0):
        from ..data.augment import AugmentConfig
        from ..data.reinforced import read_index

        self.ds, self.size, self.seed, self.epoch = dataset, int(size), int(seed), 0
        self.aug = AugmentConfig.from_dict(read_index(dataset.root)["augment"])

    def __len__(self) -> int:
        return len(self.ds)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, i: int):
        from ..data.augment import apply_params

        s = self.ds[i]
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        k, j = int(rng.integers(len(s.param_aug))), int(rng.integers(len(s.syn_captions)))
        view = apply_params(s.image, s.param_aug[k], self.size, self.aug)
        return view, s.caption, s.syn_captions[j], s.image_emb[k], s.text_emb[0], s.text_emb[1 + j]


class ReplayCollate:
    """Items of ``ReplayPairs`` -> ``(pixels, ids, syn_ids, t_image, t_text, t_syn)`` tensors."""

    def __init__(self, facts, tokenizer):
        self.mean, self.std, self.tokenizer = facts.mean, facts.std, tokenizer
        self._ids: dict[str, np.ndarray] = {}

    def _encode(self, texts: list[str]):
        import torch

        new = [t for t in dict.fromkeys(texts) if t not in self._ids]
        if new:
            self._ids.update(zip(new, self.tokenizer.encode(new)))
        return torch.from_numpy(np.stack([self._ids[t] for t in texts]))

    def __call__(self, items):
        import torch

        from .reinforce import _normalize

        views, caps, syns, ti, tt, ts = zip(*items)
        pixels = _normalize(np.stack(views), self.mean, self.std).contiguous()
        as_t = lambda a: torch.from_numpy(np.stack(a).astype(np.float32))  # noqa: E731
        return pixels, self._encode(list(caps)), self._encode(list(syns)), as_t(ti), as_t(tt), as_t(ts)


def _teacher_scales(opts: MobileClipOptions, index: dict):
    t = opts.teacher_logit_scale
    if t == "teacher":
        return [float(x["logit_scale"]) for x in index["teachers"]]
    if isinstance(t, (list, tuple)):
        if len(t) != len(index["teachers"]):
            raise ConfigError(f"mobileclip teacher_logit_scale has {len(t)} values for {len(index['teachers'])} teachers")
        return [float(v) for v in t]
    return float(t)


def train_reinforced(student, reinforced_dir: Path, opts: MobileClipOptions, *, steps: int, batch_size: int,
                     lr: float, weight_decay: float, warmup_steps: int, seed: int = 0, device: str = "auto",
                     checkpoint_dir: str | None = None, progress: bool = True, eval_every: int = 0,
                     on_eval=None, desc: str = "mobileclip"):
    """Train ``student`` (a ``ClipModel``, in place) on a reinforced dataset; returns the record."""
    from ..data.reinforced import ReinforcedDataset, read_index
    from .batches import StepBatches
    from .losses import mobileclip_loss
    from .pretrain import ReinforcedTrainModule
    from .trainer import TrainConfig, fit_stage, stage_checkpoint_every

    index = read_index(reinforced_dir)
    dims = [int(t["dim"]) for t in index["teachers"]]
    scales = _teacher_scales(opts, index)
    pairs = ReplayPairs(ReinforcedDataset(reinforced_dir), student.facts.image_size, seed)
    data = StepBatches(pairs, batch_size, seed=seed, collate=ReplayCollate(student.facts, student.tokenizer))
    learn = opts.logit_scale == "learn"
    module = ReinforcedTrainModule(student.image, student.text, student.logit_scale if learn else float(opts.logit_scale))
    module.logit_scale.requires_grad_(learn)

    def step(model, batch):
        pixels, ids, syn_ids, t_img, t_txt, t_syn = batch
        img, txt, syn, scale = model(pixels, ids, syn_ids)
        if not opts.synthetic_captions:
            syn = t_syn = None
        return mobileclip_loss(img, txt, syn, scale, t_img, t_txt, t_syn, dims, scales,
                               w0=float(opts.w0), w1=float(opts.w1))

    cfg = TrainConfig(steps=steps, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, seed=seed,
                      device=device, checkpoint_dir=checkpoint_dir, progress=progress, desc=desc,
                      checkpoint_every=stage_checkpoint_every(steps, checkpoint_dir))
    result = fit_stage(module, step, data, cfg, eval_every, on_eval and (lambda at: on_eval(at, student)))
    student.to("cpu").eval()
    student.logit_scale = float(module.scale().detach())
    student.config = dict(student.config, logit_scale=student.logit_scale)
    return {"steps": result.steps, "final_loss": result.final_loss, "samples_per_s": result.samples_per_s,
            "wall_s": result.wall_s, "device": result.device, "world_size": result.world_size,
            "precision": result.precision, "resumed_at_step": result.start_step,
            "losses": result.losses[:: max(1, len(result.losses) // 50)], "teacher_dims": dims,
            "teacher_scales": scales, "reinforced": str(reinforced_dir), "samples": len(pairs)}


def make_student(uri: str, seed: int):
    """A fresh student of architecture ``uri`` (random init; transformer blocks get CLIP's init)."""
    from ..models import load_model
    from .pretrain import clip_init_

    student = load_model(uri)
    clip_init_(student.image, seed)
    clip_init_(student.text, seed + 1)
    return student


def ensure_reinforced(recipe, opts: MobileClipOptions, teacher, teacher_uri: str, where: Path,
                      progress: bool = True) -> Path:
    """The stage's reinforced dataset: ``opts.reinforced`` as given, else made (or finished) in ``where``."""
    if opts.reinforced:
        return Path(opts.reinforced)
    from ..models import load_model
    from .reinforce import parse_reinforce_options, reinforce

    extra = [load_model(u).eval() for u in opts.teachers]
    reinforce(recipe.data.train, [teacher, *extra], [teacher_uri, *opts.teachers],
              parse_reinforce_options(opts.reinforce), where, seed=recipe.seed, progress=progress)
    return where


def run(teacher_dir: Path, init_dir: Path, stage, recipe, out: Path, checkpoint_dir: Path | None = None,
        device: str = "auto") -> None:
    """The pipeline's entry: reinforce (once), train the student, write ``out/model.safetensors``
    and ``out/distill.json``."""
    from ..models import load_model, save_model

    opts = parse_options(stage.options)
    check(stage)
    t0 = time.perf_counter()
    teacher = load_model(f"file:{Path(teacher_dir) / 'model.safetensors'}").eval()
    ckpt = Path(checkpoint_dir) if checkpoint_dir else Path(out).parent / "mobileclip-ckpt"
    reinforced = ensure_reinforced(recipe, opts, teacher, recipe.teacher, ckpt / "reinforced")
    reinforce_s = time.perf_counter() - t0
    student = make_student(stage.student, recipe.seed)
    record = train_reinforced(student, reinforced, opts, steps=stage.steps, batch_size=stage.batch_size,
                              lr=stage.lr, weight_decay=stage.weight_decay, warmup_steps=stage.warmup_steps,
                              seed=recipe.seed, checkpoint_dir=str(ckpt / "train"), device=device,
                              desc=f"mobileclip {stage.name or ''}".strip())
    record.update({"stage": asdict(stage), "reinforce_s": reinforce_s, "seconds": time.perf_counter() - t0,
                   "params": {"student": {"image": int(student.facts.params_image), "text": int(student.facts.params_text)},
                              "teacher": {"image": int(teacher.facts.params_image), "text": int(teacher.facts.params_text)}}})
    if opts.evaluate and recipe.data.train.source == "synthetic":
        from .evaluate import evaluate_synthetic

        record["zero_shot"] = {who: {k: s.accuracy for k, s in evaluate_synthetic(m).items()}
                               for who, m in (("teacher", teacher), ("student", student))}
    save_model(student, Path(out) / "model.safetensors")
    (Path(out) / "distill.json").write_text(json.dumps(record, indent=2, default=str))
