"""Latency in interleaved rounds, beside the machine's yardstick: the numbers the CI gate reads.

Every artifact of a build is loaded into one child process and timed round-robin: each round
re-measures the GEMM peak (``machine.PeakProbe``) and lets its BLAS threads go idle, then gives
every runner a short block (one re-warm call after the previous runtime's block, then ``runs /
rounds`` timed calls, more for a fast artifact until the block lasts ``MIN_BLOCK_MS``). A load
spike on a shared machine then hits all artifacts and the yardstick alike, and the spread of
each artifact's per-round medians is the run's own noise band (``spread``: their range over the
p50, the two extreme rounds left out), which the gate requires a regression to exceed. Load time
and memory stay the isolated per-artifact measurement of ``verify.latency``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ExportError

__all__ = ["MIN_BLOCK_MS", "PROBE_SETTLE_S", "time_round_robin", "round_stats", "time_in_rounds", "median_timing"]

MIN_BLOCK_MS = 25.0  # a round's least time per artifact: 4 calls of a 0.3 ms tower measure only noise
PROBE_SETTLE_S = 0.3  # idle time after each yardstick GEMM, before the artifacts' blocks


def _call_ms(runner, x) -> float:
    s = time.perf_counter()
    runner(*x)
    return (time.perf_counter() - s) * 1e3


def time_round_robin(runners, sample_of, warmup: int, runs: int, rounds: int, probe=None,
                     min_block_ms: float = 0.0, max_block: int = 500) -> list[list[list[float]]]:
    """Per runner, per round, the timed calls in ms. ``sample_of(i)``: runner i's inputs.

    ``min_block_ms``: a round gives a runner at least this much time (more calls than ``runs /
    rounds`` for a sub-millisecond artifact, at most ``max_block``), so a round's median is not
    the luck of four calls."""
    lat: list[list[list[float]]] = [[] for _ in runners]
    per_round = max(1, -(-runs // rounds))
    blocks = []
    for i, runner in enumerate(runners):
        warm = [_call_ms(runner, sample_of(i)) for _ in range(max(warmup, 1 if min_block_ms else 0))]
        est = float(np.median(warm)) if warm else 0.0
        blocks.append(min(max_block, max(per_round, int(min_block_ms / est) + 1 if est > 0 else per_round)))
    for _ in range(rounds):
        if probe is not None:
            probe.measure()
            # OpenBLAS's threads spin ~0.1 s after a GEMM returns: a block started at once ran
            # 2.6x slower here (2.40 vs 0.91 ms, LiteRT fp32 on 2 cores) for whichever runner came first
            time.sleep(PROBE_SETTLE_S)
        for i, runner in enumerate(runners):
            x = sample_of(i)
            runner(*x)  # re-warm after the previous runtime's block
            block = []
            for _ in range(blocks[i]):
                block.append(_call_ms(runner, x))
            lat[i].append(block)
    return lat


def round_stats(per_round: list[list[float]]) -> dict:
    """p50/p90/min over every timed call, each round's median, and their relative spread: the
    range of the round medians over the p50, the fastest and slowest round left out from 5 rounds
    on (the p50 over every call already shrugs off one odd round; the band is the p50's noise)."""
    flat = np.array([t for r in per_round for t in r])
    meds = [float(np.median(r)) for r in per_round]
    mid = sorted(meds)[1:-1] if len(meds) >= 5 else meds
    p50 = float(np.median(flat))
    return {"p50_ms": p50, "p90_ms": float(np.percentile(flat, 90)), "min_ms": float(flat.min()),
            "runs": int(flat.size), "rounds": len(per_round), "round_p50_ms": meds,
            "spread": (max(mid) - min(mid)) / p50 if p50 > 0 else 0.0}


def time_in_rounds(artifacts: list[dict], inputs: list[tuple[np.ndarray, ...]], warmup: int, runs: int,
                   rounds: int, threads: int, min_block_ms: float = MIN_BLOCK_MS, timeout_s: float = 900,
                   profile: bool = False) -> dict:
    """Time ``artifacts`` (``Artifact.to_dict()`` with absolute paths) in one child process.
    Returns ``{"yardstick": {...}, "timings": [round_stats, ...]}`` in the order given, and with
    ``profile`` each artifact's per-op profile (``verify.profile``) under ``"profiles"``."""
    with tempfile.TemporaryDirectory() as d:
        job = {"artifacts": artifacts, "inputs": [], "warmup": warmup, "runs": runs, "rounds": rounds,
               "threads": threads, "min_block_ms": min_block_ms, "profile": profile}
        for i, xs in enumerate(inputs):
            p = Path(d) / f"inputs-{i}.npz"
            np.savez(p, *xs)
            job["inputs"].append(str(p))
        (Path(d) / "job.json").write_text(json.dumps(job, default=str))
        # numpy's BLAS (the yardstick) and OpenMP runtimes at the bench thread count, like the artifacts
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        cmd = [sys.executable, "-m", "edgeclip.verify._rounds_worker", str(Path(d) / "job.json")]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired as e:
            raise ExportError(f"timing {len(artifacts)} artifact(s) in rounds ran past {timeout_s:.0f} s") from e
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExportError(f"timing in rounds failed: {tail}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["timings"] = [round_stats(t) for t in out.pop("times_ms")]
    return out


def median_timing(runs: list[dict]) -> dict:
    """``--repeat K``: the median of K timings of one artifact. Its spread is the larger of the
    runs' median spread and twice the median deviation of their p50s from the median: one run
    caught whole in a slow spell (seen here: 4 of 5 rounds of one run 1.5x slow, the next two runs
    normal) moves neither the median nor the band, two runs that disagree widen it."""
    p50s = np.array([t["p50_ms"] for t in runs])
    mid = float(np.median(p50s))
    out = dict(min(runs, key=lambda t: abs(t["p50_ms"] - mid)))
    dispersion = 2 * float(np.median(np.abs(p50s - mid))) / mid if mid > 0 else 0.0
    out.update(p50_ms=mid, repeats=len(runs), repeat_p50_ms=p50s.tolist(),
               spread=max(float(np.median([t["spread"] for t in runs])), dispersion))
    return out
