"""A miniature reproduction of TinyCLIP's two claims on the embedded world (issue #7 item 6).

With the same student shape, data, batch and number of steps:
  (a) affinity mimicking beats training the same student from scratch with the CLIP loss;
  (b) weight inheritance reaches the from-scratch student's final accuracy in fewer steps.

Runs (all from the default teacher, ``edgeclip pretrain``'s ``builtin:teacher-factored``, and the
default recipe's student shape: image tower whole, text width 128 -> 64 and 4 -> 2 layers):
  scratch+clip      random init (CLIP's init), CLIP loss, learned logit scale
  scratch+affinity  random init, affinity mimicking (alpha 1, scales fixed at 50)
  inherit+clip      manual weight inheritance, CLIP loss
  inherit+affinity  manual weight inheritance, affinity mimicking (TinyCLIP)
each scored every ``--eval-every`` steps on the world's held-out split: zero-shot top-1 (shape,
colour, unseen shape-colour pairs; English prompts) and image->text retrieval R@1.

    python benchmarks/tinyclip_repro.py --steps 300 --out benchmarks/results/tinyclip-repro.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

RUNS = {
    "scratch+clip": {"inherit": "none", "alpha": 0.0, "logit_scale": "learn"},
    "scratch+affinity": {"inherit": "none", "alpha": 1.0},
    "inherit+clip": {"inherit": "manual", "alpha": 0.0, "logit_scale": "learn"},
    "inherit+affinity": {"inherit": "manual", "alpha": 1.0},
}


def student_shape(recipe) -> dict:
    """The default recipe's TinyCLIP student: its image/text overrides (none: that tower whole)."""
    opts = recipe.distill[0].options
    return {"image": dict(opts.get("image") or {}), "text": dict(opts.get("text") or {})}


def score(model, n: int) -> dict[str, float]:
    import torch

    from edgeclip.distill.evaluate import evaluate_synthetic, retrieval_r1

    with torch.no_grad():
        zs = {k: s.accuracy for k, s in evaluate_synthetic(model, n=n).items()}
        r = retrieval_r1(model, n=n)
    zs["zero_shot_mean"] = sum(zs.values()) / len(zs)
    zs["i2t_r1"], zs["t2i_r1"] = r["i2t_r1"], r["t2i_r1"]
    return zs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-n", type=int, default=200)
    p.add_argument("--runs", default=",".join(RUNS))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="benchmarks/results/tinyclip-repro.json")
    args = p.parse_args(argv)

    import torch

    from edgeclip.config import DataSource, default_recipe
    from edgeclip.distill._data import distill_batches
    from edgeclip.distill.tinyclip import TinyClipOptions, distill
    from edgeclip.models import load_model
    from edgeclip.commands.pretrain import run_pretrain

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = default_recipe()
    shape = student_shape(recipe)
    t = run_pretrain(recipe)
    print(f"teacher: {t['model']} ({'cached' if t['cached'] else 'trained'})", file=sys.stderr)
    teacher = load_model(f"file:{t['model']}").eval()
    result = {"schema": "edgeclip.tinyclip-repro/1", "steps": args.steps, "batch_size": args.batch_size,
              "lr": args.lr, "student_shape": shape, "teacher_uri": recipe.teacher, "machine": platform.platform(),
              "threads": torch.get_num_threads(), "teacher": score(teacher, args.eval_n), "runs": {}}
    source = DataSource(source="synthetic", samples=recipe.data.train.samples)
    for name in args.runs.split(","):
        opts = TinyClipOptions(**RUNS[name], **shape)
        curve = []

        def on_eval(step, student, curve=curve):
            curve.append({"step": step, **score(student, args.eval_n)})
            print(f"{name:<17} step {step:>4}: " + ", ".join(f"{k} {v:.3f}" for k, v in curve[-1].items()
                                                              if k != "step"), file=sys.stderr)

        data = distill_batches(source, teacher, teacher, args.batch_size, seed=0)
        t0 = time.perf_counter()
        _, rec = distill(teacher, teacher, opts, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=0.1, warmup_steps=20, data=data, seed=0, progress=False,
                         eval_every=args.eval_every, on_eval=on_eval, desc=name)
        result["runs"][name] = {"curve": curve, "wall_s": time.perf_counter() - t0,
                                "samples_per_s": rec["samples_per_s"], "params": rec["params"]["student"]}
    result["claims"] = {m: claims(result["runs"], m) for m in ("i2t_r1", "zero_shot_mean")}
    from edgeclip._io import write_json_atomic

    write_json_atomic(Path(args.out), result)
    print(table(result))
    return 0


def claims(runs: dict, metric: str) -> dict:
    out = {}
    final = {k: v["curve"][-1][metric] for k, v in runs.items() if v["curve"]}
    if "scratch+clip" in final and "scratch+affinity" in final:
        out["a_affinity_beats_clip_from_scratch"] = final["scratch+affinity"] > final["scratch+clip"]
    if "scratch+clip" in final and "inherit+affinity" in final:
        goal = final["scratch+clip"]
        hit = next((c["step"] for c in runs["inherit+affinity"]["curve"] if c[metric] >= goal), None)
        out["b_steps_to_scratch_final"] = {"inherit+affinity": hit, "scratch+clip": runs["scratch+clip"]["curve"][-1]["step"]}
        out["b_inheritance_faster"] = hit is not None and hit < runs["scratch+clip"]["curve"][-1]["step"]
    return out


def table(result: dict) -> str:
    keys = ["shape", "colour", "shape-colour", "zero_shot_mean", "i2t_r1"]
    rows = ["| run | step | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    t = result["teacher"]
    rows.append(f"| teacher ({result.get('teacher_uri', 'builtin:teacher-vit')}) | - | " + " | ".join(f"{t[k]:.1%}" for k in keys) + " |")
    for name, r in result["runs"].items():
        for c in r["curve"]:
            rows.append(f"| {name} | {c['step']} | " + " | ".join(f"{c[k]:.1%}" for k in keys) + " |")
    return "\n".join(rows) + "\n\nclaims: " + json.dumps(result["claims"])


if __name__ == "__main__":
    sys.exit(main())
