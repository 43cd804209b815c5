"""The select stage: gate every variant on the target's thresholds, then choose what ships.

Per (backend, tower) one variant ships, by the target's ``select`` policy among the variants that
passed the accuracy gates (on the host, and on each of the target's emulated ARM cores), meet its
``budgets`` and are not slower than their float sibling (beyond ``max_latency_ratio_vs_fp32``):

- ``fastest`` (default): the lowest cost. A target with ``devices`` (android: the ARM64 twin)
  costs a variant its instructions per inference on its first core, which repeat exactly, so
  variants within 2% count as as cheap; elsewhere the cost is the host p50 of the rounds stage,
  and the tie band is 5%, or the fastest one's own noise band up to 25%. The smallest of the
  tied wins;
- ``smallest``: the smallest file; ties go to the faster.

Across backends, the manifest also names one ``recommended`` artifact per tower, chosen among the
shipped ones by the same policy. Every variant keeps the reason it was or was not shipped, which
the report and the summary show.
"""
from __future__ import annotations

from dataclasses import replace

from .twin import ranking_device, twin_count

__all__ = ["select", "gate", "records", "choose", "recommended", "selection_md", "selection_rows", "TIE", "MAX_TIE",
           "budget_miss"]

TIE = 0.05      # p50s within 5% of the fastest are a tie ...
MAX_TIE = 0.25  # ... or within its noise band, but never a band wider than this
COUNT_TIE = 0.02  # instruction counts repeat within 0.1%: 2% apart is a real difference


def _p50(x) -> float | None:
    return x.latency["p50_ms"] if x.latency and x.latency.get("p50_ms") is not None else None


def _size(x) -> int:
    return x.artifact["size_bytes"]


def _tie_band(x) -> float:
    return min(MAX_TIE, max(TIE, (x.latency or {}).get("spread") or 0.0))


def _cost(x, device: str | None) -> float | None:
    """What ``fastest`` minimizes: instructions on ``device``, else the host p50."""
    return twin_count(x, device) if device else _p50(x)


def _cost_text(v: float, device: str | None) -> str:
    return f"{v / 1e6:.4g} M instructions on {device}" if device else f"{v:.3g} ms"


def choose(cands: list, policy: str, device: str | None = None):
    """The variant ``policy`` picks among ``cands`` (all eligible), and a phrase for the others;
    ``device``: rank by instructions per inference there instead of host milliseconds."""
    timed = [x for x in cands if _cost(x, device) is not None]
    if policy == "fastest" and timed:
        fastest = min(timed, key=lambda x: _cost(x, device))
        band = COUNT_TIE if device else _tie_band(fastest)
        tied = [x for x in timed if _cost(x, device) <= _cost(fastest, device) * (1 + band)]
        best = min(tied, key=lambda x: (_size(x), _cost(x, device)))
        cost = _cost_text(_cost(best, device), device)
        why = (f"{'cheaper' if device else 'faster'}: {cost}" if len(tied) == 1 else
               f"as {'cheap' if device else 'fast'} within {band:.0%} at {cost}, and the smallest of those")
        return best, why
    best = min(cands, key=lambda x: (_size(x), _cost(x, device) or 0.0))
    return best, "smaller, passed the same gates"


def _over_budget(x, budgets) -> str | None:
    mb = _size(x) / 1e6
    if budgets.max_size_mb is not None and mb > budgets.max_size_mb:
        return f"over budget: {mb:.2f} MB > max_size_mb {budgets.max_size_mb:g}"
    p50 = _p50(x)
    if budgets.max_latency_ms is not None and p50 is not None and p50 > budgets.max_latency_ms:
        return f"over budget: p50 {p50:.3g} ms > max_latency_ms {budgets.max_latency_ms:g}"
    return None


def budget_miss(results, budgets) -> str | None:
    """The nearest miss among variants that passed everything but a budget, for the error line."""
    def excess(x):
        out = 0.0
        if budgets.max_size_mb is not None:
            out = max(out, _size(x) / 1e6 / budgets.max_size_mb - 1)
        if budgets.max_latency_ms is not None and _p50(x) is not None:
            out = max(out, _p50(x) / budgets.max_latency_ms - 1)
        return out
    over = [x for x in results if (x.why_not_shipped or "").startswith("over budget")]
    if not over:
        return None
    near = min(over, key=excess)
    return f"nearest miss: {near.name} ({near.why_not_shipped.removeprefix('over budget: ')})"


