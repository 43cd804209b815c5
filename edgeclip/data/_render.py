"""Rasterize a synthetic scene with numpy (+ Pillow for polygon fill), supersampled.

Everything is computed in normalized coordinates on a canvas ``ss`` times larger than the
output, then box-averaged down: edges are anti-aliased and the same scene looks the same at
32, 64 or 224 pixels.
"""
from __future__ import annotations

import math

import numpy as np

from ._scene import Obj, Scene
from ._vocab import BG_RGB, RGB

__all__ = ["render", "supersample"]


def supersample(size: int) -> int:
    """Enough subpixels that small textures survive averaging, without a huge canvas at 224."""
    return max(1, min(4, math.ceil(256 / size)))


def _polygon(shape: str) -> np.ndarray:
    """Unit-circumradius vertices (x, y), y pointing down, before rotation."""
    def ring(n, start_deg, radii=(1.0,)):
        k = np.arange(n * len(radii))
        a = np.deg2rad(start_deg + k * 360.0 / (n * len(radii)))
        rad = np.resize(np.asarray(radii), k.size)
        return np.stack([rad * np.cos(a), rad * np.sin(a)], 1)

    if shape == "square":
        return ring(4, 45)
    if shape == "diamond":  # a rhombus, narrower than tall, so it never reads as a square
        return np.array([[0, -1], [0.62, 0], [0, 1], [-0.62, 0]], float)
    if shape == "triangle":
        return ring(3, -90)
    if shape == "pentagon":
        return ring(5, -90)
    if shape == "hexagon":
        return ring(6, 0)
    if shape == "star":
        return ring(5, -90, radii=(1.0, 0.42))
    if shape == "cross":
        a, w = 0.95, 0.3
        return np.array([[-w, -a], [w, -a], [w, -w], [a, -w], [a, w], [w, w], [w, a],
                         [-w, a], [-w, w], [-a, w], [-a, -w], [-w, -w]], float)
    if shape == "circle":
        return ring(96, 0)
    raise ValueError(f"unknown shape {shape!r}")


def _box(o: Obj, w: int) -> tuple[int, int, int, int]:
    """Pixel bounds (x0, y0, x1, y1) of the object's circumcircle, clipped to the canvas."""
    x0, y0 = (max(0, int(math.floor((c - o.r) * w)) - 1) for c in (o.x, o.y))
    x1, y1 = (min(w, int(math.ceil((c + o.r) * w)) + 1) for c in (o.x, o.y))
    return x0, y0, x1, y1


def _mask(o: Obj, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Coverage of the object inside ``box`` (drawn only there: objects are small)."""
    from PIL import Image, ImageDraw

    x0, y0, x1, y1 = box
    t = np.deg2rad(o.angle)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    pts = _polygon(o.shape) @ rot.T * o.r + (o.x, o.y)
    pts = pts * w - 0.5 - (x0, y0)  # pixel i covers [i, i+1); PIL puts centres on integers
    img = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in pts], fill=255)
    return np.asarray(img) > 127


def _fill(o: Obj, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    base = np.clip(np.asarray(RGB[o.colour], np.float32) * np.asarray(o.tint, np.float32), 0, 255)
    out = np.broadcast_to(base, xx.shape + (3,)).copy()
    if o.texture == "solid":
        return out
    t = np.deg2rad(o.stripe_angle)
    u = ((xx - o.x) * math.cos(t) + (yy - o.y) * math.sin(t)) / o.r
    v = (-(xx - o.x) * math.sin(t) + (yy - o.y) * math.cos(t)) / o.r
    if o.texture == "striped":
        dark = np.mod(u / 0.55, 1.0) < 0.5           # about four stripes across the object
    else:  # dotted
        s = 0.6                                       # dot pitch, in circumradii
        du, dv = np.mod(u, s) - s / 2, np.mod(v, s) - s / 2
        dark = du * du + dv * dv < (0.28 * s) ** 2
    out[dark] *= 0.45
    return out


def render(scene: Scene, size: int) -> np.ndarray:
    """uint8[size, size, 3], C-contiguous."""
    ss = supersample(size)
    w = size * ss
    c = (np.arange(w, dtype=np.float32) + 0.5) / w
    canvas = np.empty((w, w, 3), np.float32)
    canvas[:] = BG_RGB[scene.background]
    if scene.bg_texture == "checkered":
        cells = (np.floor(c * 8)[:, None] + np.floor(c * 8)[None, :]) % 2
        canvas += ((cells * 2 - 1) * 18)[..., None]
    elif scene.bg_texture == "speckled":
        rng = np.random.default_rng(scene.noise_seed)
        canvas += rng.normal(0, 16, (w, w, 1)).astype(np.float32)
    for o in scene.objects:
        x0, y0, x1, y1 = box = _box(o, w)
        xx, yy = np.meshgrid(c[x0:x1], c[y0:y1])
        m = _mask(o, w, box)
        region = canvas[y0:y1, x0:x1]
        region[m] = _fill(o, xx, yy)[m]
    # Box-average ss x ss blocks; rows first keeps both sums on contiguous memory (5x faster).
    small = canvas.reshape(size, ss, w * 3).sum(1).reshape(size, size, ss, 3).sum(2) / ss**2
    return np.ascontiguousarray(np.clip(np.rint(small), 0, 255).astype(np.uint8))
