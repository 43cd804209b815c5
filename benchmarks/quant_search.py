"""Naive int8 against the mixed-precision search, per backend, in one run (issue #19).

Each model's image tower is built through `edgeclip build` for an android-like target (LiteRT and
ExecuTorch, fp32 and int8-static, the android thresholds), so the numbers are the compiler's own:
the naive int8-static artifact, and the searched one, i.e. the first mixed-precision attempt that
passed the gates (or the naive artifact itself when it passed; or, when nothing passed, the
search's last attempt, marked). Models:

  teacher    the embedded default teacher (builtin:teacher-factored since 2026-12-04, pretrained here)
  tinyclip   the TinyCLIP student of recipes/tinyclip-embedded.yaml (trained here)
  ViT-B-32   open_clip ViT-B/32, random init (speed and structure only: random weights say
  MobileCLIP2-S0   nothing about what quantization does to trained ones), same for MobileCLIP2-S0

Ratios are to the same backend's fp32 artifact of the same build (cosine and top-1 agreement are
the artifacts' own, against the fp32 torch reference).

    python benchmarks/quant_search.py --out benchmarks/results/quant-search.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGET = """
version: 1
name: quant-search
platform: android
towers: [image]
backends:
  - {backend: litert, quant: {image: [fp32, int8-static]}}
  - {backend: executorch, quant: {image: [fp32, int8-static]}, options: {partitioners: [xnnpack]}}
thresholds: {cosine_mean: 0.98, cosine_min: 0.9, psnr_db: 15.0, top1_agreement: 0.9, r1_agreement: 0.85,
             max_latency_ratio_vs_fp32: 1.1}
bench: {warmup: 2, runs: 10, rounds: 3, threads: 2}
"""

_EVAL = """data:
  eval:
    - {source: synthetic, split: heldout, samples: 48, languages: [en]}
    - {source: photos}
quantization:
  calibration_samples: 16
"""


def _recipe(name: str) -> str:
    if name == "teacher":  # the default recipe's teacher alone: its pretraining, no distillation
        text = (ROOT / "recipes" / "embedded-default.yaml").read_text()
        return text[: text.index("distill:")] + text[text.index("data:"):]
    if name == "tinyclip":
        return (ROOT / "recipes" / "tinyclip-embedded.yaml").read_text()
    return f"version: 1\nname: {name.lower()}\nteacher: openclip:{name}\nseed: 0\n" + _EVAL


def _metrics(report: dict) -> dict:
    """(backend, variant) -> {metric: value} of the report's ungrouped records."""
    out: dict = {}
    for r in report["results"]:
        if not r.get("group"):
            out.setdefault((r["backend"], r["quant"]), {})[r["metric"]] = r["value"]
    return out


def _row(m: dict, fp32: dict) -> dict:
    def ratio(k):
        a, b = m.get(k), fp32.get(k)
        return a / b if a is not None and b else None
    return {"cosine_mean": m.get("cosine_mean"), "top1_agreement": m.get("top1_agreement"),
            "size_mb": m.get("size_mb"), "p50_ms": m.get("latency_p50_ms"), "size_ratio": ratio("size_mb"),
            "latency_ratio": ratio("latency_p50_ms"), "spread": m.get("latency_spread")}


def run_model(name: str, root: Path) -> dict:
    from edgeclip.cli import main

    work = root / name
    work.mkdir(parents=True, exist_ok=True)
    (work / "recipe.yaml").write_text(_recipe(name))
    (root / "target.yaml").write_text(TARGET)
    t0 = time.perf_counter()
    out_dir = root / f"{name}-android"  # beside the others: one stage cache (root/.cache) for all
    rc = main(["build", "--target", str(root / "target.yaml"), "--recipe", str(work / "recipe.yaml"),
               "--out", str(out_dir)])
    wall = time.perf_counter() - t0
    report = json.loads((out_dir / "report.json").read_text())
    metrics = _metrics(report)
    searches = {s["artifact"]: s for s in report.get("mixed_precision", [])}
    out = {"build_rc": rc, "build_s": wall, "backends": {}}
    for backend in ("litert", "executorch"):
        fp32, naive = metrics[(backend, "fp32")], metrics[(backend, "int8-static")]
        s = searches.get(f"{backend}/image/int8-static")
        if s is None:
            chosen, how = "int8-static", "naive passed the gates: no search"
        elif s["attempts"] and s["outcome"].startswith("passed"):
            chosen, how = s["attempts"][-1]["artifact"].split("/")[-1], s["outcome"]
        elif s["attempts"]:
            chosen, how = s["attempts"][-1]["artifact"].split("/")[-1], "NOTHING PASSED: " + s["outcome"]
        else:
            chosen, how = "int8-static", "NOTHING PASSED: " + s["outcome"]
        searched = metrics[(backend, chosen)]
        out["backends"][backend] = {
            "fp32": _row(fp32, fp32), "naive": _row(naive, fp32), "searched": {**_row(searched, fp32), "variant": chosen},
            "search": how, "float_layers": (s["attempts"][-1]["float_layers"] if s and s["attempts"] else []),
            "searched_not_less_accurate": (searched.get("cosine_mean") or 0) >= (naive.get("cosine_mean") or 0) - 1e-6,
            "searched_not_slower_than_fp32": (searched.get("latency_p50_ms") or 0) <= (fp32.get("latency_p50_ms") or 0)
            * (1 + max(0.05, searched.get("latency_spread") or 0))}
    return out


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(results: dict) -> str:
    rows = ["| model | backend | artifact | cosine | top-1 agr | size × fp32 | p50 × fp32 | search |", "|---|---|---|---|---|---|---|---|"]
    for model, r in results.items():
        for backend, b in r["backends"].items():
            for kind in ("naive", "searched"):
                x = b[kind]
                label = "int8-static" if kind == "naive" else x["variant"]
                rows.append(f"| {model} | {backend} | {kind}: {label} | {_fmt(x['cosine_mean'], '.5f')} | "
                            f"{_fmt(x['top1_agreement'], '.3f')} | {_fmt(x['size_ratio'], '.2f')} | "
                            f"{_fmt(x['latency_ratio'], '.2f')} | {b['search'] if kind == 'searched' else ''} |")
    return "\n".join(rows)


def main() -> int:
    from _machine import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="teacher,tinyclip,ViT-B-32,MobileCLIP2-S0")
    ap.add_argument("--work", default=None, help="build folder (default: a temporary one)")
    ap.add_argument("--out", default=None, help="write the JSON here")
    a = ap.parse_args()
    root = Path(a.work or tempfile.mkdtemp(prefix="quant-search-"))
    results = {}
    for name in a.models.split(","):
        print(f"== {name}", flush=True)
        results[name] = run_model(name, root)
    out = {"machine": machine(2), "results": results, "table": table(results)}
    print(out["table"])
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
