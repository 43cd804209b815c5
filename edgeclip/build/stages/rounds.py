"""The rounds stage: every timed artifact of the build in interleaved rounds, beside the machine's
yardstick (``verify.rounds``).

Its p50/p90/min replace the isolated bench's (which keeps load time and memory), and it adds the
run's noise band (``spread``), each artifact's per-op profile (``verify.profile``, taken in the
same child after the timing) and the latency against the machine: ``roofline_ms`` (the tower's
FLOPs at the measured GEMM peak) and ``p50_roofline`` (p50 / roofline_ms). The yardstick goes into
the report's machine description, where ``edgeclip bench --baseline`` reads it. Lives in the
target's own cache, keyed by every timed artifact's bench key: one changed artifact re-times all,
since the rounds are only comparable within one run.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..._io import stable_hash
from ..context import stage_model

__all__ = ["rounds"]


def _gflop(facts, tower: str) -> float | None:
    """The tower's GFLOP per call at batch 1 (a zero-shot head: its image tower's; the label
    matmul is negligible)."""
    flops = facts.flops_text if tower == "text" else facts.flops_image
    return flops / 1e9 if flops else None


def rounds(ctx, results, model_dir: Path) -> dict | None:
    """Time every artifact the bench stage timed; return the yardstick (None: nothing timed)."""
    from ...verify.rounds import MIN_BLOCK_MS, PROBE_SETTLE_S, time_in_rounds
    from .artifact import _bench_inputs, _load_artifact
    t = ctx.plan.target
    timed = [r for r in results if r.latency]
    if not timed:
        return None
    key = stable_hash("rounds/3", [r.bench_key for r in timed], t.bench, MIN_BLOCK_MS, PROBE_SETTLE_S, ctx.versions)

    def run(tmp: Path):
        arts = [_load_artifact(r.artifact_dir) for r in timed]
        out = time_in_rounds([a.to_dict() for a in arts], [_bench_inputs(a, r.artifact_dir) for a, r in zip(arts, timed)],
                             t.bench.warmup, t.bench.runs, t.bench.rounds, t.bench.threads, profile=True)
        (tmp / "rounds.json").write_text(json.dumps(out))

    folder = ctx.timed(f"time {len(timed)} artifacts in {t.bench.rounds} rounds", "rounds", key, ctx.local, run)
    data = json.loads((folder / "rounds.json").read_text())
    facts = stage_model(model_dir).facts
    peak = data["yardstick"]["gemm_peak_gflops"]
    for r, timing, prof in zip(timed, data["timings"], data["profiles"]):
        gflop = _gflop(facts, r.planned.tower)
        roof = gflop / peak * 1e3 if gflop and peak else None
        r.latency = {**r.latency, **timing, "profile": prof, "gflop": gflop, "roofline_ms": roof,
                     "p50_roofline": timing["p50_ms"] / roof if roof else None}
    return data["yardstick"]
