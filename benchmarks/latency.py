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
``torch-eager``) and the machine's measured large-GEMM fp32 peak (``machine.gemm_peak_gflops``:
the best seen, re-measured at every timing round; each model's own is a ``gemm_peak_gflops``
record), its SIMD flags and its DRAM copy bandwidth. Roofline time = FLOPs / peak; the table
prints each artifact's time as a multiple of it (``x roof``, 1.0 = the fp32 floor) and its
speed as a fraction of it (``roof %``), then which of issue #5's speed targets the run met.
Torch eager is a noisy yardstick on a shared machine; the roofline is the steady one.
``gemm:TxW`` (default ``gemm:50x768``) times a bare Linear stack at a ViT's shape: the ceiling
each runtime's GEMM kernels reach there, which small-M GEMMs keep below the large-GEMM peak.
``convs:ARCH`` (e.g. ``convs:MobileCLIP2-S0``) does the same for a conv tower: its own Conv2d
layers alone, on the activations the tower computes (``_ceilings.py``).

``--twin cortex-a76,cortex-a55`` also counts every .pte/.tflite/.onnx artifact's instructions per
inference on those emulated phone cores (``edgeclip.verify.arm64``, the ARM64 twin; set it up with
``edgeclip device setup arm64``) and prints them beside the host p50, with each int8 variant's
ratio to its runtime's fp32 on each core and on this host: what a phone's kernels make of int8,
which an x86 host's timing does not show. Counts are records with ``device`` set.

``--profile`` also runs every artifact through its runtime's own profiler (``edgeclip.verify.profile``:
ExecuTorch ETDump, ONNX Runtime's profiler; LiteRT's Python API has none, so its op mix): time per
op type, the share in layout glue (``glue_fraction``) and in conv kernels (``conv_ms``), so a
tower's conv time can be read against its ``convs:`` ceiling's.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _ceilings import ConvStack, GemmStack
from _machine import PeakProbe, gemm_peak_gflops, machine, memory_bandwidth_gbs

from edgeclip.verify.profile import profile_artifact
from edgeclip.verify.rounds import time_round_robin

EVAL_IMAGES = ("astronaut", "chelsea", "coffee", "rocket")
CALIB_IMAGES = ("retina", "colorwheel", "clock", "immunohistochemistry")
EVAL_CAPTIONS = ("a photo of an astronaut", "a cat lying on a couch", "a cup of coffee", "a rocket")
CALIB_CAPTIONS = ("a diagram of the retina", "a color wheel", "a clock on the wall", "a tissue sample")


def load_tower(name: str, tower: str):
    """Export-ready tower + (eval inputs, calibration inputs) from real photos or captions."""
    if name.startswith("gemm:"):
        return GemmStack.build(name)
    if name.startswith("convs:"):
        return ConvStack.build(name, load_tower)
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
    if args.compare_mean and "executorch" in args.backends.split(","):  # means as Mean (ND) reductions
        jobs += [("executorch", q, {"xnnpack_mean": "reduce"}, "executorch-reduce") for q in args.quants.split(",")]
    for bname, q, options, label in jobs:
        b = BACKENDS.get(bname)
        if q not in b.quant_modes:
            log(f"skip {bname} {q}: not offered (has {', '.join(b.quant_modes)})")
            continue
        t = time.perf_counter()
        spec = ExportSpec(tower=args.tower, quant=q, calibration=calibration, options=options,
                          name=f"{args.tower}-{q}{'-' + label if options else ''}",
                          input_names=getattr(tower, "input_names", None)
                          or (("pixel_values",) if args.tower == "image" else ("input_ids",)))
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


