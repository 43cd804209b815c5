"""Per-op profiles of an artifact through its runtime's own profiler.

- ExecuTorch: ETDump (``enable_etdump``) read by ``executorch.devtools.Inspector``. XNNPACK
  reports one event per kernel it runs inside a delegate call (``Convolution (NHWC, F32) IGEMM``,
  ``Transpose (ND, X32)``), the portable kernels one per op; ``Method::execute`` is the total.
- ONNX Runtime: the session profiler (``enable_profiling``): one ``Node`` event per kernel run,
  with its op type; the ``model_run`` event is the total.
- LiteRT: ai-edge-litert 2.3's Python API has no op profiler (its C library's
  ``LiteRtCompiledModelGetProfiler`` has no binding), so the profile is the graph's op mix
  (``source: op-count``): which ops, how many, how many of them glue. No times are made up.

Times per op type are the median over the profiled runs (the first, cold run left out) of that
op type's time summed within each run. Both profilers tick in whole microseconds, and a tiny
tower's ops take about as long: a per-event median rounds each one to 0 or 1 us (measured on the
default student's ExecuTorch int8 image tower, 101 runs: the 38 Converts' medians summed to 4 us,
the median of their per-run sums is 15.5 us), while a per-run sum averages the rounding out. ``glue_fraction`` is
the share of the timed ops' time spent moving or converting data rather than computing: layout
transposes and copies, dim-order conversions, quantize / dequantize / convert, casts. That is what
an export adds around the kernels, and what carries over from this host to a phone.
"""
from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

__all__ = ["GLUE", "is_glue", "op_type", "per_type_ms", "profile_artifact", "profile_md", "summarize"]

# names of data-movement ops in the three runtimes' vocabularies (XNNPACK kernels, portable ops,
# ONNX op types, TFLite builtins), unless the op computes too (ORT's DynamicQuantizeMatMul)
GLUE = re.compile(r"transpose|copy|convert|quantize|\bcast|dim_order|permute|clone|reorder", re.IGNORECASE)
COMPUTE = re.compile(r"matmul|gemm|conv(?!ert)|fully.connected", re.IGNORECASE)
TOP = 5  # op types listed per artifact in the report


def op_type(event_name: str) -> str:
    """An event's op type: the name without XNNPACK's ``#k`` instance number or a portable
    kernel's ``native_call_`` prefix and ``.out`` suffix."""
    name = re.sub(r"\s+#\d+$", "", event_name.strip())
    name = re.sub(r"^native_call_", "", name)
    return re.sub(r"\.(out|Tensor_out|default)$", "", name)


def is_glue(op: str) -> bool:
    return bool(GLUE.search(op)) and not COMPUTE.search(op)


def summarize(per_op_ms: dict[str, float], total_ms: float | None, source: str, runs: int,
              counts: dict[str, int] | None = None) -> dict:
    """The profile record: time (or, without times, the count) per op type, largest first, and the
    glue share. ``other_ms``: the total not inside any op event (dispatch, the delegate call's own
    work)."""
    timed = bool(per_op_ms)
    ops = sorted(per_op_ms.items(), key=lambda kv: -kv[1]) if timed else \
        sorted((counts or {}).items(), key=lambda kv: -kv[1])
    inside = float(sum(per_op_ms.values()))
    glue = float(sum(v for k, v in per_op_ms.items() if is_glue(k)))
    n = counts or {}
    out = {"source": source, "runs": runs, "timed": timed,
           "by_op_type": [{"op": k, **({"ms": round(v, 4)} if timed else {}), "count": int(n.get(k, 0))}
                          for k, v in ops],
           "glue_ops": int(sum(c for k, c in n.items() if is_glue(k))), "ops": int(sum(n.values()))}
    if timed:
        out.update(total_ms=total_ms if total_ms is not None else inside, ops_ms=inside,
                   other_ms=max(0.0, (total_ms or inside) - inside),
                   glue_ms=glue, glue_fraction=glue / inside if inside > 0 else 0.0)
    return out


def _warm_median(values) -> float:
    """The median over the profiled runs, the first (cold) one left out when there are more."""
    return float(np.median(values[1:] if len(values) > 1 else values))


def per_type_ms(durations: dict, kind_of) -> tuple[dict[str, float], dict[str, int]]:
    """Per op type (``kind_of(event)``): the warm median over runs of its events' summed time
    in each run, and how many events it has. ``durations``: event (name or row) -> its time in each run."""
    n = min((len(v) for v in durations.values()), default=0)
    sums: dict[str, np.ndarray] = {}
    counts: Counter = Counter()
    for name, durs in durations.items():
        kind = kind_of(name)
        sums[kind] = sums.get(kind, 0.0) + np.asarray(durs[:n], dtype=float)
        counts[kind] += 1
    return {k: _warm_median(v) for k, v in sums.items()}, dict(counts)


