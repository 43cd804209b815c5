"""The distillation stages of a build, as the bundle reports them: one summary per stage (from
the ``distill.json`` each method writes) in ``manifest.json`` (``model.distill``) and
``report.json``, and a section of ``report.md`` with per-language accuracy and the gap between
languages where the method measured them (DC-CLIP)."""
from __future__ import annotations

import json
from pathlib import Path

from .._io import markdown_table

__all__ = ["distill_summaries", "distill_md", "teacher_student_rows", "RETENTION_KINDS"]

# held-out zero-shot kinds a distill stage measures, with their chance levels (8 shapes,
# 8 colours, 64 shape-colour classes)
RETENTION_KINDS = {"shape": 1 / 8, "colour": 1 / 8, "shape-colour": 1 / 64}

_KEEP = ("phase", "inherit", "inherited", "steps", "final_loss", "samples_per_s", "wall_s", "params",
         "zero_shot", "eval", "languages", "tokenizer", "samples", "teacher_dims", "reinforce_s", "data")


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


def teacher_student_rows(summaries: list[dict]) -> list[list[str]]:
    """The teacher beside the last stage's student: parameters, then held-out zero-shot accuracy
    per kind with its chance level and the student's retention (student / teacher), and the
    retention of the mean over kinds. ``[]`` when no stage recorded both."""
    last = summaries[-1] if summaries else {}
    p, zs = last.get("params", {}), last.get("zero_shot", {})
    t_p, s_p = p.get("teacher", {}), p.get("student", {})
    if not (t_p and s_p and zs.get("teacher") and zs.get("student")):
        return []
    rows = [["", "teacher", "student", "student / teacher", "chance"]]
    t_n, s_n = sum(t_p.values()), sum(s_p.values())
    rows.append(["parameters (image + text)", f"{t_n:,}", f"{s_n:,}", f"{s_n / t_n:.2f}", ""])
    t_acc, s_acc = [], []
    for kind, chance in RETENTION_KINDS.items():
        t, st = zs["teacher"].get(kind), zs["student"].get(kind)
        if t is None or st is None:
            continue
        t_acc.append(t)
        s_acc.append(st)
        rows.append([f"held-out {kind} top-1", _pct(t), _pct(st), f"{st / t:.2f}" if t else "-", _pct(chance)])
    if t_acc and sum(t_acc):
        rows.append(["mean of those", _pct(sum(t_acc) / len(t_acc)), _pct(sum(s_acc) / len(s_acc)),
                     f"{sum(s_acc) / sum(t_acc):.2f}", ""])
    return rows


def distill_md(summaries: list[dict]) -> str:
    if not summaries:
        return ""
    pair = teacher_student_rows(summaries)
    head = ["## Teacher and student", "", *markdown_table(pair), ""] if pair else []
    lines = head + ["## Distillation", "", "| stage | method | steps | samples/s | student params (image / text) |",
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