def gate(ctx, res) -> list:
    """Set ``res.thresholds`` (target, backend entry and recipe merged) and, for a verified
    artifact, ``res.shortfalls`` against them; returns the shortfalls."""
    from ...verify.gate import check_accuracy
    r, t = ctx.plan.recipe, ctx.plan.target
    th = t.thresholds.merged(ctx.backend_entry(res.planned.backend).thresholds).merged(r.thresholds)
    res.thresholds = th
    if res.verified:
        res.shortfalls = check_accuracy(records(ctx, res), {res.name: th})
        for device, d in res.devices.items():  # the same gates on ARM kernels, named by the core
            if d.get("error"):
                continue  # a crash there is its own verdict (select: "failed on ...")
            recs = [replace(x, device="") for x in _device_records(ctx, res, device, d)]
            res.shortfalls += [replace(s, metric=f"{s.metric}@{device}") for s in check_accuracy(recs, {res.name: th})]
    return res.shortfalls


def select(ctx, results) -> None:
    """Gate each artifact, then ship per (backend, tower) the variant the target's policy picks."""
    t = ctx.plan.target
    device = ranking_device(t)
    for res in results:
        gate(ctx, res)
    groups: dict[tuple, list] = {}
    for res in results:
        groups.setdefault((res.planned.backend, res.planned.tower), []).append(res)
    for rs in groups.values():
        floats = [x for x in rs if x.planned.quant in ("fp32", "fp16")]
        base = min((_cost(x, device) for x in floats if _cost(x, device) is not None), default=None)
        ok = []
        for x in rs:
            ratio = x.thresholds.max_latency_ratio_vs_fp32
            cost = _cost(x, device)
            crashed = [f"{d}: {r['error']}" for d, r in x.devices.items() if r.get("error")]
            if crashed:
                x.why_not_shipped = "failed on " + "; ".join(crashed)
            elif x.verified and x.shortfalls:
                x.why_not_shipped = "below thresholds: " + ", ".join(s.metric for s in x.shortfalls)
            elif (ratio and base and cost is not None and x.planned.quant not in ("fp32", "fp16")
                  and cost > base * ratio):
                x.why_not_shipped = (f"slower than its float sibling ({_cost_text(cost, device)} vs "
                                     f"{_cost_text(base, device)})")
            elif x.verified and (over := _over_budget(x, t.budgets)):
                x.why_not_shipped = over
            else:
                ok.append(x)
        verified = [x for x in ok if x.verified]
        if verified:  # accurate enough, within budget, not slower than float: the policy picks
            best, why = choose(verified, t.select, device)
        elif ok:  # nothing could run here (CoreML off macOS): ship the first, float, variant
            best, why = ok[0], "the float variant, as nothing could be verified here"
        else:
            continue
        best.shipped = True
        for x in ok:
            if x is not best:
                x.why_not_shipped = f"{best.planned.variant} was chosen ({why})"
    for x in recommended(results, t.select, device).values():
        x.recommended = True


