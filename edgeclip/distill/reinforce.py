"""MobileCLIP dataset reinforcement: store, once, what reinforced training needs from the
teachers, so training never runs them (Vasu et al., CVPR 2024; apple/ml-mobileclip).

Per sample (a WebDataset shard member group, ``data/reinforced.py``): the image, its caption,
``syn`` synthetic captions, ``k`` augmentation parameter sets (RandomResizedCrop + RandAugment,
``data/augment.py``), the ensemble's image embeddings of each augmented view ``[k, sum dims]``
and its text embeddings of the real and synthetic captions ``[1 + syn, sum dims]``, each
teacher's slice L2-normalized, fp32 or bf16.

Samples go to shard ``i // shard_size``; under ``torchrun`` rank ``r`` of ``W`` writes shards
``r, r + W, ...`` and rank 0 writes ``index.json`` once every shard exists. A shard is written
atomically, so a killed run resumes at the first missing shard.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import ConfigError
from ._options import options_from

__all__ = ["ReinforceOptions", "parse_reinforce_options", "reinforce", "teacher_image_embeddings"]

DTYPES = ("fp32", "bf16")


@dataclass(frozen=True)
class ReinforceOptions:
    k: int = 10                     # augmentations per image (MobileCLIP: 30 for 12M, 10 for 1B)
    syn: int = 5                    # synthetic captions per image
    dtype: str = "fp32"
    shard_size: int = 256
    captioner: str = "paraphrase"
    image_size: int | None = None   # stored image size of synthetic scenes (default: 2x the largest teacher's)
    samples: int | None = None      # reinforce only the first N samples of data.train (None: all)
    augment: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"reinforce samples: must be >= 1, found {self.samples}")
        for k in ("k", "syn", "shard_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"reinforce {k}: must be >= 1, found {getattr(self, k)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"reinforce dtype: {self.dtype!r}; use one of {', '.join(DTYPES)}")


def parse_reinforce_options(d: dict[str, Any]) -> ReinforceOptions:
    opts = options_from(ReinforceOptions, d, "reinforce")
    from ..data.augment import AugmentConfig

    AugmentConfig.from_dict(opts.augment)  # validated before any work
    return opts


def _samples(source, seed: int, image_size: int, limit: int | None) -> tuple[Iterator, Any]:
    """``(index, image, caption, meta)`` in a fixed order, and the synthetic world (or None)."""
    import itertools

    if source.source == "synthetic":
        from ..data import SyntheticWorld

        n = source.samples or 2000
        n = min(n, limit) if limit else n
        w = SyntheticWorld(seed=seed, image_size=source.image_size or image_size, split="train",
                           length=n, lang=source.languages[0])
        return ((i, *w[i]) for i in range(len(w))), w
    from ..data import open_dataset

    loader = open_dataset(source.path, on_bad_image=source.on_bad_image, **source.options)
    items = ((i, img, cap, meta) for i, (img, cap, meta) in enumerate(loader))
    return (itertools.islice(items, limit) if limit else items), None


def _normalize(batch: np.ndarray, mean, std):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def teacher_image_embeddings(teachers: list, image: np.ndarray, params: list[dict], aug) -> np.ndarray:
    """``[k, sum dims]``: each teacher embeds every augmented view, replayed at its resolution."""
    import torch

    from ..data.augment import apply_params

    parts = []
    with torch.no_grad():
        for t in teachers:
            f = t.facts
            views = np.stack([apply_params(image, p, f.image_size, aug) for p in params])
            parts.append(t.image(_normalize(views, f.mean, f.std).to(t.device)).float().cpu().numpy())
    return np.concatenate(parts, axis=1).astype(np.float32)


def _text_embeddings(teachers: list, texts: list[str]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([t.encode_text(texts).float().cpu().numpy() for t in teachers], 1).astype(np.float32)


def _reinforce_items(items: list, teachers, captioner, opts: ReinforceOptions, aug, seed: int) -> list:
    """Raw ``(index, image, caption, meta)`` items -> ``ReinforcedSample``s (captions, params, embeddings)."""
    from ..data.augment import sample_params
    from ..data.reinforced import ReinforcedSample

    size = max(t.facts.image_size for t in teachers)
    syn = captioner([im for _, im, _, _ in items], [c for _, _, c, _ in items], [m for *_, m in items], opts.syn)
    samples = []
    for (i, image, cap, meta), syn_caps in zip(items, syn):
        rng = np.random.default_rng([seed, 17, i])
        h, w = image.shape[:2]
        params = [sample_params(rng, h, w, aug, size) for _ in range(opts.k)]
        samples.append(ReinforcedSample(
            key=f"{i:09d}", image=np.ascontiguousarray(image[..., :3]), caption=cap, syn_captions=list(syn_caps),
            param_aug=params, image_emb=teacher_image_embeddings(teachers, image, params, aug),
            text_emb=_text_embeddings(teachers, [cap, *syn_caps]),
            meta={k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}))
    return samples


def reinforce(source, teachers: list, teacher_uris: list[str], opts: ReinforceOptions, out_dir: Path,
              seed: int = 0, progress: bool = True) -> dict:
    """Write (or finish) the reinforced dataset of ``source`` under ``out_dir``; returns its index."""
    from tqdm.auto import tqdm

    from ..data.augment import AugmentConfig
    from ..data.reinforced import read_index, shard_name, write_shard
    from .captioners import make_captioner

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        done = read_index(out)
        if done.get("complete"):
            return done
    except Exception:  # no index yet, or an incomplete one: (re)build what is missing
        pass
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    aug = AugmentConfig.from_dict(opts.augment)
    size = opts.image_size or 2 * max(t.facts.image_size for t in teachers)
    samples, synth_world = _samples(source, seed, size, opts.samples)
    captioner = make_captioner(opts.captioner, synth_world)
    for t in teachers:
        t.eval()
    t0, seen = time.perf_counter(), set()
    bar = tqdm(desc=f"reinforce (rank {rank}/{world})", unit="sample", disable=not progress,
               total=len(synth_world) if synth_world is not None else None, dynamic_ncols=True)
    chunk, done, shard = [], [], 0

    def process():  # a chunk at a time, so the progress bar moves with the real work
        done.extend(_reinforce_items(chunk, teachers, captioner, opts, aug, seed))
        bar.update(len(chunk))
        chunk.clear()

    for item in samples:
        s = item[0] // opts.shard_size
        if s != shard:
            if chunk:
                process()
            if done:
                write_shard(out / shard_name(shard), done, dtype=opts.dtype)
                done.clear()
            shard = s
        seen.add(s)
        if s % world == rank and not (out / shard_name(s)).exists():
            chunk.append(item)
            if len(chunk) == 32:
                process()
        else:  # another rank's shard, or one a killed run already wrote
            bar.update(1)
    if chunk:
        process()
    if done:
        write_shard(out / shard_name(shard), done, dtype=opts.dtype)
    bar.close()
    index = {"schema": "edgeclip.reinforced/1", "k": opts.k, "syn": opts.syn, "dtype": opts.dtype,
             "teachers": [{"uri": u, "dim": int(t.facts.embed_dim), "logit_scale": float(t.logit_scale),
                           "image_size": int(t.facts.image_size)} for u, t in zip(teacher_uris, teachers)],
             "augment": aug.to_dict(), "captioner": opts.captioner, "seed": seed,
             "source": {k: v for k, v in asdict(source).items() if k != "options"},
             "shards": [], "complete": False, "seconds": time.perf_counter() - t0}
    _finish(out, index, sorted(seen), rank, world)
    return read_index(out)


def _finish(out: Path, index: dict, shards: list[int], rank: int, world: int) -> None:
    """Rank 0 lists every shard (waiting for the other ranks' under torchrun) and marks the index complete."""
    dist, created = None, False
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
            created = True
        dist.barrier()  # every rank's shards are written
    if rank == 0:
        _complete_index(out, index, shards)
    if dist is not None:
        dist.barrier()  # the index is written: every rank may read it
        if created:
            dist.destroy_process_group()


def _complete_index(out: Path, index: dict, shards: list[int]) -> None:
    import tarfile

    from ..data.reinforced import shard_name, write_index
    from .._io import sha256_path

    for s in shards:
        path = out / shard_name(s)
        if not path.exists():
            raise ConfigError(f"reinforced shard {path} is missing after every rank finished; rerun "
                              "edgeclip reinforce (it resumes)")
        with tarfile.open(path) as tar:
            n = sum(1 for m in tar.getmembers() if m.name.endswith(".txt"))
        index["shards"].append({"file": path.name, "samples": n, "sha256": sha256_path(path)})
    index["samples"] = sum(s["samples"] for s in index["shards"])
    index["complete"] = True
    write_index(out, index)
