"""The one training loop every distillation method uses.

``Trainer(module, loss_fn, data, TrainConfig(...)).fit()``:

- ``module``: an ``nn.Module`` holding every trainable part (towers, projections, a log logit
  scale). Frozen parts (a teacher) live outside it, in ``loss_fn``'s closure.
- ``loss_fn(model, batch) -> Tensor | dict``: computes the loss by calling ``model(...)``, the
  module as the trainer passes it (wrapped in DistributedDataParallel under ``torchrun``, so the
  forward must go through it for gradients to be synchronized). A dict holds ``"loss"`` (what is
  optimized) and any named parts to log.
- ``data``: preferably an object with ``batch(step, rank, world_size) -> batch`` (e.g.
  ``StepBatches``): step ``i``'s batch is a pure function of ``i``, so resuming needs no loader
  state and each rank takes its own shard. Any iterable also works: each rank iterates it as is
  (shard it yourself) and a resume fast-forwards over the batches already consumed.

AdamW without weight decay on biases, norms, embeddings and the logit scale (a submodule may
claim its own groups with ``optimizer_groups()``, see ``param_groups``); linear warmup then
cosine decay; gradient clipping; bf16 autocast on CUDA (fp32 on CPU); ``state.pt`` checkpoints
(atomic) that resume bit-identically on CPU; a tqdm bar with loss and samples/s; DDP through
``torchrun`` (gloo on CPU, nccl on CUDA) when ``WORLD_SIZE>1``.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..errors import ConfigError, EdgeclipError
from ._dist import DistInfo, resolve_device, setup_distributed
from ._state import load_state, rng_state, save_state, set_rng_state

__all__ = ["TrainConfig", "TrainResult", "Trainer", "split_decay", "param_groups", "lr_factor",
           "move_to", "stage_checkpoint_every", "fit_stage"]

PRECISIONS = ("auto", "fp32", "bf16")
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.modules.batchnorm._BatchNorm,
          nn.modules.instancenorm._InstanceNorm, nn.RMSNorm)
_NO_DECAY_WORDS = ("embed", "logit_scale", "pos", "cls_token", "class_token", "bias")


def stage_checkpoint_every(steps: int, checkpoint_dir) -> int:
    """A pipeline stage checkpoints ten times per run, so a killed build loses at most a tenth."""
    return max(1, int(steps) // 10) if checkpoint_dir else 0


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0            # cosine floor, as a fraction of lr
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float | None = 1.0        # max global grad norm; None: no clipping
    seed: int = 0
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    precision: str = "auto"              # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    checkpoint_dir: str | None = None    # where state.pt lives; None: no checkpoints
    checkpoint_every: int = 0            # steps between checkpoints; 0: only at the end
    resume: bool = True                  # continue from checkpoint_dir/state.pt if present
    progress: bool = True
    desc: str = "train"
    find_unused_parameters: bool = False
    threads: int | None = None           # CPU intra-op threads during fit (restored after); None: as is

    def __post_init__(self):
        if self.steps < 1:
            raise ConfigError(f"steps: must be >= 1, found {self.steps}")
        if not self.lr > 0:
            raise ConfigError(f"lr: must be > 0, found {self.lr}")
        if self.weight_decay < 0 or self.warmup_steps < 0 or self.checkpoint_every < 0:
            raise ConfigError("weight_decay, warmup_steps and checkpoint_every must be >= 0, found "
                              f"{self.weight_decay}, {self.warmup_steps}, {self.checkpoint_every}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio: must be in [0, 1], found {self.min_lr_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip: must be > 0 or None, found {self.grad_clip}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads: must be >= 1 or None, found {self.threads}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: unknown {self.precision!r}; known: {', '.join(PRECISIONS)}")


@dataclass
class TrainResult:
    steps: int                          # the step count reached (== config.steps when finished)
    start_step: int                     # > 0 when this run resumed from a checkpoint
    losses: list[float] = field(default_factory=list)     # one per step run here
    parts: dict[str, list[float]] = field(default_factory=dict)
    grad_norms: list[float] = field(default_factory=list)  # before clipping (when clipping)
    wall_s: float = 0.0
    samples_per_s: float = 0.0          # global samples (all ranks) per second
    precision: str = "fp32"
    device: str = "cpu"
    world_size: int = 1

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


def split_decay(module: nn.Module) -> tuple[list[str], list[str]]:
    """Parameter names ``(decayed, not_decayed)``: biases, norm and embedding-table weights, 1-D
    parameters and free-standing embeddings / logit scales get no weight decay."""
    decay, no_decay = [], []
    for mname, mod in module.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            name = f"{mname}.{pname}" if mname else pname
            if isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)):
                skip = pname == "bias" or p.ndim < 2   # patch_embed (a conv) is decayed
            else:
                skip = (isinstance(mod, _NORMS + (nn.Embedding, nn.EmbeddingBag)) or p.ndim < 2
                        or any(w in pname.lower() for w in _NO_DECAY_WORDS))
            (no_decay if skip else decay).append(name)
    return decay, no_decay


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decayed and not-decayed groups, plus the groups of any submodule defining
    ``optimizer_groups() -> list[dict]`` (e.g. pruning masks and their Lagrange multipliers, which
    want their own lr): those parameters leave the default groups; the lr schedule scales all."""
    own = [g for m in module.modules() if callable(getattr(m, "optimizer_groups", None))
           for g in m.optimizer_groups()]
    claimed = {id(p) for g in own for p in g["params"]}
    decay, no_decay = split_decay(module)
    params = dict(module.named_parameters())
    return [{"params": [params[n] for n in decay if id(params[n]) not in claimed], "weight_decay": weight_decay},
            {"params": [params[n] for n in no_decay if id(params[n]) not in claimed], "weight_decay": 0.0},
            *own]


