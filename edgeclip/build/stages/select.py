"""The select stage: gate every variant on the target's thresholds, then choose what ships.

Per (backend, tower) the smallest variant that passed ships; a quantized variant slower than its
float sibling (beyond ``max_latency_ratio_vs_fp32``) never does. Every variant keeps the reason
it was or was not shipped, which the report and the manifest show.
"""
from __future__ import annotations

__all__ = ["select", "records"]


def select(ctx, results) -> None:
    """Gate each artifact, then ship per (backend, tower) the smallest variant that passed the
    accuracy gates, never a quantized one slower than its float sibling beyond the target's
    ``max_latency_ratio_vs_fp32``."""
    from ...verify.gate import check_accuracy
    r, t = ctx.plan.recipe, ctx.plan.target
    for res in results:
        entry = ctx.backend_entry(res.planned.backend)
        th = t.thresholds.merged(entry.thresholds).merged(r.thresholds)
        res.thresholds = th
        if res.verified:
            res.shortfalls = check_accuracy(records(ctx, res), {res.name: th})
    groups: dict[tuple, list] = {}
    for res in results:
        groups.setdefault((res.planned.backend, res.planned.tower), []).append(res)
    for (_backend, _tower), rs in groups.items():
        floats = [x for x in rs if x.planned.quant in ("fp32", "fp16") and x.latency]
        base = min((x.latency["p50_ms"] for x in floats), default=None)
        ok = []
        for x in rs:
            ratio = x.thresholds.max_latency_ratio_vs_fp32
            if x.verified and x.shortfalls:
                x.why_not_shipped = "below thresholds: " + ", ".join(s.metric for s in x.shortfalls)
            elif (ratio and base and x.latency and x.planned.quant not in ("fp32", "fp16")
                  and x.latency["p50_ms"] > base * ratio):
                x.why_not_shipped = (f"slower than its float sibling ({x.latency['p50_ms']:.2f} ms vs "
                                     f"{base:.2f} ms)")
            else:
                ok.append(x)
        verified = [x for x in ok if x.verified]
        if verified:  # accurate enough and not slower than float: the smallest wins
            best = min(verified, key=lambda x: (x.artifact["size_bytes"],
                                                x.latency["p50_ms"] if x.latency else 0.0))
        elif ok:  # nothing could run here (CoreML off macOS): ship the first, float, variant
            best = ok[0]
        else:
            continue
        best.shipped = True
        for x in ok:
            if x is not best:
                x.why_not_shipped = f"{best.planned.quant} was chosen" + (
                    " (smaller, passed the same gates)" if best.verified
                    else " (the float variant, as nothing could be verified here)")


def records(ctx, res) -> list:
    """The report records (DESIGN.md "Report records") of one artifact result."""
    from ...verify.report import Record, metric_records
    base = dict(model=ctx.plan.recipe.name, target=ctx.plan.target.name, backend=res.planned.backend,
                tower=res.planned.tower, quant=res.planned.quant, runner=res.runner or "none",
                emulated=res.emulated)
    out = metric_records(base, res.metrics)
    if res.latency:
        # the artifact's own load and memory, the runtime's start-up apart (verify.latency says how)
        # p50/p90/min/spread from the interleaved rounds; p50_roofline: p50 / the tower's FLOPs at the GEMM peak
        for k, m in (("p50_ms", "latency_p50_ms"), ("p90_ms", "latency_p90_ms"), ("min_ms", "latency_min_ms"),
                     ("spread", "latency_spread"), ("p50_roofline", "latency_p50_roofline"), ("gflop", "gflop"),
                     ("load_ms", "load_ms"), ("runtime_start_ms", "runtime_start_ms"), ("memory_mb", "memory_mb")):
            if res.latency.get(k) is not None:
                out.append(Record(**base, metric=m, value=res.latency[k]))
    out.append(Record(**base, metric="size_mb", value=res.artifact["size_bytes"] / 1e6))
    if res.artifact.get("delegated_fraction") is not None:
        out.append(Record(**base, metric="delegated_fraction", value=res.artifact["delegated_fraction"]))
    compute = res.artifact.get("extra", {}).get("compute_delegated_fraction")
    if compute is not None:
        out.append(Record(**base, metric="compute_delegated_fraction", value=compute))
    return out
