"""Parallel English / Chinese captions for synthetic scenes.

A caption is a template (``form``) filled with words from ``_vocab.WORDS``. One ``Style``
renders the same content in both languages, so ``describe(s, "en", st)`` and
``describe(s, "zh", st)`` always name the same attributes: that is what "parallel" means here.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ._scene import Obj, Scene
from ._vocab import PLURAL, WORDS

__all__ = ["Style", "CANONICAL", "LANGS", "describe", "paraphrase_styles"]

LANGS = ("en", "zh")
_INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}

# (english, chinese) templates per scene kind. {bg} is the English background clause,
# {bgp}/{bgs} the Chinese one as a prefix ("在灰色背景上，") or suffix ("，灰色背景").
_FORMS = {
    "single": (
        ("{np} {pos}{bg}", "{bgp}{np}位于画面{pos}"),
        ("a photo of {np} {pos}{bg}", "{np}在画面{pos}的照片{bgs}"),
        ("there is {np} {pos}{bg}", "{bgp}画面{pos}有{np}"),
        ("an image of {np} {pos}{bg}", "图片{pos}是{np}{bgs}"),
        ("a rendering of {np} placed {pos}{bg}", "{np}画在{pos}{bgs}"),
    ),
    "count": (
        ("{np}{bg}", "{np}{bgs}"),
        ("a photo of {np}{bg}", "{np}的照片{bgs}"),
        ("there are {np}{bg}", "{bgp}有{np}"),
        ("an image with {np}{bg}", "图片里有{np}{bgs}"),
        ("{np} in a picture{bg}", "画面中有{np}{bgs}"),
    ),
    "relation": (
        ("{a} {rel} {b}{bg}", "{bgp}{a}在{b0}的{rel}"),
        ("a photo of {a} {rel} {b}{bg}", "{a}在{b0}{rel}的照片{bgs}"),
        ("{b} {inv} {a}{bg}", "{bgp}{b}在{a0}的{inv}"),
        ("there is {a} {rel} {b}{bg}", "{bgp}{b0}的{rel}有{a}"),
        ("an image of {b} with {a} {rel} it{bg}", "图中有{b}，{a}在它的{rel}{bgs}"),
    ),
}


@dataclass(frozen=True)
class Style:
    form: int = 0            # template index for the scene's kind
    syn: int = 0             # which synonym of each word (wraps around)
    with_bg: bool = True     # mention the background
    say_solid: bool = False  # say "solid"/"plain" instead of leaving it implied


CANONICAL = Style()


def _word(kind: str, value, lang: str, syn: int) -> str:
    words = WORDS[kind][value][LANGS.index(lang)]
    return words[syn % len(words)]


def _np_en(o: Obj, st: Style, n: int = 1) -> str:
    w = lambda k, v: _word(k, v, "en", st.syn)  # noqa: E731
    tex = "" if o.texture == "solid" and not st.say_solid else w("texture", o.texture) + " "
    head = f"{w('size', o.size)} {w('colour', o.colour)} {tex}"
    if n == 1:
        return f"a {head}{o.shape}"  # sizes all start with a consonant, so "a" is right
    return f"{w('count', n)} {head}{PLURAL.get(o.shape, o.shape + 's')}"


def _np_zh(o: Obj, st: Style, n: int | None = 1) -> str:
    """``n=None`` drops the numeral: the form used after 在 ("在蓝色大圆形的左边")."""
    w = lambda k, v: _word(k, v, "zh", st.syn)  # noqa: E731
    det = "" if n is None else f"{w('count', n)}个"
    if o.texture == "solid" and not st.say_solid:
        tex, de = "", "" if n is None else "的"  # "一个红色的小正方形" / "红色小正方形"
    else:
        tex, de = w("texture", o.texture) + "的", ""  # "一个带条纹的红色小正方形"
    return f"{det}{tex}{w('colour', o.colour)}{de}{w('size', o.size)}{w('shape', o.shape)}"


def _background(scene: Scene, lang: str, st: Style) -> dict[str, str]:
    if not st.with_bg:
        return {"bg": "", "bgp": "", "bgs": ""}
    c = _word("background", scene.background, lang, st.syn)
    show_tex = scene.bg_texture != "plain" or st.say_solid
    t = _word("bg_texture", scene.bg_texture, lang, st.syn) if show_tex else ""
    if lang == "en":
        return {"bg": f", on a {t + ' ' if t else ''}{c} background"}
    if scene.bg_texture == "checkered":
        noun = f"{c}{t}背景"  # "灰色格子背景"
    else:
        noun = f"{t + '的' if t else ''}{c}背景"  # "带噪点的灰色背景"
    return {"bgp": f"在{noun}上，", "bgs": f"，{noun}"}


def describe(scene: Scene, lang: str = "en", style: Style = CANONICAL) -> str:
    """One caption of ``scene`` in ``lang`` ("en" or "zh")."""
    if lang not in LANGS:
        raise ConfigError(f"unknown caption language {lang!r}; known: {', '.join(LANGS)}")
    forms = _FORMS[scene.kind]
    template = forms[style.form % len(forms)][LANGS.index(lang)]
    f = _background(scene, lang, style)
    o = scene.objects[0]
    np_ = _np_en if lang == "en" else _np_zh
    if scene.kind == "single":
        f.update(np=np_(o, style), pos=_word("position", scene.position, lang, style.syn))
    elif scene.kind == "count":
        f.update(np=np_(o, style, scene.count))
    else:
        b = scene.objects[1]
        f.update(a=np_(o, style), b=np_(b, style),
                 rel=_word("relation", scene.relation, lang, style.syn),
                 inv=_word("relation", _INVERSE[scene.relation], lang, style.syn))
        if lang == "zh":
            f.update(a0=_np_zh(o, style, None), b0=_np_zh(b, style, None))
    return template.format(**f)


_ALL_STYLES = tuple(
    Style(form, syn, bg, solid)
    for form, syn, bg, solid in itertools.product(range(5), (0, 1), (True, False), (False, True))
)


def paraphrase_styles(scene: Scene, n: int, seed: int = 0) -> list[Style]:
    """``n`` styles whose captions are distinct in each language, in a fixed per-scene order.

    The distinct styles are finite (some dozens per scene); past that, the list repeats."""
    if n < 1:
        return []
    order = np.random.default_rng([scene.noise_seed, seed]).permutation(len(_ALL_STYLES))
    seen_en, seen_zh, out = set(), set(), []
    for i in order:
        st = _ALL_STYLES[i]
        en, zh = describe(scene, "en", st), describe(scene, "zh", st)
        if en not in seen_en and zh not in seen_zh:  # new in both languages
            seen_en.add(en)
            seen_zh.add(zh)
            out.append(st)
    return [out[i % len(out)] for i in range(n)]
