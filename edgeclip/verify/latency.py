"""Host latency of an artifact: warmup, N timed runs, p50/p90/min, load time, memory.

``measure_isolated`` runs the artifact in a fresh Python process that first starts the format's
runtime alone (``runtime_start_ms``: imports, runtime singletons) and reads the idle runtime's
resident memory (``runtime_rss_mb``). Then it loads the artifact: ``load_ms`` is that load on the
started runtime, and ``memory_mb`` the artifact's own cost, the process's resident growth over
the idle runtime (its peak when the peak came after the load, else the resident size after the
timed runs). ``peak_rss_mb`` stays the whole process's peak, interpreter and torch included.
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

__all__ = ["Latency", "measure", "measure_isolated", "rss_now_mb", "artifact_memory_mb", "peak_rss_mb",
           "reset_peak_rss"]


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
    runtime_start_ms: float | None = None
    runtime_rss_mb: float | None = None
    memory_mb: float | None = None
    profile: dict | None = None  # verify.profile: per-op times through the runtime's own profiler (the rounds stage adds it)

    def to_dict(self) -> dict:
        return asdict(self)


def peak_rss_mb() -> float:
    """The process's peak resident memory. Linux: VmHWM, which starts afresh at exec (getrusage's
    ru_maxrss does not: a worker forked from a 2 GB test process reports 2 GB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / (1024.0 * 1024.0)


def reset_peak_rss() -> None:
    """Restart the peak at the current resident size (Linux ``clear_refs`` 5), so the peak seen
    afterwards belongs to what runs next; a no-op where the kernel does not offer it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def rss_now_mb() -> float | None:
    """The process's resident memory now (Linux /proc); None where it cannot be read."""
    import os
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def artifact_memory_mb(idle_rss: float | None, idle_peak: float, after_rss: float | None,
                       end_peak: float) -> float:
    """Resident growth over the idle runtime: the peak if it rose after the idle point (it then
    belongs to load or runs), else the resident size after the runs (an import peaked higher)."""
    if idle_rss is None:  # no /proc (macOS): the peak's growth is all there is
        return max(end_peak - idle_peak, 0.0)
    if end_peak > idle_peak:
        return max(end_peak - idle_rss, 0.0)
    return max((after_rss if after_rss is not None else idle_rss) - idle_rss, 0.0)


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
                   peak_rss_mb=peak_rss_mb())


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
