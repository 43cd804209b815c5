"""The distillation stages of a build, as the bundle reports them: one summary per stage (from
the ``distill.json`` each method writes) in ``manifest.json`` (``model.distill``) and
``report.json``, and a section of ``report.md`` with per-language accuracy and the gap between
languages where the method measured them (DC-CLIP)."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["distill_summaries", "distill_md"]

_KEEP = ("phase", "inherit", "inherited", "steps", "final_loss", "samples_per_s", "wall_s", "params",
         "zero_shot", "eval", "languages", "tokenizer", "samples", "teacher_dims", "reinforce_s")


def distill_summaries(stages: list[tuple[object, Path]]) -> list[dict]:
    """``[(DistillStage, stage folder), ...]`` -> JSON-ready summaries (missing records skipped)."""
    out = []
    for st, folder in stages:
        path = Path(folder) / "distill.json"
        rec = json.loads(path.read_text()) if path.exists() else {}
        out.append({"method": st.method, "name": st.name, "student": st.student,
                    **{k: rec[k] for k in _KEEP if k in rec}})
    return out


def _pct(v) -> str:
    return f"{v:.1%}" if isinstance(v, (int, float)) else "-"


def distill_md(summaries: list[dict]) -> str:
    if not summaries:
        return ""
    lines = ["## Distillation", "", "| stage | method | steps | samples/s | student params (image / text) |",
             "|---|---|---|---|---|"]
    for i, s in enumerate(summaries, 1):
        p = s.get("params", {}).get("student", {})
        sps = f"{s['samples_per_s']:.0f}" if "samples_per_s" in s else "-"
        lines.append(f"| {i} {s.get('name') or ''} | {s['method']}{' ' + s['phase'] if s.get('phase') else ''} | "
                     f"{s.get('steps', '-')} | {sps} | {p.get('image', '-')} / {p.get('text', '-')} |")
    for i, s in enumerate(summaries, 1):
        ev = s.get("eval")
        if not ev:
            continue
        lines += ["", f"Stage {i} held-out accuracy per language (embedded world):", "",
                  "| model | language | shape | colour | shape-colour | R@1 image→text |", "|---|---|---|---|---|---|"]
        for who in ("teacher", "student"):
            for lang, m in ev.get(who, {}).items():
                tag = "gap " + lang[4:].replace("_", "−") if lang.startswith("gap_") else lang
                lines.append(f"| {who} | {tag} | {_pct(m.get('shape'))} | {_pct(m.get('colour'))} | "
                             f"{_pct(m.get('shape-colour'))} | {_pct(m.get('i2t_r1'))} |")
    return "\n".join(lines) + "\n"
