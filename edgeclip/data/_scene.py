"""Scene descriptions of the synthetic world and how they are sampled.

A scene is pure data in normalized [0, 1] coordinates, so the same scene renders at any
resolution and its captions never depend on the pixels.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ._vocab import (
    BACKGROUNDS, BG_TEXTURES, COLOURS, HELDOUT_PAIRS, POSITIONS, RELATIONS, SHAPES, SIZES,
    TEXTURES,
)

__all__ = ["Obj", "Scene", "sample_scene", "TRAIN_PAIRS", "SCENE_KINDS"]

SCENE_KINDS = ("single", "count", "relation")
_KIND_P = (0.4, 0.25, 0.35)
TRAIN_PAIRS = tuple((s, c) for s in SHAPES for c in COLOURS if (s, c) not in HELDOUT_PAIRS)
_HELDOUT = tuple(sorted(HELDOUT_PAIRS, key=lambda p: (SHAPES.index(p[0]), COLOURS.index(p[1]))))
_ALL_PAIRS = tuple((s, c) for s in SHAPES for c in COLOURS)

# Circumradii (every shape fits its circle): far enough apart that "small" and "large" stay unambiguous after jitter.
_RADIUS = {"small": (0.08, 0.11), "large": (0.17, 0.20)}
_ANCHOR = {"left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.27),
           "bottom": (0.5, 0.73), "centre": (0.5, 0.5)}


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    texture: str
    x: float            # centre, normalized
    y: float
    r: float            # circumradius, normalized
    angle: float        # rotation in degrees (small, so a square never reads as a diamond)
    stripe_angle: float
    tint: tuple[float, float, float]  # per-channel colour jitter, multiplicative


@dataclass(frozen=True)
class Scene:
    kind: str                       # "single" | "count" | "relation"
    objects: tuple[Obj, ...]
    background: str
    bg_texture: str
    position: str | None = None     # single scenes: where the object is
    relation: str | None = None     # relation scenes: objects[0] <relation> objects[1]
    noise_seed: int = 0             # drives pixel noise, so rendering is a pure function

    @property
    def count(self) -> int:
        return len(self.objects)

    def pairs(self) -> list[tuple[str, str]]:
        return [(o.shape, o.colour) for o in self.objects]

    def to_meta(self) -> dict:
        """JSON-friendly description (lists, not tuples)."""
        d = asdict(self)
        d["objects"] = [dict(o, tint=list(o["tint"])) for o in d["objects"]]
        d["count"] = self.count
        return d


def _obj(rng: np.random.Generator, pair, size, texture, x, y, r) -> Obj:
    return Obj(
        shape=pair[0], colour=pair[1], size=size, texture=texture,
        x=float(x), y=float(y), r=float(r),
        angle=float(rng.uniform(-12, 12)),
        stripe_angle=float(rng.choice([0.0, 45.0, 90.0, 135.0])),
        tint=tuple(float(t) for t in rng.uniform(0.88, 1.08, 3)),
    )


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _pair(rng, heldout: bool, shape=None, colour=None, pool=None) -> tuple[str, str]:
    pool = pool or (_HELDOUT if heldout else TRAIN_PAIRS)
    cands = [p for p in pool if (shape is None or p[0] == shape) and (colour is None or p[1] == colour)]
    if not cands:
        raise ValueError(f"no {'held-out' if heldout else 'train'} pair with shape={shape} colour={colour}")
    return _pick(rng, cands)


def _radius(rng, size: str) -> float:
    lo, hi = _RADIUS[size]
    return float(rng.uniform(lo, hi))


def _spread(rng, n: int, r: float) -> list[tuple[float, float]]:
    """n non-overlapping centres for objects of half-extent r (rejection, then a fixed layout)."""
    lo, hi, gap = r + 0.02, 1 - r - 0.02, 2 * r + 0.03
    for _ in range(200):
        pts = rng.uniform(lo, hi, size=(n, 2))
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(n) * 9
        if d.min() >= gap:
            return [tuple(map(float, p)) for p in pts]
    fixed = [(0.27, 0.27), (0.73, 0.3), (0.4, 0.75)] if n == 3 else [(0.27, 0.27), (0.73, 0.73)]
    return fixed[:n]


def sample_scene(rng: np.random.Generator, heldout: bool, kind: str | None = None,
                 **force) -> Scene:
    """Draw one scene. ``heldout`` scenes contain at least one held-out shape-colour pair,
    train scenes none. ``force`` pins attributes of the (first) object: shape, colour, size,
    texture, position (single), count (2/3 for count scenes)."""
    if kind is None:
        kind = SCENE_KINDS[int(rng.choice(len(SCENE_KINDS), p=_KIND_P))]
    pair = _pair(rng, heldout, force.get("shape"), force.get("colour"))
    size = force.get("size") or _pick(rng, SIZES)
    texture = force.get("texture") or _pick(rng, TEXTURES)
    bg, bg_tex = _pick(rng, BACKGROUNDS), _pick(rng, BG_TEXTURES)
    r = _radius(rng, size)
    position = relation = None
    if kind == "single":
        position = force.get("position") or _pick(rng, POSITIONS)
        ax, ay = _ANCHOR[position]
        jx, jy = rng.uniform(-0.03, 0.03, 2)
        objs = (_obj(rng, pair, size, texture, ax + jx, ay + jy, r),)
    elif kind == "count":
        n = int(force.get("count") or rng.integers(2, 4))
        objs = tuple(_obj(rng, pair, size, texture, x, y, r) for x, y in _spread(rng, n, r))
    elif kind == "relation":
        relation = _pick(rng, RELATIONS)
        # The partner is any pair in held-out scenes (one held-out object suffices), a train
        # pair otherwise; never the same shape and colour as the first object.
        pool = _ALL_PAIRS if heldout else TRAIN_PAIRS
        other = _pair(rng, False, pool=[p for p in pool if p != pair])
        size2, tex2 = _pick(rng, SIZES), _pick(rng, TEXTURES)
        r2 = _radius(rng, size2)
        # First object on the named side, second opposite; the cross-axis offset stays small
        # so only the named relation is true.
        a, b = 0.27 + rng.uniform(-0.02, 0.02), 0.73 + rng.uniform(-0.02, 0.02)
        c1, c2 = rng.uniform(0.35, 0.65, 2)
        first, second = (a, b) if relation in ("left", "above") else (b, a)
        if relation in ("left", "right"):
            p1, p2 = (first, c1), (second, c2)
        else:
            p1, p2 = (c1, first), (c2, second)
        objs = (_obj(rng, pair, size, texture, *p1, r), _obj(rng, other, size2, tex2, *p2, r2))
    else:
        raise ValueError(f"unknown scene kind {kind!r}; known: {', '.join(SCENE_KINDS)}")
    return Scene(kind, objs, bg, bg_tex, position, relation, int(rng.integers(2**31)))