def bench_model(args, name: str, probe: PeakProbe, work: Path, profiles: dict) -> list[dict]:
    def log(msg):
        print(f"[{name}] {msg}", flush=True)

    t0 = time.perf_counter()
    tower, inputs, calibration = load_tower(name, args.tower)
    gflop = tower_gflop(tower, inputs[0])
    log(f"built {args.tower} tower in {time.perf_counter() - t0:.0f}s: {gflop:.3f} GFLOP, "
        f"fp32 roofline {gflop / probe.best * 1e3:.1f} ms at {probe.best:.0f} GFLOP/s so far")
    eager = EagerRunner(tower, args.threads)
    reference = [eager(*s) for s in inputs]
    rows = [("torch-eager", "fp32", eager, None, 0.0)]
    if args.threads > 1:
        rows.append(("torch-eager", "fp32", EagerRunner(tower, 1), None, 0.0))
    rows += export_all(args, tower, inputs, calibration, work / name, log)

    records, model_id = [], (name if name.startswith(("gemm:", "convs:")) else f"openclip:{name}")

    def rec(backend, quant, runner, metric, value, unit, device=""):
        records.append({"model": model_id, "target": args.target, "backend": backend, "tower": args.tower,
                        "quant": quant, "runner": runner, "emulated": bool(device), "metric": metric,
                        "value": value, "unit": unit, **({"device": device} if device else {})})

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
        if args.profile:
            prof = profile_artifact(art, inputs[0], runs=args.profile_runs, threads=args.threads)
            if prof is not None:
                profiles[f"{model_id} {bname} {q}"] = prof
                print_profile(f"{bname} {q}", prof)
                if prof["timed"]:
                    rec(bname, q, rt, "glue_fraction", prof["glue_fraction"], "fraction")
                    rec(bname, q, rt, "conv_ms", conv_ms(prof), "ms")
    lat = [[t for block in r for t in block]  # per runner, every timed call of every round
           for r in time_round_robin([r[2] for r in rows], lambda i: inputs[0], args.warmup, args.runs,
                                     args.rounds, probe)]
    peak = probe.best
    roof_ms = gflop / peak * 1e3
    rec("torch-eager", "fp32", "numpy", "gemm_peak_gflops", peak, "GFLOP/s")

    eager_ms = float(np.median(lat[0]))
    ort_fp32 = next((float(np.median(lat[i])) for i, r in enumerate(rows) if r[:2] == ("onnx", "fp32")), None)
    print(f"\n{name} {args.tower} tower, batch 1, {args.threads} threads, {len(lat[0])} runs in "
          f"{args.rounds} rounds; {gflop:.2f} GFLOP, roofline {roof_ms:.1f} ms at {peak:.0f} GFLOP/s "
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
    print_targets(records, model_id)
    if args.twin:
        count_on_twin(args, rows, inputs[0], {(r[0], r[1]): float(np.median(lat[i])) for i, r in enumerate(rows)}, rec)
    return records


def count_on_twin(args, rows, example, p50s: dict, rec) -> None:
    """Instructions per inference of every twin-runnable artifact on each core of ``--twin``,
    printed beside the host p50 with int8/fp32 ratios per runtime (host ms and each core)."""
    from edgeclip.verify.arm64 import CORES, TWIN_FORMATS, count_instructions, ready_kit
    kit = ready_kit(setup_if_missing=True)
    cores = [CORES[c] for c in args.twin.split(",")]
    arts = [(b, q, a) for b, q, _r, a, _s in rows if a is not None and Path(a.path).suffix in TWIN_FORMATS]
    counts = {}
    for b, q, a in arts:
        for core in cores:
            t = time.perf_counter()
            n = count_instructions(kit, core, a.path, np.ascontiguousarray(example[0]), runs=args.twin_runs)
            counts[(b, q, core.name)] = n
            rec(b, q, f"arm64-emulated:{core.name}", "instructions_per_inference", n, "instructions", f"arm64:{core.name}")
            print(f"  counted {b} {q} on {core.name}: {n / 1e6:.1f} M instructions ({time.perf_counter() - t:.0f}s)",
                  flush=True)
    head = f"{'backend':12s} {'quant':13s} {'host ms':>8s} {'vs fp32':>8s}"
    head += "".join(f" {'M instr ' + c.name[7:]:>14s} {'vs fp32':>8s}" for c in cores)
    print(head)
    for b, q, _a in arts:
        line = f"{b:12s} {q:13s} {p50s[(b, q)]:8.2f} {p50s[(b, q)] / p50s.get((b, 'fp32'), float('nan')):8.2f}"
        for c in cores:
            n, f = counts[(b, q, c.name)], counts.get((b, "fp32", c.name))
            line += f" {n / 1e6:14.1f} {(n / f if f else float('nan')):8.2f}"
        print(line)



def conv_ms(prof: dict) -> float:
    """Time a profile spends in convolution kernels (XNNPACK ``Convolution (...)``, ORT ``Conv`` /
    ``ConvInteger`` / ``QLinearConv`` / ``FusedConv``, portable ``convolution``)."""
    return float(sum(o.get("ms", 0.0) for o in prof["by_op_type"] if "conv" in o["op"].lower()))


def print_profile(label: str, prof: dict) -> None:
    top = prof["by_op_type"][:4]
    if prof["timed"]:
        print(f"  profile {label}: {prof['total_ms']:.1f} ms, ops {prof['ops_ms']:.1f} ms, glue "
              f"{100 * prof['glue_fraction']:.1f}%, conv {conv_ms(prof):.1f} ms; "
              + ", ".join(f"{o['op']} {o['ms']:.1f}" for o in top), flush=True)
    else:
        print(f"  profile {label} ({prof['source']}): {prof['ops']} ops, {prof['glue_ops']} glue; "
              + ", ".join(f"{o['op']} x{o['count']}" for o in top), flush=True)


def print_targets(records: list[dict], model_id: str) -> list[tuple[str, bool]]:
    """The speed targets of issue #5, read off this run's records: every fp32 artifact at
    >= 75% of the fp32 roofline speed, the best int8 artifact with cosine_min >= 0.995 at
    <= 0.5x the roofline time, every ExecuTorch artifact with all compute ops delegated."""
    by = {}
    for r in records:
        if r["model"] == model_id:
            by.setdefault((r["backend"], r["quant"]), {})[r["metric"]] = r["value"]
    arts = {k: v for k, v in by.items() if k[0] != "torch-eager"}
    out = []
    for (b, q), m in sorted(arts.items()):
        if q == "fp32" and "roofline_ratio" in m:
            out.append((f"{b} fp32 at {100 / m['roofline_ratio']:.0f}% of roofline speed (>= 75%)",
                        m["roofline_ratio"] <= 1 / 0.75))
    int8 = [(m["roofline_ratio"], b, q) for (b, q), m in arts.items()
            if q.startswith("int8") or q == "8da4w"
            if m.get("cosine_min", 0) >= 0.995 and "roofline_ratio" in m]
    if int8:
        ratio, b, q = min(int8)
        out.append((f"best int8 with cosine_min >= 0.995: {b} {q} at {ratio:.2f}x roofline time (<= 0.5x)",
                    ratio <= 0.5))
    for (b, q), m in sorted(arts.items()):
        if b.startswith("executorch") and "compute_delegated_fraction" in m:
            out.append((f"{b} {q}: {100 * m['compute_delegated_fraction']:.0f}% of compute ops delegated",
                        m["compute_delegated_fraction"] == 1.0))
    if out:
        print(f"targets ({model_id}):")
        for text, ok in out:
            print(f"  [{'met' if ok else 'NOT MET'}] {text}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="ViT-B-32,MobileCLIP2-S0,gemm:50x768",
                    help="open_clip architectures (random init); gemm:TxW = a Linear stack on [1,T,W], "
                         "the GEMM ceiling of each runtime at a ViT's shape (50x768 = ViT-B/32)")
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
    ap.add_argument("--profile", action="store_true",
                    help="also profile every artifact through its runtime's profiler (ExecuTorch ETDump, "
                         "ONNX Runtime; LiteRT: op mix only): time per op type, glue share, conv time")
    ap.add_argument("--profile-runs", type=int, default=10, help="profiled calls per artifact")
    ap.add_argument("--compare-mean", action="store_true",
                    help="also time ExecuTorch artifacts whose last-dim means (LayerNorm) are XNNPACK Mean "
                         "reductions, as before 2026-12-02, instead of 1/C fully-connected kernels")
    ap.add_argument("--twin", default="", metavar="CORES",
                    help="also count instructions per inference on these emulated ARM cores (comma list, e.g. "
                         "cortex-a76,cortex-a55; the ARM64 twin)")
    ap.add_argument("--twin-runs", type=int, default=2,
                    help="inferences per count (each is seconds under emulation for a B/32 tower)")
    ap.add_argument("--target", default="host-cpu")
    ap.add_argument("--out", default="latency.json")
    ap.add_argument("--workdir", default=None, help="where artifacts go (default: a temp dir)")
    args = ap.parse_args(argv)

    from edgeclip._io import write_json_atomic

    info = machine(args.threads)
    peaks = gemm_peak_gflops(args.threads)
    probe = PeakProbe(max(peaks.values()))
    info["gemm_peak_at_start_by_library"] = peaks
    info["memory_bandwidth_gbs"] = memory_bandwidth_gbs()
    print(f"large-GEMM fp32 peak at the start: {probe.best:.0f} GFLOP/s on {args.threads} threads "
          f"({', '.join(f'{k} {v:.0f}' for k, v in peaks.items())}); re-measured every round", flush=True)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="edgeclip-bench-"))
    records, profiles = [], {}
    for name in args.models.split(","):
        records += bench_model(args, name, probe, work, profiles)
    info["gemm_peak_gflops"] = probe.best  # the best seen in the run; each model's own is a record
    info["load_avg_end"] = os.getloadavg()
    report = {"schema": "edgeclip.report/1", "machine": info, "results": records,
              **({"profiles": profiles} if profiles else {})}
    write_json_atomic(Path(args.out), report)
    print(f"\nwrote {len(records)} records to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
