"""Host latency of an artifact: warmup, N timed runs, p50/p90/min, load time, peak RSS.

``measure_isolated`` runs the artifact in a fresh Python process so that load time is a cold
load and peak RSS belongs to that artifact alone (plus the interpreter and its runtime).
Numbers are host numbers; they say how the artifact compares with its siblings on this
machine, not what a phone will do.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportError

__all__ = ["Latency", "measure", "measure_isolated"]


@dataclass(frozen=True)
class Latency:
    runtime: str
    threads: int
    warmup: int
    runs: int
    p50_ms: float
    p90_ms: float
    min_ms: float
    load_ms: float
    peak_rss_mb: float

    def to_dict(self) -> dict:
        return asdict(self)


def _peak_rss_mb() -> float:
    import resource
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / (1024.0 * 1024.0)


def measure(runner, inputs: tuple[np.ndarray, ...], warmup: int = 3, runs: int = 20) -> Latency:
    for _ in range(warmup):
        runner(*inputs)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner(*inputs)
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.array(times)
    return Latency(runtime=getattr(runner, "runtime", type(runner).__name__),
                   threads=int(getattr(runner, "threads", 0)), warmup=warmup, runs=runs,
                   p50_ms=float(np.percentile(t, 50)), p90_ms=float(np.percentile(t, 90)),
                   min_ms=float(t.min()), load_ms=float(getattr(runner, "load_ms", 0.0)),
                   peak_rss_mb=_peak_rss_mb())


def measure_isolated(artifact_json: Path, inputs: tuple[np.ndarray, ...], warmup: int = 3,
                     runs: int = 20, threads: int = 2, timeout_s: float = 600) -> Latency:
    """Measure in a child process: ``artifact_json`` is an Artifact.to_dict() written to disk."""
    with tempfile.TemporaryDirectory() as d:
        npz = Path(d) / "inputs.npz"
        np.savez(npz, *inputs)
        cmd = [sys.executable, "-m", "edgeclip.verify._bench_worker", str(artifact_json), str(npz),
               str(warmup), str(runs), str(threads)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise ExportError(f"benchmark of {artifact_json} ran past {timeout_s:.0f} s") from e
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExportError(f"benchmark of {artifact_json} failed: {tail}")
    return Latency(**json.loads(r.stdout.strip().splitlines()[-1]))
