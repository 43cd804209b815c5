"""Compare a report with a stored baseline: the CI gate behind ``edgeclip bench --baseline``.

Latency regresses when an artifact's p50 grew by more than ``max_regression`` (a fraction);
accuracy regresses when a higher-is-better metric fell by more than ``max_accuracy_drop``
(absolute). Artifacts match on (model, target, backend, tower, quant); ones present on only
one side are listed, not failed, since a recipe edit may add or drop artifacts on purpose.
"""
from __future__ import annotations

from .gate import Shortfall, check_regression

__all__ = ["ACCURACY_METRICS", "compare_reports", "parse_fraction"]

ACCURACY_METRICS = ("cosine_mean", "cosine_min", "top1_agreement", "r1_agreement", "zero_shot_top1")


def parse_fraction(text: str, what: str) -> float:
    """'10%' or '0.1' -> 0.1; a one-line error naming the flag otherwise."""
    from ..errors import InputError

    s = str(text).strip()
    try:
        v = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise InputError(f"{what}: {text!r} is not a number; write e.g. 10% or 0.1") from None
    if not 0 <= v < 10:
        raise InputError(f"{what}: {text!r} is out of range; write e.g. 10% or 0.1")
    return v


def _key(r: dict) -> tuple:
    return (r["model"], r["target"], r["backend"], r["tower"], r["quant"])


def _metric(r: dict) -> str:
    """The metric's name, with the evaluation group of a per-group record: zero_shot_top1[digits]."""
    return r["metric"] + (f"[{r['group']}]" if r.get("group") else "")


def _accuracy_drops(new: list[dict], base: list[dict], max_drop: float) -> list[Shortfall]:
    old = {(_key(r), _metric(r)): r["value"] for r in base
           if r["metric"] in ACCURACY_METRICS and r["value"] is not None}
    out = []
    for r in new:
        k = (_key(r), _metric(r))
        if k not in old or r["value"] is None:
            continue
        limit = old[k] - max_drop
        if r["value"] < limit:
            out.append(Shortfall("/".join(_key(r)[2:]), _metric(r), r["value"], limit, ">="))
    return out


def compare_reports(new: dict, baseline: dict, max_regression: float = 0.10,
                    max_accuracy_drop: float = 0.005) -> tuple[list[Shortfall], list[str]]:
    """(regressions, notes): notes name artifacts found on only one side."""
    from ..errors import InputError

    n, b = new["results"], baseline["results"]
    if not {_key(r) for r in n} & {_key(r) for r in b}:
        raise InputError("the report and the baseline share no artifact (model, target, backend, tower, "
                         "quant); compare builds of the same recipe and target")
    regressions = check_regression(n, b, "latency_p50_ms", max_regression) + _accuracy_drops(n, b, max_accuracy_drop)
    new_keys, base_keys = {_key(r) for r in n}, {_key(r) for r in b}
    notes = [f"only in the new report: {'/'.join(k[2:])}" for k in sorted(new_keys - base_keys)]
    notes += [f"only in the baseline: {'/'.join(k[2:])}" for k in sorted(base_keys - new_keys)]
    return regressions, notes
