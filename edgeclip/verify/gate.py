"""Threshold gates: collect every shortfall, then fail once with a table.

Accuracy gates compare an artifact's metrics with the target's thresholds (recipe overrides
merged in). The latency regression gate against a baseline report is ``verify.compare``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .._io import format_table
from ..config import Thresholds
from .report import Record

__all__ = ["Shortfall", "check_accuracy", "format_shortfalls"]

# metric -> (threshold field, direction): ">=" means the value must be at least the threshold
_ACCURACY = {
    "cosine_mean": ">=", "cosine_min": ">=", "psnr_db": ">=", "top1_agreement": ">=",
    "r1_agreement": ">=", "zero_shot_top1": ">=",
}
# metrics a tower cannot have: a zero-shot head has no caption retrieval and no dataset labels
_NOT_APPLICABLE = {"zero-shot-head": ("r1_agreement", "zero_shot_top1")}


@dataclass(frozen=True)
class Shortfall:
    artifact: str
    metric: str
    value: float | None
    limit: float
    op: str

    def row(self) -> list[str]:
        v = "missing" if self.value is None else f"{self.value:.4g}"
        return [self.artifact, self.metric, v, f"{self.op} {self.limit:.4g}"]


def _name(r: Record) -> str:
    return f"{r.backend}/{r.tower}/{r.quant}"


def check_accuracy(records: list[Record], thresholds: dict[str, Thresholds]) -> list[Shortfall]:
    """``thresholds`` maps artifact name ``backend/tower/quant`` to its merged Thresholds."""
    by_artifact: dict[str, dict[str, float | None]] = {}
    zero_shot: dict[str, dict[str, float | None]] = {}  # artifact -> group -> accuracy
    for r in records:
        if r.device:  # a device's records are gated on their own (check_accuracy of those alone)
            continue
        if r.group:
            if r.metric == "zero_shot_top1":
                zero_shot.setdefault(_name(r), {})[r.group] = r.value
        else:
            by_artifact.setdefault(_name(r), {})[r.metric] = r.value
    out: list[Shortfall] = []
    for name, th in thresholds.items():
        values = by_artifact.get(name, {})
        skip = _NOT_APPLICABLE.get(name.split("/")[1] if name.count("/") == 2 else "", ())
        for metric, op in _ACCURACY.items():
            limit = getattr(th, metric)
            if metric in skip or limit is None:
                continue
            if metric == "zero_shot_top1":  # every group whose labels the model learned, each on its own
                out += [Shortfall(name, f"zero_shot_top1[{g}]", v, limit, op)
                        for g, v in zero_shot.get(name, {}).items() if v is None or not v >= limit]
                continue
            v = values.get(metric)
            if v is None or not v >= limit:  # NaN (an fp16 overflow) fails, it does not slip through
                out.append(Shortfall(name, metric, v, limit, op))
    return out


def format_shortfalls(shortfalls: list[Shortfall]) -> str:
    rows = [["artifact", "metric", "value", "required"]] + [s.row() for s in shortfalls]
    return format_table(rows)
