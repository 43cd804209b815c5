"""Side-by-side latency of CLIP towers: torch eager vs every ExecuTorch, LiteRT and ONNX
Runtime artifact, read against the machine's fp32 roofline.

    python benchmarks/latency.py --out bench.json                      # ViT-B/32 + MobileCLIP2-S0 image
    python benchmarks/latency.py --models ViT-B-32 --tower text --quants fp32,int8-dynamic

Each tower is an open_clip architecture with random weights (no download); conv towers
(MobileCLIP) are reparameterized first. Every backend exports it in every quant mode it offers;
the runners are timed in rounds (each round gives every runner a short block: one re-warm call,
then timed calls), so a load spike on a shared machine hits all runners alike and one runtime's
spinning worker threads stay out of the next one's timings.

Besides latency (p50/p90/min), load time, size, build time, cosine to eager on real photos or
captions and delegation, the file records each tower's FLOPs (metric ``gflop``, backend
``torch-eager``) and the machine's measured large-GEMM fp32 peak (``machine.gemm_peak_gflops``).
Roofline time = FLOPs / peak; the table prints each artifact's time as a multiple of it
(``x roof``, 1.0 = the fp32 floor) and its speed as a fraction of it (``roof %``). Torch eager
is a noisy yardstick on a shared machine; the roofline is the steady one.
"""
from __future__ import annotations

import argparse
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


def gemm_peak_gflops(threads: int, n: int = 2048, reps: int = 8) -> dict[str, float]:
    """Best-of-``reps`` fp32 GFLOP/s of one large square matmul through torch (its CPU BLAS)
    and through numpy (OpenBLAS); the higher is the machine's practical peak. On the 2-core
    EPYC VM used here torch reached ~101 and numpy ~147 GFLOP/s."""
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    a, b = torch.randn(n, n), torch.randn(n, n)
    an, bn = a.numpy(), b.numpy()
    out = {}
    for name, mm in (("torch", lambda: torch.mm(a, b)), ("numpy", lambda: an @ bn)):
        mm()
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            mm()
            best = min(best, time.perf_counter() - t)
        out[name] = 2 * n**3 / best / 1e9
    return out


def tower_gflop(tower, example) -> float:
    import torch

    from edgeclip.models.facts import count_flops

    return count_flops(tower, tuple(torch.from_numpy(np.ascontiguousarray(x)) for x in example)) / 1e9


def export_all(args, tower, inputs, calibration, work: Path, log):
    """[(backend, quant, runner, artifact, build_s)] for every offered (backend, quant)."""
    from edgeclip.backends import BACKENDS, ExportSpec

    rows = []
    jobs = [(b, q, {}, b) for b in args.backends.split(",") for q in args.quants.split(",")]
    if args.compare_rewrite and "executorch" in args.backends.split(","):
        jobs += [("executorch", "fp32", {"xnnpack_rewrite": False}, "executorch-plain")]
    for bname, q, options, label in jobs:
        b = BACKENDS.get(bname)
        if q not in b.quant_modes:
            log(f"skip {bname} {q}: not offered (has {', '.join(b.quant_modes)})")
            continue
        t = time.perf_counter()
        spec = ExportSpec(tower=args.tower, quant=q, calibration=calibration, options=options,
                          name=f"{args.tower}-{q}{'-plain' if options else ''}",
                          input_names=("pixel_values",) if args.tower == "image" else ("input_ids",))
        try:
            art = b.export(tower, inputs[0], spec, work / bname)
        except Exception as e:  # one failing backend must not sink the comparison
            log(f"FAIL {bname} {q}: {e}")
            continue
        build_s = time.perf_counter() - t
        runner = b.runner(art, threads=args.threads)
        log(f"exported {label} {q} in {build_s:.0f}s ({art.size_bytes / 1e6:.1f} MB, "
            f"delegated {art.delegated_fraction}, compute {art.extra.get('compute_delegated_fraction')})")
        if runner is not None:
            rows.append((label, q, runner, art, build_s))
    return rows