def _executorch(art, inputs, runs: int) -> dict:
    import torch
    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib

    from ..backends import io_arrays
    mod = portable_lib._load_for_executorch(str(art.path), enable_etdump=True)
    xs = [torch.from_numpy(a) for a in io_arrays(inputs, art.input_dtypes)]
    for _ in range(runs + 1):
        mod.forward(xs)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "profile.etdp"
        mod.write_etdump_result_to_file(str(path))
        df = Inspector(etdump_path=str(path)).to_dataframe()
    durations: dict[int, list[float]] = {}  # by row: a portable op's name repeats across its instances
    kinds: dict[int, str] = {}
    total = None
    for i, (name, raw) in enumerate(zip(df["event_name"], df["raw"])):
        if name == "Method::execute":
            total = _warm_median(raw)
        elif not (name in ("DELEGATE_CALL", "Method::init", "Program::load_method") or name.startswith("OPERATOR_CALL")):
            durations[i], kinds[i] = list(raw), op_type(name)
    per_op, counts = per_type_ms(durations, kinds.__getitem__)
    return summarize(per_op, total, "etdump", runs, counts)


def _onnx(art, inputs, runs: int, threads: int) -> dict:
    import onnxruntime as ort

    from ..backends import io_arrays
    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.enable_profiling, so.profile_file_prefix = True, str(Path(d) / "ort")
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(art.path), so, providers=["CPUExecutionProvider"])
        feed = dict(zip([i.name for i in sess.get_inputs()], io_arrays(inputs, art.input_dtypes)))
        for _ in range(runs + 1):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    runs_ms = [e["dur"] / 1e3 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    durations: dict[str, list[float]] = {}
    for e in nodes:
        durations.setdefault(e["name"], []).append(e["dur"] / 1e3)
    kinds = {e["name"]: e["args"].get("op_name", "?") for e in nodes}
    per_op, counts = per_type_ms(durations, kinds.__getitem__)
    total = _warm_median(runs_ms) if runs_ms else None
    return summarize(per_op, total, "ort-profiler", runs, counts)


def _litert(art) -> dict:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_path=str(art.path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    counts = Counter(op["op_name"] for op in it._get_ops_details())
    return summarize({}, None, "op-count", 0, dict(counts))


def profile_artifact(art, inputs: tuple[np.ndarray, ...], runs: int = 5, threads: int = 2) -> dict | None:
    """The artifact's profile, or None where its runtime has none here (CoreML off macOS)."""
    if art.backend == "executorch" and "CoreMLBackend" not in art.extra.get("delegates", {}):
        return _executorch(art, inputs, runs)
    if art.backend == "onnx":
        return _onnx(art, inputs, runs, threads)
    if art.backend == "litert":
        return _litert(art)
    return None


def profile_md(rows: list[tuple[str, dict]]) -> str:
    """The report's section: per artifact, its largest op types and its glue share."""
    rows = [(label, p) for label, p in rows if p]
    if not rows:
        return ""
    out = ["## Per-op profiles", "",
           "Each artifact through its runtime's own profiler (ExecuTorch ETDump, ONNX Runtime's profiler; "
           "LiteRT's Python API has none, so its row is the graph's op mix). Glue = transposes, copies, "
           "dim-order and quantize/dequantize/convert ops, casts. Both profilers tick in whole microseconds: "
           "each op type's time is the median over runs of its time summed within a run, which averages "
           "the rounding out of ops shorter than a tick.", "",
           "| artifact | source | total ms | glue | top op types |", "|---|---|---|---|---|"]
    for label, p in rows:
        if "error" in p:
            out.append(f"| {label} | failed | - | - | {p['error']} |")
            continue
        if p["timed"]:
            top = ", ".join(f"{o['op']} {o['ms']:.3g} ms" for o in p["by_op_type"][:TOP])
            glue = f"{100 * p['glue_fraction']:.1f}% ({p['glue_ops']} of {p['ops']} ops)"
            total = f"{p['total_ms']:.3g}"
        else:
            top = ", ".join(f"{o['op']} x{o['count']}" for o in p["by_op_type"][:TOP])
            glue, total = f"{p['glue_ops']} of {p['ops']} ops (untimed)", "-"
        out.append(f"| {label} | {p['source']} | {total} | {glue} | {top} |")
    return "\n".join(out)
