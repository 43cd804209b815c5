"""Side-by-side latency of one tower: torch eager vs ExecuTorch, LiteRT and ONNX Runtime.

    python benchmarks/bench_backends.py --model ViT-B-32 --tower image
    python benchmarks/bench_backends.py --model MobileCLIP-S1 --quants fp32,int8-static

Builds an open_clip architecture with random weights (no download), exports the tower through
each backend in each quant mode, then times the runners in rounds: each round runs every runner
for a short block (a warmup call, then timed calls), so load spikes on a shared machine hit all
runners alike while one runtime's spinning worker threads do not land in another's timings.
Writes edgeclip.report/1 records: latency p50/p90/min, load time, size, cosine vs eager on real
photos/captions, delegation. torch eager is also timed single-threaded: on a loaded 2-core box
its many small OpenMP regions wait on descheduled threads, which inflates the 2-thread number.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EVAL_IMAGES = ("astronaut", "chelsea", "coffee", "rocket")
CALIB_IMAGES = ("retina", "colorwheel", "clock", "immunohistochemistry")
EVAL_CAPTIONS = ("a photo of an astronaut", "a cat lying on a couch", "a cup of coffee", "a rocket")
CALIB_CAPTIONS = ("a diagram of the retina", "a color wheel", "a clock on the wall", "a tissue sample")


def machine(threads: int) -> dict:
    import importlib.metadata as md

    def ver(p):
        try:
            return md.version(p)
        except md.PackageNotFoundError:
            return None

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "load_avg_start": os.getloadavg(),
            "versions": {p: ver(p) for p in ("torch", "executorch", "litert-torch", "ai-edge-litert",
                                             "onnxruntime", "coremltools", "open-clip-torch")},
            "note": "shared, noisy machine: compare rows of one run, not across runs"}


def load_tower(name: str, tower: str):
    """Export-ready tower + (eval inputs, calibration inputs) from real photos or captions."""
    import skimage.data

    from edgeclip.models import load_model, preprocess_images, reparameterize

    m = load_model(f"openclip:{name}")
    if tower == "image":
        t = reparameterize(m.image) if "Mobile" in name else m.image
        f = m.facts

        def prep(names):
            return [(preprocess_images(getattr(skimage.data, n)(), f.image_size, f.mean, f.std,
                                       f.resize_mode).numpy(),) for n in names]
        return t.eval(), prep(EVAL_IMAGES), prep(CALIB_IMAGES)
    ids, cal = m.tokenizer(list(EVAL_CAPTIONS)), m.tokenizer(list(CALIB_CAPTIONS))
    return m.text.eval(), [(r[None].copy(),) for r in ids], [(r[None].copy(),) for r in cal]


class EagerRunner:
    emulated = False

    def __init__(self, tower, threads):
        self.tower, self.threads, self.load_ms = tower, threads, 0.0
        self.runtime = "torch-eager" if threads > 1 else "torch-eager-1thread"

    def __call__(self, *xs):
        import torch

        torch.set_num_threads(self.threads)  # per call: the two eager rows differ only here
        with torch.inference_mode():
            return self.tower(*(torch.from_numpy(np.ascontiguousarray(x)) for x in xs)).numpy()


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random init)")
    ap.add_argument("--tower", default="image", choices=("image", "text"))
    ap.add_argument("--backends", default="executorch,litert,onnx")
    ap.add_argument("--quants", default="fp32,int8-dynamic", help="comma list; unsupported pairs are skipped")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls per runner before round 1")
    ap.add_argument("--runs", type=int, default=15, help="timed calls per runner, over all rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--target", default="host-cpu")
    ap.add_argument("--out", default="bench_backends.json")
    ap.add_argument("--workdir", default=None, help="where artifacts go (default: a temp dir)")
    args = ap.parse_args(argv)

    import torch

    from edgeclip.backends import BACKENDS, ExportSpec

    torch.set_num_threads(args.threads)
    info = machine(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="edgeclip-bench-"))
    t0 = time.perf_counter()
    tower, inputs, calibration = load_tower(args.model, args.tower)
    print(f"built {args.model} {args.tower} tower in {time.perf_counter() - t0:.0f}s", flush=True)
    eager = EagerRunner(tower, args.threads)
    reference = [eager(*s) for s in inputs]
    rows = [("torch-eager", "fp32", eager, None)]
    if args.threads > 1:
        rows.append(("torch-eager", "fp32", EagerRunner(tower, 1), None))
    records = []
    model_id = f"openclip:{args.model}"

    def rec(backend, quant, runner, metric, value, unit):
        records.append({"model": model_id, "target": args.target, "backend": backend, "tower": args.tower,
                        "quant": quant, "runner": runner, "emulated": False, "metric": metric,
                        "value": value, "unit": unit})

    for bname in args.backends.split(","):
        b = BACKENDS.get(bname)
        for q in args.quants.split(","):
            if q not in b.quant_modes:
                print(f"skip {bname} {q}: not offered (has {', '.join(b.quant_modes)})")
                continue
            t = time.perf_counter()
            spec = ExportSpec(tower=args.tower, quant=q, calibration=calibration, name=f"{args.tower}-{q}",
                              input_names=("pixel_values",) if args.tower == "image" else ("input_ids",))
            try:
                art = b.export(tower, inputs[0], spec, work / bname)
            except Exception as e:  # one failing backend must not sink the comparison
                print(f"FAIL {bname} {q}: {e}", flush=True)
                continue
            runner = b.runner(art, threads=args.threads)
            print(f"exported {bname} {q} in {time.perf_counter() - t:.0f}s "
                  f"({art.size_bytes / 1e6:.1f} MB, delegated {art.delegated_fraction})", flush=True)
            if runner is not None:
                rows.append((bname, q, runner, art))

    # accuracy vs eager, then round-robin latency
    lat = {i: [] for i in range(len(rows))}
    for i, (bname, q, runner, art) in enumerate(rows):
        cos = [cosine(runner(*s), r) for s, r in zip(inputs, reference)]
        rt = runner.runtime
        if art is not None:
            rec(bname, q, rt, "cosine_mean", float(np.mean(cos)), "")
            rec(bname, q, rt, "cosine_min", float(np.min(cos)), "")
            rec(bname, q, rt, "size_mb", art.size_bytes / 1e6, "MB")
            rec(bname, q, rt, "load_ms", runner.load_ms, "ms")
            if art.delegated_fraction is not None:
                rec(bname, q, rt, "delegated_fraction", art.delegated_fraction, "")
        for _ in range(args.warmup):
            runner(*inputs[0])
    per_round = max(1, -(-args.runs // args.rounds))
    for _ in range(args.rounds):
        for i, (_, _, runner, _) in enumerate(rows):
            runner(*inputs[0])  # re-warm after the previous runtime's block
            for _ in range(per_round):
                s = time.perf_counter()
                runner(*inputs[0])
                lat[i].append((time.perf_counter() - s) * 1e3)

    base = float(np.median(lat[0]))
    base1 = float(np.median(lat[1])) if args.threads > 1 else base  # single-thread eager
    print(f"\n{args.model} {args.tower} tower, batch 1, {args.threads} threads, "
          f"{per_round * args.rounds} runs in {args.rounds} rounds "
          f"(load avg {os.getloadavg()[0]:.1f}; shared machine, noisy)")
    print(f"{'backend':12s} {'quant':13s} {'runtime':22s} {'p50 ms':>8s} {'p90 ms':>8s} {'vs eager':>9s}"
          f" {'vs 1-thr':>9s}")
    for i, (bname, q, runner, _) in enumerate(rows):
        v = np.asarray(lat[i])
        p50, p90 = float(np.median(v)), float(np.percentile(v, 90))
        for metric, val in (("latency_p50_ms", p50), ("latency_p90_ms", p90), ("latency_min_ms", float(v.min()))):
            rec(bname, q, runner.runtime, metric, val, "ms")
        print(f"{bname:12s} {q:13s} {runner.runtime:22s} {p50:8.1f} {p90:8.1f} {base / p50:8.2f}x"
              f" {base1 / p50:8.2f}x")
    info["load_avg_end"] = os.getloadavg()
    report = {"schema": "edgeclip.report/1", "machine": info, "results": records}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"\nwrote {len(records)} records to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
