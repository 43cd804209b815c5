"""The synthetic world's attribute vocabulary, in English and Chinese, and its held-out pairs.

Each attribute value maps to its display words. The first word in each list is the canonical
one; the rest are synonyms that paraphrases may use. Captions in both languages are built from
these tables only, which is what lets tests check that an English caption and its Chinese twin
name exactly the same attributes.
"""
from __future__ import annotations

__all__ = [
    "SHAPES", "COLOURS", "SIZES", "TEXTURES", "POSITIONS", "RELATIONS", "COUNTS",
    "BACKGROUNDS", "BG_TEXTURES", "RGB", "BG_RGB", "HELDOUT_PAIRS", "WORDS", "PLURAL",
]

SHAPES = ("square", "circle", "triangle", "star", "cross", "diamond", "hexagon", "pentagon")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
SIZES = ("small", "large")
TEXTURES = ("solid", "striped", "dotted")
POSITIONS = ("left", "right", "top", "bottom", "centre")
RELATIONS = ("left", "right", "above", "below")
COUNTS = (1, 2, 3)
BACKGROUNDS = ("black", "grey", "white")
BG_TEXTURES = ("plain", "checkered", "speckled")

# Saturated, well-separated RGB anchors; the renderer jitters them a little per object.
RGB = {
    "red": (215, 35, 35), "orange": (245, 135, 20), "yellow": (240, 215, 35),
    "green": (45, 165, 60), "blue": (35, 75, 215), "purple": (135, 55, 185),
    "pink": (245, 135, 190), "brown": (125, 75, 35),
}
BG_RGB = {"black": (22, 22, 22), "grey": (125, 125, 125), "white": (236, 236, 236)}

# Each shape has exactly one held-out colour and each colour exactly one held-out shape
# (colour index 3*i+1 mod 8 is a permutation), so every shape and every colour is still seen
# in training, only never together: a true compositional zero-shot split.
HELDOUT_PAIRS = frozenset(
    (SHAPES[i], COLOURS[(3 * i + 1) % len(COLOURS)]) for i in range(len(SHAPES))
)

# value -> (english words, chinese words); the first entry of each is canonical.
WORDS: dict[str, dict[object, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "shape": {
        "square": (("square",), ("正方形", "方块")),
        "circle": (("circle",), ("圆形",)),
        "triangle": (("triangle",), ("三角形",)),
        "star": (("star",), ("星形", "五角星")),
        "cross": (("cross",), ("十字形",)),
        "diamond": (("diamond",), ("菱形",)),
        "hexagon": (("hexagon",), ("六边形",)),
        "pentagon": (("pentagon",), ("五边形",)),
    },
    "colour": {
        "red": (("red",), ("红色",)), "orange": (("orange",), ("橙色",)),
        "yellow": (("yellow",), ("黄色",)), "green": (("green",), ("绿色",)),
        "blue": (("blue",), ("蓝色",)), "purple": (("purple",), ("紫色",)),
        "pink": (("pink",), ("粉色",)), "brown": (("brown",), ("棕色",)),
    },
    "size": {
        "small": (("small", "little"), ("小",)),
        "large": (("large", "big"), ("大",)),
    },
    # "solid" is usually left unsaid in both languages (as people do); paraphrases may say it.
    "texture": {
        "solid": (("solid",), ("实心",)),
        "striped": (("striped",), ("带条纹",)),
        "dotted": (("dotted", "polka-dot"), ("带圆点",)),
    },
    "position": {
        "left": (("on the left", "on the left side"), ("左边", "左侧")),
        "right": (("on the right", "on the right side"), ("右边", "右侧")),
        "top": (("at the top", "near the top"), ("上方", "上部")),
        "bottom": (("at the bottom", "near the bottom"), ("下方", "下部")),
        "centre": (("in the centre", "in the middle"), ("中间", "正中间")),
    },
    # "A <relation> B"; the Chinese form is "A在B的<word>".
    "relation": {
        "left": (("left of", "to the left of"), ("左边", "左侧")),
        "right": (("right of", "to the right of"), ("右边", "右侧")),
        "above": (("above",), ("上方", "上面")),
        "below": (("below",), ("下方", "下面")),
    },
    "count": {
        1: (("one", "a"), ("一",)), 2: (("two",), ("两",)), 3: (("three",), ("三",)),
    },
    "background": {
        "black": (("black",), ("黑色",)), "grey": (("grey", "gray"), ("灰色",)),
        "white": (("white",), ("白色",)),
    },
    "bg_texture": {
        "plain": (("plain",), ("纯色",)),
        "checkered": (("checkered", "chequered"), ("格子",)),
        "speckled": (("speckled", "noisy"), ("带噪点",)),
    },
}

PLURAL = {"cross": "crosses"}  # every other shape takes a plain "s"
