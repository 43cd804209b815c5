"""Child process of ``rounds.time_in_rounds``: load every artifact, measure the machine's
yardstick, time all of them in interleaved rounds, then (``profile``) take each one's per-op
profile through its runtime's own profiler; print JSON."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

# profiled calls at least: the profile is a median of per-run sums (verify.profile), which needs
# many runs to be steady on towers whose ops take about a microsecond
PROFILE_RUNS = 20


def _profiles(arts, inputs, runs: int, threads: int) -> list[dict]:
    """After the timing, so the profilers' imports (ExecuTorch's pulls in its exporter) and
    extra loads touch no timed call."""
    from .profile import profile_artifact
    out = []
    for a, x in zip(arts, inputs):
        try:
            out.append(profile_artifact(a, x, runs=max(runs, PROFILE_RUNS), threads=threads))
        except Exception as e:  # a profiler that fails says so in the report; the timing stands
            out.append({"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
    return out


def main(argv: list[str]) -> int:
    from ..backends import BACKENDS
    from ..backends.base import Artifact
    from .machine import PeakProbe, memory_bandwidth_gbs
    from .rounds import time_round_robin

    job = json.loads(Path(argv[0]).read_text())
    threads = int(job["threads"])
    arts = [Artifact.from_dict(a) for a in job["artifacts"]]
    inputs = []
    for p in job["inputs"]:
        with np.load(p) as z:
            inputs.append(tuple(np.ascontiguousarray(z[k]) for k in sorted(z.files, key=lambda s: int(s.split("_")[1]))))
    runners = []
    for a in arts:
        r = BACKENDS.get(a.backend).runner(a, threads=threads)
        if r is None:
            print(f"no runtime for {a.backend} on this OS", file=sys.stderr)
            return 2
        runners.append(r)
    bandwidth = memory_bandwidth_gbs()
    probe = PeakProbe()
    times = time_round_robin(runners, lambda i: inputs[i], int(job["warmup"]), int(job["runs"]),
                             int(job["rounds"]), probe, min_block_ms=float(job.get("min_block_ms", 0.0)))
    yardstick = {"gemm_peak_gflops": probe.best, "gemm_peak_by_round": probe.history,
                 "memory_bandwidth_gbs": bandwidth, "threads": threads, "library": "numpy"}
    out = {"yardstick": yardstick, "times_ms": times}
    if job.get("profile"):
        out["profiles"] = _profiles(arts, inputs, int(job["runs"]), threads)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