def selection_md(results, target) -> str:
    """The report's table of every candidate: size, latency, accuracy, and why it lost."""
    b = target.budgets
    limits = ", ".join(f"{k} {v:g}" for k, v in (("max_latency_ms", b.max_latency_ms), ("max_size_mb", b.max_size_mb))
                       if v is not None) or "none"
    device = ranking_device(target)
    arm = f" M instr {device} | ARM cosine_mean |" if device else ""
    out = [f"## Selection (policy: {target.select}; budgets: {limits})", ""]
    if device:
        out += [f"Ranked by instructions per inference on {device} (the ARM64 twin: emulated, deterministic); "
                "host p50 and its noise are this machine's, for reference.", ""]
    out += [
           f"| artifact | size MB |{arm} p50 ms | noise | cosine_mean | top1_agreement | result |",
           "|---|---|" + "---|---|" * bool(device) + "---|---|---|---|---|"]
    for x in results:
        p50, spread = _p50(x), (x.latency or {}).get("spread")
        cos, agr = x.metrics.get("cosine_mean"), x.metrics.get("top1_agreement")
        result = ("shipped" + (", recommended" if x.recommended else "")) if x.shipped else f"not shipped: {x.why_not_shipped}"
        cells = ""
        if device:
            n, acos = twin_count(x, device), ((x.devices.get(device) or {}).get("metrics") or {}).get("cosine_mean")
            cells = f" {f'{n / 1e6:.4g}' if n is not None else '-'} | {f'{acos:.5f}' if acos is not None else '-'} |"
        out.append(f"| {x.name} | {_size(x) / 1e6:.2f} |{cells} {f'{p50:.3g}' if p50 is not None else '-'} | "
                   f"{f'{spread:.0%}' if spread is not None else '-'} | {f'{cos:.5f}' if cos is not None else '-'} | "
                   f"{f'{agr:.3f}' if agr is not None else '-'} | {result} |")
    return "\n".join(out)


def selection_rows(results, device: str | None = None) -> list[dict]:
    """Every candidate as report.json's ``selection`` rows (and report.png's front; ``device``: the
    core whose instruction counts ranked them)."""
    from ...verify.front import candidate
    return [candidate(x.name, x.planned.backend, x.planned.tower, x.planned.variant, _size(x) / 1e6, _p50(x),
                      x.metrics.get("cosine_mean"), x.metrics.get("top1_agreement"),
                      (not x.shortfalls) if x.verified else None, x.shipped, x.recommended, x.why_not_shipped,
                      twin_count(x, device), device)
            for x in results]


def recommended(results, policy: str, device: str | None = None) -> dict[str, object]:
    """Per tower, the shipped artifact an app should take across the target's backends (among the
    verified ones where any is; where none could run here, among what shipped)."""
    out = {}
    for tower in dict.fromkeys(x.planned.tower for x in results):
        shipped = [x for x in results if x.planned.tower == tower and x.shipped]
        pool = [x for x in shipped if x.verified] or shipped
        if pool:
            out[tower] = choose(pool, policy, device)[0]
    return out


def records(ctx, res) -> list:
    """The report records (DESIGN.md "Report records") of one artifact result."""
    from ...verify.report import Record, latency_records, metric_records
    base = dict(model=ctx.plan.recipe.name, target=ctx.plan.target.name, backend=res.planned.backend,
                tower=res.planned.tower, quant=res.planned.variant, runner=res.runner or "none",
                emulated=res.emulated)
    out = metric_records(base, res.metrics) + latency_records(base, res.latency or {})
    out.append(Record(**base, metric="size_mb", value=res.artifact["size_bytes"] / 1e6))
    if res.artifact.get("delegated_fraction") is not None:
        out.append(Record(**base, metric="delegated_fraction", value=res.artifact["delegated_fraction"]))
    compute = res.artifact.get("extra", {}).get("compute_delegated_fraction")
    if compute is not None:
        out.append(Record(**base, metric="compute_delegated_fraction", value=compute))
    prof = (res.latency or {}).get("profile") or {}
    if prof.get("timed"):
        out.append(Record(**base, metric="glue_fraction", value=prof["glue_fraction"]))
    for device, d in res.devices.items():
        out += _device_records(ctx, res, device, d)
    return out


def _device_records(ctx, res, device: str, d: dict) -> list:
    """One artifact's records on one emulated core: ARM accuracy and instructions per inference."""
    from ...verify.report import Record, metric_records
    base = dict(model=ctx.plan.recipe.name, target=ctx.plan.target.name, backend=res.planned.backend,
                tower=res.planned.tower, quant=res.planned.variant, runner=d["runner"], emulated=True)
    out = [replace(x, device=device) for x in metric_records(base, d["metrics"])]
    if d.get("instructions") is not None:
        out.append(Record(**base, metric="instructions_per_inference", value=d["instructions"], device=device))
    return out
