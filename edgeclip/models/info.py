"""``edgeclip info URI``: a model's facts, tokenizer and tower inputs/outputs, and their table."""
from __future__ import annotations

from typing import Any

from .zoo import load_model

__all__ = ["describe", "format_facts"]


def describe(uri: str) -> dict[str, Any]:
    """Everything ``edgeclip info URI [--json]`` prints: facts, tokenizer, tower inputs/outputs."""
    m = load_model(uri)
    img, txt = m.image.example_inputs(1)[0], m.text.example_inputs(1)[0]
    return {
        "uri": m.uri,
        "arch": m.config.get("arch", m.uri),
        **m.facts.to_dict(),
        "logit_scale": m.logit_scale,
        "tokenizer": m.tokenizer.describe(),
        "inputs": {
            "image": {"shape": list(img.shape), "dtype": str(img.dtype).replace("torch.", "")},
            "text": {"shape": list(txt.shape), "dtype": str(txt.dtype).replace("torch.", "")},
        },
        "output": {"shape": [1, m.facts.embed_dim], "dtype": "float32", "l2_normalized": True},
    }


def _fmt_count(n: int, unit: str) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}{unit}"
    return f"{n} {unit}"


def format_facts(d: dict[str, Any]) -> str:
    """A two-column human table of ``describe()``'s dict."""
    tok = d.get("tokenizer", {})
    rows = [
        ("model", d.get("uri", "?")),
        ("weights", d.get("weights", "?")),
        ("image input", f"{d['image_size']}x{d['image_size']} RGB, resize {d['resize_mode']}"),
        ("mean / std", f"{tuple(round(v, 4) for v in d['mean'])} / {tuple(round(v, 4) for v in d['std'])}"),
        ("embedding dim", str(d["embed_dim"])),
        ("text input", f"{d['context_length']} tokens, vocab {d['vocab_size']}"
                       + (f", tokenizer {tok['kind']}" if tok else "")),
        ("image params", _fmt_count(d["params_image"], "")),
        ("text params", _fmt_count(d["params_text"], "")),
        ("image FLOPs", _fmt_count(d["flops_image"], "FLOP") + " per image"),
        ("text FLOPs", _fmt_count(d["flops_text"], "FLOP") + " per caption"),
    ]
    if "logit_scale" in d:
        rows.append(("logit scale", f"{d['logit_scale']:.2f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