def lr_factor(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the base lr at 0-based ``step``: linear warmup to 1, cosine down to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def move_to(batch: Any, device: torch.device) -> Any:
    """Tensors (in tuples, lists, dicts) to ``device``; everything else as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        out = [move_to(b, device) for b in batch]
        return type(batch)(out) if isinstance(batch, list) else tuple(out)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    return batch


def _batch_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_len(batch[0]) if isinstance(batch[0], (torch.Tensor, list, tuple, dict)) else len(batch)
    return 0


class Trainer:
    """One loop for every method; see the module docstring for the contracts of its arguments."""

    def __init__(self, module: nn.Module, loss_fn: Callable[[nn.Module, Any], Any], data: Any,
                 config: TrainConfig):
        self.config = config
        self.loss_fn, self.data = loss_fn, data
        self.device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist: DistInfo = setup_distributed(self.device)
        self.module = module.to(self.device)
        self.precision = ("bf16" if self.device.type == "cuda" and torch.cuda.is_bf16_supported()
                          else "fp32") if config.precision == "auto" else config.precision
        # fused AdamW: one kernel over all parameters, 3x faster than foreach on 2 CPU cores
        self.optimizer = torch.optim.AdamW(param_groups(module, config.weight_decay), lr=config.lr,
                                           betas=config.betas, eps=config.eps,
                                           fused=self.device.type in ("cpu", "cuda"))
        total, warm, floor = config.steps, config.warmup_steps, config.min_lr_ratio

        def schedule(step: int) -> float:  # a plain function: LambdaLR then saves no closure state
            return lr_factor(step, warm, total, floor)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.step = 0
        self._model: nn.Module | None = None
        self._iter: Iterator | None = None

    # ------------------------------------------------------------------ checkpoints
    @property
    def state_path(self) -> Path | None:
        d = self.config.checkpoint_dir
        return Path(d) / "state.pt" if d else None

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(), "config": asdict(self.config), "world_size": self.dist.world_size}

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write ``state.pt`` atomically (rank 0 only); returns its path (None on other ranks)."""
        path = path or self.state_path
        if path is None:
            raise ConfigError("no checkpoint path: set TrainConfig.checkpoint_dir or pass a path")
        return save_state(self.state_dict(), path) if self.dist.is_main else None

    def load(self, path: str | Path) -> None:
        state = load_state(path)
        if state["config"]["steps"] != self.config.steps:
            raise ConfigError(f"{path}: checkpoint was trained for {state['config']['steps']} steps, "
                              f"this run asks for {self.config.steps}; the lr schedule would differ. "
                              "Use the same steps or delete the checkpoint")
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])

    # ------------------------------------------------------------------ the loop
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _wrapped(self) -> nn.Module:
        if self._model is None:
            if self.dist.world_size > 1:
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                self._model = DDP(self.module, device_ids=ids,
                                  find_unused_parameters=self.config.find_unused_parameters)
            else:
                self._model = self.module
        return self._model

    def _next_batch(self) -> Any:
        if hasattr(self.data, "batch"):
            return self.data.batch(self.step, self.dist.rank, self.dist.world_size)
        if self._iter is None:
            self._iter = iter(self.data)
            for _ in range(self.step):  # fast-forward over what a resumed run already consumed
                next(self._iter)
        try:
            return next(self._iter)
        except StopIteration:
            raise ConfigError(f"training data ran out at step {self.step} of {self.config.steps}; "
                              "pass a longer (or cycling) iterable or fewer steps") from None

    def _train_step(self, model: nn.Module):
        batch = self._next_batch()
        n = _batch_len(batch) * self.dist.world_size
        batch = move_to(batch, self.device)
        with self._autocast():
            out = self.loss_fn(model, batch)
        loss, parts = (out["loss"], {k: v for k, v in out.items() if k != "loss"}) if isinstance(out, dict) else (out, {})
        if not torch.isfinite(loss):
            raise EdgeclipError(f"training loss is {loss.item()} at step {self.step}; lower lr "
                                f"(now {self.config.lr:g}) or raise warmup_steps")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = None
        if self.config.grad_clip is not None:
            norm = nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        logged = loss.detach()
        if self.dist.world_size > 1:  # the global batch's loss (each rank's is over its own rows)
            import torch.distributed as dist
            logged = logged.clone()
            dist.all_reduce(logged)
            logged /= self.dist.world_size
        return logged, {k: v.detach() for k, v in parts.items()}, n, norm

    def fit(self, stop_at: int | None = None) -> TrainResult:
        """Train from the current step (or the checkpoint) to ``config.steps``, or stop early at
        ``stop_at`` (saving a checkpoint there), e.g. to split a run across processes."""
        cfg = self.config
        path = self.state_path
        if self.step == 0:  # a fresh trainer: resume from state.pt, or seed (per rank: dropout differs)
            if cfg.resume and path is not None and path.is_file():
                self.load(path)
            else:
                torch.manual_seed(cfg.seed + self.dist.rank)
        start, end = self.step, min(cfg.steps, stop_at if stop_at is not None else cfg.steps)
        result = TrainResult(steps=start, start_step=start, precision=self.precision,
                             device=str(self.device), world_size=self.dist.world_size)
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=cfg.desc, unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and self.dist.is_main))
        model, samples, t0 = self._wrapped(), 0, time.perf_counter()
        self.module.train()
        threads_before = torch.get_num_threads()
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        try:
            while self.step < end:
                loss, parts, n, norm = self._train_step(model)
                samples += n
                result.losses.append(loss.item())
                if norm is not None:
                    result.grad_norms.append(float(norm))
                for k, v in parts.items():
                    result.parts.setdefault(k, []).append(float(v))
                elapsed = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix({"loss": f"{result.losses[-1]:.4f}", "lr": f"{self.scheduler.get_last_lr()[0]:.2e}",
                                 "samples/s": f"{samples / max(elapsed, 1e-9):.0f}"}, refresh=False)
                every = cfg.checkpoint_every
                if path is not None and every and self.step % every == 0 and self.step < end:
                    self.save()
        finally:
            bar.close()
            torch.set_num_threads(threads_before)
        result.steps, result.wall_s = self.step, time.perf_counter() - t0
        result.samples_per_s = samples / max(result.wall_s, 1e-9)
        if path is not None and end > start:
            self.save()
        return result

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        if self.dist.created:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def fit_stage(module: nn.Module, loss_fn, data, config: TrainConfig, eval_every: int = 0,
              on_eval: Callable[[int], None] | None = None, holder: list | None = None) -> TrainResult:
    """Train ``module`` with a fresh ``Trainer`` (closed afterwards), in chunks of ``eval_every``
    steps with ``on_eval(step)`` after each when given (learning curves): what every method runs.
    ``holder``: a list the trainer is appended to, for a loss that needs ``trainer.step``."""
    trainer = Trainer(module, loss_fn, data, config)
    if holder is not None:
        holder.append(trainer)
    try:
        if not eval_every or on_eval is None:
            return trainer.fit()
        total, samples = None, 0.0
        while trainer.step < config.steps:
            r = trainer.fit(stop_at=min(trainer.step + eval_every, config.steps))
            samples += r.samples_per_s * r.wall_s
            if total is None:
                total = r
            else:
                total.losses += r.losses
                total.wall_s += r.wall_s
                total.grad_norms += r.grad_norms
                for k, v in r.parts.items():
                    total.parts.setdefault(k, []).extend(v)
                total.steps = r.steps
            on_eval(trainer.step)
        total.samples_per_s = samples / max(total.wall_s, 1e-9)
        return total
    finally:
        trainer.close()
