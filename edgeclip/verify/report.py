"""Report records (DESIGN.md "Report records"), report.json / report.md / report.png.

One record per (artifact, metric). ``benchmarks/`` write the same records, so one reader
serves CI diffs, plots and the regression gate.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from .._io import atomic_target, write_json_atomic, write_text_atomic
from .front import plot_front

__all__ = ["SCHEMA", "Record", "METRIC_UNITS", "LATENCY_METRICS", "latency_records", "machine_info", "write_report",
           "read_report", "records_table",
           "metric_records", "zero_shot_md"]

SCHEMA = "edgeclip.report/1"
METRIC_UNITS = {
    "cosine_mean": "", "cosine_min": "", "psnr_db": "dB", "top1_agreement": "fraction",
    "zero_shot_top1": "fraction", "r1_agreement": "fraction", "r5_agreement": "fraction",
    "latency_p50_ms": "ms", "latency_p90_ms": "ms", "latency_p95_ms": "ms", "latency_min_ms": "ms", "load_ms": "ms",
    "latency_spread": "fraction", "latency_p50_roofline": "x",
    "runtime_start_ms": "ms", "memory_mb": "MB", "peak_rss_mb": "MB", "size_mb": "MB", "delegated_fraction": "fraction",
    "compute_delegated_fraction": "fraction", "glue_fraction": "fraction", "gflop": "GFLOP", "build_s": "s", "roofline_ratio": "x",
    "instructions_per_inference": "instructions",
}


@dataclass(frozen=True)
class Record:
    model: str
    target: str
    backend: str
    tower: str
    quant: str
    runner: str
    emulated: bool
    metric: str
    value: float | None
    unit: str = ""
    group: str = ""  # an evaluation group's name for per-group metrics (zero-shot); "" for the whole set
    device: str = ""  # where it was measured when not the build host: "arm64:cortex-a76" (the ARM64 twin)

    def __post_init__(self):
        if self.metric not in METRIC_UNITS:
            raise ValueError(f"unknown metric {self.metric!r}; known: {', '.join(METRIC_UNITS)}")
        if not self.unit:
            object.__setattr__(self, "unit", METRIC_UNITS[self.metric])

    def key(self) -> tuple:
        return (self.model, self.target, self.backend, self.tower, self.quant, self.metric, self.group, self.device)


# a timing's keys (verify.rounds / verify.latency) -> report metrics
LATENCY_METRICS = (("p50_ms", "latency_p50_ms"), ("p90_ms", "latency_p90_ms"), ("min_ms", "latency_min_ms"),
                   ("spread", "latency_spread"), ("p50_roofline", "latency_p50_roofline"), ("gflop", "gflop"),
                   ("load_ms", "load_ms"), ("runtime_start_ms", "runtime_start_ms"), ("memory_mb", "memory_mb"))


def latency_records(base: dict, latency: dict) -> list[Record]:
    """Records of one artifact's timing: p50/p90/min/spread (interleaved rounds), p50 against the
    roofline, FLOPs, and the isolated load, start-up and memory where measured."""
    return [Record(**base, metric=m, value=latency[k]) for k, m in LATENCY_METRICS if latency.get(k) is not None]


def metric_records(base: dict, metrics: dict) -> list[Record]:
    """Records of one artifact's verify metrics: the whole-set ones, then per zero-shot group its
    agreement with the reference and, where the model learned such labels, its accuracy."""
    out = [Record(**base, metric=k, value=v) for k, v in metrics.items() if k in METRIC_UNITS]
    for name, g in (metrics.get("zero_shot_groups") or {}).items():
        out.append(Record(**base, metric="top1_agreement", value=g["agreement"], group=name))
        if g.get("top1") is not None:
            out.append(Record(**base, metric="zero_shot_top1", value=g["top1"], group=name))
    return out


def zero_shot_md(reference_groups: dict[str, dict], records: list[Record]) -> str:
    """The report's per-group zero-shot table: chance, the fp32 reference and each artifact, never
    an average across groups; a group whose labels the model never learned shows agreement only."""
    if not reference_groups:
        return ""
    arts = sorted({(r.backend, r.tower, r.quant) for r in records if r.group and r.tower != "zero-shot-head"})
    cell = {(r.backend, r.tower, r.quant, r.group, r.metric): r.value for r in records if r.group}
    out = ["## Zero-shot accuracy per evaluation group", "",
           "| group | classes | chance | fp32 reference | " + " | ".join("/".join(a) for a in arts) + " |",
           "|" + "---|" * (4 + len(arts))]
    untrained = []
    for name, g in reference_groups.items():
        trained = g.get("in_domain") is not False
        if not trained:
            untrained.append(name)
        vals = [f"{cell[(*a, name, 'zero_shot_top1')]:.3f}" if trained and (*a, name, "zero_shot_top1") in cell
                else (f"agr {cell[(*a, name, 'top1_agreement')]:.3f}" if (*a, name, "top1_agreement") in cell else "-")
                for a in arts]
        ref = f"{g['reference_top1']:.3f}" if trained and g.get("reference_top1") is not None else "not trained on these labels"
        chance = f"{g['chance']:.3f}" if g.get("chance") else "-"
        out.append(f"| {name} | {g.get('classes', '-')} | {chance} | {ref} | " + " | ".join(vals) + " |")
    out.append("")
    if untrained:
        out.append(f"The model's weights never learned the labels of {', '.join(untrained)}: absolute accuracy there says "
                   "nothing, so those rows give each artifact's top-1 agreement with the fp32 reference (agr) only.")
    return "\n".join(out)


def machine_info() -> dict:
    """What a latency number needs next to it to mean anything."""
    import torch
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"os": platform.platform(), "machine": platform.machine(), "cpu": cpu,
            "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0)
            if torch.cuda.is_available() else None}
    from .. import tool_versions
    info.update({k: v for k, v in tool_versions().items() if k not in ("edgeclip", "torch", "onnx")})
    from .machine import cpu_flags
    info["cpu_flags"] = cpu_flags()
    return info


def read_report(path: Path) -> dict:
    from ..errors import InputError
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read report ({e}); pass a report.json written by edgeclip") from e
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise InputError(f"{path}: not an {SCHEMA} report (schema={data.get('schema') if isinstance(data, dict) else None!r})")
    return data


def _fmt(v, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "ms" and abs(v) < 10:  # a tiny tower's sub-millisecond latencies keep three digits
        return f"{v:.3g}"
    if unit in ("ms", "MB", "dB"):
        return f"{v:.1f}"
    return f"{v:.4f}"


def records_table(records: Iterable[Record], metrics: list[str]) -> list[list[str]]:
    """Rows ``[backend, tower, quant, runner, metric values...]``, one per artifact."""
    rows: dict[tuple, dict] = {}
    for r in records:
        if r.group:  # per-group values have their own table
            continue
        k = (r.backend, r.tower, r.quant, r.runner + (" (emulated)" if r.emulated else ""))
        rows.setdefault(k, {})[r.metric] = _fmt(r.value, r.unit)
    return [[*k, *(vals.get(m, "-") for m in metrics)] for k, vals in rows.items()]


def _markdown(records: list[Record], machine: dict, extra_md: str) -> str:
    acc = ["cosine_mean", "cosine_min", "psnr_db", "top1_agreement", "r1_agreement"]
    perf = ["latency_p50_ms", "latency_p90_ms", "latency_spread", "latency_p50_roofline", "load_ms", "memory_mb",
            "runtime_start_ms", "size_mb", "delegated_fraction", "compute_delegated_fraction"]
    out = ["# edgeclip build report", "",
           f"Machine: {machine.get('cpu')} ({machine.get('cores')} cores), {machine.get('os')}, "
           f"torch {machine.get('torch')}", ""]
    y = machine.get("yardstick")
    if y:
        out += [f"Yardstick, measured in the timing run at {y['threads']} threads: large-GEMM fp32 peak "
                f"{y['gemm_peak_gflops']:.0f} GFLOP/s, DRAM copy bandwidth {y['memory_bandwidth_gbs']:.1f} GB/s. "
                "latency_p50_roofline = p50 / (the tower's FLOPs at that peak); latency_spread = the relative range "
                "of the artifact's per-round medians (the run's noise band).", ""]
    for title, metrics in (("Accuracy against the fp32 reference", acc), ("Latency and size", perf)):
        out += [f"## {title}", "", "| backend | tower | quant | runner | " + " | ".join(metrics) + " |",
                "|" + "---|" * (4 + len(metrics))]
        out += ["| " + " | ".join(row) + " |" for row in records_table(records, metrics)]
        out.append("")
    if extra_md:
        out += [extra_md, ""]
    return "\n".join(out)


def _plot(records: list[Record], path: Path) -> None:
    """Accuracy (cosine mean) vs latency p50, marker size by file size: the first picture."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pts: dict[tuple, dict] = {}
    for r in records:
        if not r.group and not r.device:
            pts.setdefault((r.backend, r.tower, r.quant), {})[r.metric] = r.value
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for (backend, tower, quant), m in sorted(pts.items()):
        if m.get("latency_p50_ms") is None or m.get("cosine_mean") is None:
            continue
        size = max(20.0, 40.0 * (m.get("size_mb") or 1.0) ** 0.5)
        ax.scatter(m["latency_p50_ms"], m["cosine_mean"], s=size,
                   marker="o" if tower == "image" else "s", alpha=0.7)
        ax.annotate(f"{backend}/{tower}/{quant}", (m["latency_p50_ms"], m["cosine_mean"]),
                    fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("latency p50 (ms, host runtime)")
    ax.set_ylabel("cosine vs fp32 reference (mean)")
    ax.set_title("accuracy vs latency per artifact (marker area ~ size)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(out_dir: Path, records: list[Record], machine: dict | None = None,
                 extra: dict | None = None, extra_md: str = "") -> dict:
    """Write report.json, report.md and report.png into ``out_dir``; return the JSON object."""
    out_dir = Path(out_dir)
    machine = machine or machine_info()
    obj = {"schema": SCHEMA, "machine": machine, "results": [asdict(r) for r in records]}
    if extra:
        obj.update(extra)
    write_json_atomic(out_dir / "report.json", obj)
    md = _markdown(records, machine, extra_md)
    write_text_atomic(out_dir / "report.md", md)
    if any(c.get("p50_ms") is not None or c.get("instructions") is not None for c in obj.get("selection") or []):
        plot_front(obj["selection"], out_dir / "report.png")  # a build: its candidates' front
    else:
        _plot(records, out_dir / "report.png")
    return obj
