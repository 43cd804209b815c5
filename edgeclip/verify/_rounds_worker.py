"""Child process of ``rounds.time_in_rounds``: load every artifact, measure the machine's
yardstick, time all of them in interleaved rounds, print JSON."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


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
    print(json.dumps({"yardstick": yardstick, "times_ms": times}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
