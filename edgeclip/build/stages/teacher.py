"""The teacher stage: load the recipe's teacher and, when the recipe says so, pretrain it.

``edgeclip pretrain`` and ``edgeclip build`` share this stage (``teacher_key``, ``make_teacher``),
so whichever runs first trains the teacher and the other finds it cached.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..._io import sha256_path, stable_hash
from ..cache import drop_resume_checkpoint, resume_checkpoint_dir
from ...errors import ConfigError

__all__ = ["pretrain_source", "teacher_key", "make_teacher", "untrained_teacher", "teacher"]


def pretrain_source(r):
    """The data the teacher pretrains on: ``data.train``, in ``pretrain.languages`` when given (a
    DC-CLIP recipe pretrains an English teacher, then distils on English + Chinese)."""
    src = r.data.train
    if r.pretrain and r.pretrain.languages:
        src = replace(src, languages=tuple(r.pretrain.languages))
    return src


def teacher_key(r, torch_version: str) -> str:
    """The teacher stage's cache key. Only what the teacher is and is trained on counts, so recipes
    that differ after it share one teacher: the URI, what it resolves to (a builtin's architecture,
    a local checkpoint's bytes: an edited builtin or a replaced file is a new teacher), the
    pretraining settings including the defaults the recipe leaves unset, the data and the seed."""
    pt = None
    if r.pretrain:
        from ...distill.pretrain import PRETRAIN_DEFAULTS
        pt = {k: getattr(r.pretrain, k) for k in ("steps", "batch_size", "lr", "weight_decay", "warmup_steps")}
        for k in ("prompt_loss", "tokenizer"):  # only when set, so teachers trained without them keep their keys
            if getattr(r.pretrain, k):
                pt[k] = getattr(r.pretrain, k)
        pt["defaults"] = PRETRAIN_DEFAULTS
    return stable_hash("teacher", r.teacher, _resolved(r.teacher), r.seed, pt,
                       pretrain_source(r) if r.pretrain else None, torch_version)


def _resolved(uri: str):
    """What a teacher URI stands for beyond its text: a builtin's full config, a local file's sha256."""
    from ...config import parse_model_uri
    scheme, rest = parse_model_uri(uri)
    if scheme == "builtin":
        from ...models import builtin_config
        return builtin_config(rest)
    path = rest if scheme == "file" else rest.split("/", 1)[1] if scheme == "openclip" and "/" in rest else None
    try:  # an open_clip tag that names a local weights file (openclip:NAME//path) counts by its bytes too
        local = Path(path).expanduser() if path else None
        return sha256_path(local) if local is not None and local.is_file() else None
    except (OSError, ValueError, RuntimeError):  # not a usable path: make_plan reports it
        return None


def make_teacher(r, key: str, cache_root: Path, out: Path) -> None:
    """Load (and pretrain, if the recipe says so) the teacher into ``out/model.safetensors``."""
    from ...models import load_model, save_model
    if r.pretrain:
        model = _pretrain(*untrained_teacher(r), r, resume_checkpoint_dir(cache_root, "teacher", key))
    else:
        model = load_model(r.teacher)
    save_model(model, out / "model.safetensors")


def untrained_teacher(r):
    """``(model, pairs)``: the recipe's teacher as pretraining starts from it and the pairs it
    trains on. With ``pretrain.tokenizer`` the model is rebuilt around a BPE trained on those
    pairs' captions (``distill/caption_tokenizer.py``)."""
    from ...distill import training_pairs
    from ...models import load_model
    src = pretrain_source(r)
    if src.source != "synthetic":
        raise ConfigError(f"pretrain: training a teacher from scratch on {src.source} data is not "
                          "supported yet; use data.train.source: synthetic or a pretrained teacher")
    model = load_model(r.teacher)
    data = training_pairs(src, model.facts.image_size, r.seed)  # one caption language after another
    if r.pretrain.tokenizer:
        from ...distill.caption_tokenizer import with_caption_tokenizer
        model = with_caption_tokenizer(model, data, r.pretrain.tokenizer)
    return model, data


def teacher(ctx) -> tuple[Path, str]:
    r = ctx.plan.recipe
    key = teacher_key(r, ctx.versions["torch"])
    what = "load + pretrain teacher" if r.pretrain else "load teacher"
    folder = ctx.timed(f"{what} {r.teacher}", "teacher", key, ctx.cache,
                       lambda tmp: make_teacher(r, key, ctx.cache.root, tmp))
    drop_resume_checkpoint(ctx.cache.root, "teacher", key)
    return folder, key


def _pretrain(model, data, r, checkpoint_dir: Path):
    """CLIP-loss training from scratch; checkpoints outside the stage folder so a killed
    build resumes from the last checkpoint instead of step 0. Returns the trained model."""
    from ...distill.pretrain import pretrain_clip
    pt = r.pretrain
    return pretrain_clip(model, data, steps=pt.steps, batch_size=pt.batch_size, lr=pt.lr,
                         weight_decay=pt.weight_decay, warmup_steps=pt.warmup_steps, seed=r.seed,
                         checkpoint_dir=str(checkpoint_dir), prompt_loss=pt.prompt_loss)
