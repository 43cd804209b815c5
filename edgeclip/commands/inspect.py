"""``edgeclip inspect BUNDLE [--json]``: a bundle's manifest, label set, snippets, sizes and metrics."""
from __future__ import annotations

import json
from pathlib import Path

from ..bundle import load_manifest, open_bundle

__all__ = ["inspect_text", "main"]


def inspect_text(bundle_dir: Path) -> str:
    m = load_manifest(open_bundle(Path(bundle_dir)), where=str(bundle_dir))
    p, t = m["preprocessing"], m["tokenizer"]
    lines = [f"bundle      {bundle_dir}", f"model       {m['model']['uri']} (recipe {m['model']['recipe']}, "
             f"embed {m['model']['embed_dim']}, logit scale {m['model']['logit_scale']:.4g})",
             f"target      {m['target']['name']} ({m['target']['platform']})",
             f"image input {p['input_layout']} {p['input_dtype']} {p['image_size']}x{p['image_size']}, "
             f"mean {p['mean']}, std {p['std']}, resize {p['resize_mode']}",
             f"tokenizer   {t['type']}, context {t['context_length']}, files {', '.join(t['files'])}"]
    lab = m.get("labels")
    if lab:
        shown = ", ".join(lab["names"][:8]) + (f", ... ({lab['count']} in all)" if lab["count"] > 8 else "")
        lines.append(f"labels      {shown}; {len(lab['templates'])} template(s); {lab['embeddings_file']}")
    else:
        lines.append("labels      none (edgeclip build ... --labels labels.txt adds a label set)")
    if m.get("snippets"):
        lines.append(f"snippets    {', '.join(s['file'] for s in m['snippets'])}")
    lines += ["", f"{'artifact':<44} {'tower':<14} {'quant':<13} {'MB':>7} {'p50 ms':>8} {'cosine':>8}  shipped"]
    for a in m["artifacts"]:
        met = a.get("metrics", {})
        p50 = f"{met['latency_p50_ms']:.2f}" if met.get("latency_p50_ms") is not None else "-"
        cos = f"{met['cosine_mean']:.5f}" if met.get("cosine_mean") is not None else "-"
        lines.append(f"{a['file']:<44} {a['tower']:<14} {a['quant']:<13} {a['size_bytes'] / 1e6:>7.2f} "
                     f"{p50:>8} {cos:>8}  {'yes' if a['shipped'] else 'no: ' + str(a.get('why_not_shipped'))}")
    return "\n".join(lines)


def main(args) -> int:
    if args.json:
        print(json.dumps(load_manifest(open_bundle(Path(args.bundle)), where=args.bundle), indent=2,
                         ensure_ascii=False))
    else:
        print(inspect_text(Path(args.bundle)))
    return 0
