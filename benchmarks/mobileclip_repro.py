"""A miniature reproduction of MobileCLIP's reinforced training on the embedded world (#8).

The default teacher (``edgeclip pretrain``) reinforces the training scenes of
``recipes/mobileclip-embedded.yaml`` once; then the same conv student (builtin tiny-mci) trains
for the same steps, batch and stored augmentations with:
  clip        the CLIP loss on the real captions (no teacher, no synthetic captions)
  reinforced  MobileCLIP-S: w0=0, w1=1, KD from the stored ensemble targets, real + synthetic captions
Scored every ``--eval-every`` steps on the world's held-out split (zero-shot top-1, retrieval R@1);
throughput of each run and of the one-off reinforcement are reported; the teacher never runs
during either training run.

    python benchmarks/mobileclip_repro.py --steps 300 --out benchmarks/results/mobileclip-repro.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tinyclip_repro import claims, score, table  # noqa: E402

RUNS = {"clip": {"w0": 1.0, "w1": 0.0, "synthetic_captions": False},
        "reinforced": {"w0": 0.0, "w1": 1.0}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-n", type=int, default=200)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", default="build/mobileclip-embedded/reinforced")
    p.add_argument("--out", default="benchmarks/results/mobileclip-repro.json")
    args = p.parse_args(argv)

    import torch

    from edgeclip.config import load_recipe
    from edgeclip.distill.mobileclip import MobileClipOptions, make_student, train_reinforced
    from edgeclip.models import load_model
    from edgeclip.commands.reinforce import run_reinforce
    from edgeclip.commands.pretrain import run_pretrain

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(Path(__file__).parents[1] / "recipes" / "mobileclip-embedded.yaml")
    stage = recipe.distill[0]
    t0 = time.perf_counter()
    made = run_reinforce(recipe, Path(args.data))
    reinforce_s = time.perf_counter() - t0
    teacher = load_model(f"file:{run_pretrain(recipe)['model']}").eval()
    result = {"schema": "edgeclip.mobileclip-repro/1", "steps": args.steps, "batch_size": stage.batch_size,
              "lr": stage.lr, "student": stage.student, "teacher_uri": recipe.teacher, "machine": platform.platform(),
              "threads": torch.get_num_threads(), "reinforce": {"seconds": reinforce_s, **{
                  k: made["index"][k] for k in ("samples", "k", "syn", "dtype")}},
              "teacher": score(teacher, args.eval_n), "runs": {}}
    for name, over in RUNS.items():
        curve = []

        def on_eval(step, student, curve=curve, name=name):
            curve.append({"step": step, **score(student, args.eval_n)})
            print(f"{name:<11} step {step:>4}: " + ", ".join(f"{k} {v:.3f}" for k, v in curve[-1].items()
                                                        if k != "step"), file=sys.stderr)

        student = make_student(stage.student, recipe.seed)
        opts = MobileClipOptions(**{**dict(stage.options), **over})
        rec = train_reinforced(student, Path(args.data), opts, steps=args.steps, batch_size=stage.batch_size,
                               lr=stage.lr, weight_decay=stage.weight_decay, warmup_steps=stage.warmup_steps,
                               seed=recipe.seed, progress=False, eval_every=args.eval_every, on_eval=on_eval,
                               desc=name)
        result["runs"][name] = {"curve": curve, "wall_s": rec["wall_s"], "samples_per_s": rec["samples_per_s"]}
    result["claims"] = {m: _claim(result["runs"], m) for m in ("i2t_r1", "zero_shot_mean")}
    from edgeclip._io import write_json_atomic

    write_json_atomic(Path(args.out), result)
    print(table(result).split("\n\nclaims")[0] + "\n\nclaims: " + json.dumps(result["claims"]))
    print("throughput (samples/s): " + ", ".join(f"{k} {v['samples_per_s']:.0f}" for k, v in result["runs"].items())
          + f"; reinforcement {made['index']['samples'] / max(reinforce_s, 1e-9):.1f} samples/s once")
    return 0


def _claim(runs: dict, metric: str) -> dict:
    goal = runs["clip"]["curve"][-1][metric]
    hit = next((c["step"] for c in runs["reinforced"]["curve"] if c[metric] >= goal), None)
    return {"clip_final": goal, "reinforced_final": runs["reinforced"]["curve"][-1][metric],
            "reinforced_steps_to_clip_final": hit, "clip_steps": runs["clip"]["curve"][-1]["step"],
            "reinforced_faster": hit is not None and hit < runs["clip"]["curve"][-1]["step"]}


if __name__ == "__main__":
    sys.exit(main())