def time_round_robin(rows, sample, warmup: int, runs: int, rounds: int) -> list[list[float]]:
    lat = [[] for _ in rows]
    for runner in rows:
        for _ in range(warmup):
            runner(*sample)
    per_round = max(1, -(-runs // rounds))
    for _ in range(rounds):
        for i, runner in enumerate(rows):
            runner(*sample)  # re-warm after the previous runtime's block
            for _ in range(per_round):
                s = time.perf_counter()
                runner(*sample)
                lat[i].append((time.perf_counter() - s) * 1e3)
    return lat


def bench_model(args, name: str, peak: float, work: Path) -> list[dict]:
    def log(msg):
        print(f"[{name}] {msg}", flush=True)

    t0 = time.perf_counter()
    tower, inputs, calibration = load_tower(name, args.tower)
    gflop = tower_gflop(tower, inputs[0])
    roof_ms = gflop / peak * 1e3
    log(f"built {args.tower} tower in {time.perf_counter() - t0:.0f}s: {gflop:.3f} GFLOP, "
        f"fp32 roofline {roof_ms:.1f} ms at {peak:.0f} GFLOP/s")
    eager = EagerRunner(tower, args.threads)
    reference = [eager(*s) for s in inputs]
    rows = [("torch-eager", "fp32", eager, None, 0.0)]
    if args.threads > 1:
        rows.append(("torch-eager", "fp32", EagerRunner(tower, 1), None, 0.0))
    rows += export_all(args, tower, inputs, calibration, work / name, log)

    records, model_id = [], f"openclip:{name}"

    def rec(backend, quant, runner, metric, value, unit):
        records.append({"model": model_id, "target": args.target, "backend": backend, "tower": args.tower,
                        "quant": quant, "runner": runner, "emulated": False, "metric": metric,
                        "value": value, "unit": unit})

    rec("torch-eager", "fp32", "torch-eager", "gflop", gflop, "GFLOP")
    for bname, q, runner, art, build_s in rows:
        if art is None:
            continue
        cos = [cosine(runner(*s), r) for s, r in zip(inputs, reference)]
        rt = runner.runtime
        rec(bname, q, rt, "cosine_mean", float(np.mean(cos)), "")
        rec(bname, q, rt, "cosine_min", float(np.min(cos)), "")
        rec(bname, q, rt, "size_mb", art.size_bytes / 1e6, "MB")
        rec(bname, q, rt, "load_ms", runner.load_ms, "ms")
        rec(bname, q, rt, "build_s", build_s, "s")
        if art.delegated_fraction is not None:
            rec(bname, q, rt, "delegated_fraction", art.delegated_fraction, "fraction")
        if art.extra.get("compute_delegated_fraction") is not None:
            rec(bname, q, rt, "compute_delegated_fraction", art.extra["compute_delegated_fraction"], "fraction")
    lat = time_round_robin([r[2] for r in rows], inputs[0], args.warmup, args.runs, args.rounds)

    eager_ms = float(np.median(lat[0]))
    ort_fp32 = next((float(np.median(lat[i])) for i, r in enumerate(rows) if r[:2] == ("onnx", "fp32")), None)
    print(f"\n{name} {args.tower} tower, batch 1, {args.threads} threads, {len(lat[0])} runs in "
          f"{args.rounds} rounds; {gflop:.2f} GFLOP, roofline {roof_ms:.1f} ms "
          f"(load avg {os.getloadavg()[0]:.1f})")
    print(f"{'backend':12s} {'quant':13s} {'runtime':20s} {'p50 ms':>8s} {'p90 ms':>8s} {'x roof':>7s}"
          f" {'roof %':>7s} {'vs eager':>9s} {'vs ORT':>7s} {'cos min':>8s} {'MB':>7s} {'build s':>8s}")
    cos_by = {(r["backend"], r["quant"]): r["value"] for r in records if r["metric"] == "cosine_min"}
    for i, (bname, q, runner, art, build_s) in enumerate(rows):
        v = np.asarray(lat[i])
        p50 = float(np.median(v))
        for metric, val in (("latency_p50_ms", p50), ("latency_p90_ms", float(np.percentile(v, 90))),
                            ("latency_min_ms", float(v.min())), ("roofline_ratio", p50 / roof_ms)):
            rec(bname, q, runner.runtime, metric, val, "x" if metric == "roofline_ratio" else "ms")
        cmin = cos_by.get((bname, q)) if art is not None else 1.0
        print(f"{bname:12s} {q:13s} {runner.runtime:20s} {p50:8.1f} {float(np.percentile(v, 90)):8.1f}"
              f" {p50 / roof_ms:7.2f} {100 * roof_ms / p50:6.0f}% {eager_ms / p50:8.2f}x"
              f" {(ort_fp32 / p50 if ort_fp32 else float('nan')):6.2f}x {cmin:8.5f}"
              f" {(art.size_bytes / 1e6 if art else float('nan')):7.1f} {build_s:8.0f}")
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="ViT-B-32,MobileCLIP2-S0", help="open_clip architectures (random init)")
    ap.add_argument("--tower", default="image", choices=("image", "text"))
    ap.add_argument("--backends", default="executorch,litert,onnx")
    ap.add_argument("--quants", default="fp32,fp16,int8-weight,int8-dynamic,int8-static,8da4w",
                    help="comma list; pairs a backend does not offer are skipped")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="default: all cores")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls per runner before round 1")
    ap.add_argument("--runs", type=int, default=15, help="timed calls per runner, over all rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare-rewrite", action="store_true",
                    help="also time an ExecuTorch fp32 artifact lowered without the XNNPACK rewrite")
    ap.add_argument("--target", default="host-cpu")
    ap.add_argument("--out", default="latency.json")
    ap.add_argument("--workdir", default=None, help="where artifacts go (default: a temp dir)")
    args = ap.parse_args(argv)

    from edgeclip.verify.report import write_json_atomic

    info = machine(args.threads)
    peaks = gemm_peak_gflops(args.threads)
    peak = max(peaks.values())
    info["gemm_peak_gflops"], info["gemm_peak_by_library"] = peak, peaks
    print(f"large-GEMM fp32 peak: {peak:.0f} GFLOP/s on {args.threads} threads "
          f"({', '.join(f'{k} {v:.0f}' for k, v in peaks.items())})", flush=True)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="edgeclip-bench-"))
    records = []
    for name in args.models.split(","):
        records += bench_model(args, name, peak, work)
    info["load_avg_end"] = os.getloadavg()
    report = {"schema": "edgeclip.report/1", "machine": info, "results": records}
    write_json_atomic(Path(args.out), report)
    print(f"\nwrote {len(records)} records to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
