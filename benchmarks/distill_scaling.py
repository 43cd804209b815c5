"""Distillation throughput, one process against N torchrun ranks, side by side in one run.

    python benchmarks/distill_scaling.py --out benchmarks/results/distill-scaling.json

Stage 1 of ``recipes/tinyclip-embedded.yaml`` (the pretrained builtin teacher -> a half-width
student, affinity mimicking at global batch 64), cut to ``--steps`` steps, is trained by
``edgeclip distill`` twice: in one process with all cores, then under ``torchrun
--nproc_per_node=N`` (gloo, one thread per rank). Both runs are the same computation (same
global batches, gradients averaged), so their samples/s compare directly; the final losses are
printed beside them as a check. The teacher is pretrained once into ``--root`` (reused after).
Each run gets its own stage name, so neither reuses the other's cache entry.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _recipe(steps: int, label: str, out: Path) -> Path:
    r = yaml.safe_load((ROOT / "recipes" / "tinyclip-embedded.yaml").read_text())
    stage = dict(r["distill"][0], steps=steps, name=f"half-{label}")
    r["distill"] = [stage]
    r["name"] = "tinyclip-scaling"
    path = out / f"recipe-{label}.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


def _run(cmd: list[str], threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def _record(root: Path, name: str) -> dict:
    for p in (root / ".cache").glob("distill-*/distill.json"):
        rec = json.loads(p.read_text())
        if rec.get("stage", {}).get("name") == name:
            return rec
    sys.exit(f"no distill.json for stage {name} under {root}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--root", default="build/distill-scaling", help="stage cache root (the teacher is kept here)")
    ap.add_argument("--out", default="distill-scaling.json")
    args = ap.parse_args(argv)
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    edgeclip = [sys.executable, "-m", "edgeclip"]
    one, many = _recipe(args.steps, "1proc", root), _recipe(args.steps, f"{args.nproc}proc", root)
    print("pretraining (or finding) the teacher ...", flush=True)
    _run(edgeclip + ["pretrain", "--recipe", str(one), "--out", str(root)], cores)
    rows = []
    for label, recipe, cmd, threads in (
            ("1 process", one, edgeclip, cores),
            (f"{args.nproc} ranks", many, [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}",
                                           "--standalone", "-m", "edgeclip"], max(1, cores // args.nproc))):
        wall = _run(cmd + ["distill", "--recipe", str(recipe), "--out", str(root), "--device", "cpu"], threads)
        rec = _record(root, yaml.safe_load(recipe.read_text())["distill"][0]["name"])
        rows.append({"run": label, "world_size": rec["world_size"], "threads_per_rank": threads,
                     "samples_per_s": rec["samples_per_s"], "train_wall_s": rec["wall_s"], "command_wall_s": wall,
                     "final_loss": rec["final_loss"], "steps": rec["steps"]})
        print(f"{label:>10}: {rec['samples_per_s']:7.1f} samples/s ({threads} thread(s) per rank), "
              f"training {rec['wall_s']:.1f} s, command {wall:.1f} s, final loss {rec['final_loss']:.4f}", flush=True)
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["speedup_vs_1_process"] = r["samples_per_s"] / base if base else None
    from _machine import machine
    out = {"machine": machine(cores), "steps": args.steps, "global_batch": 64, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"{rows[1]['run']} vs 1 process: {rows[1]['speedup_vs_1_process']:.2f}x samples/s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
