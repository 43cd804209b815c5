"""Child process of ``measure_isolated``: start the runtime, load one artifact, time it, print JSON.

The per-op profile is not taken here but in the rounds child (``_rounds_worker``), which loads
every artifact of a build anyway: ExecuTorch's profile reader (``executorch.devtools``) imports the
whole exporter, 8 s per child on a 2-core VM, which the runtime itself does not need."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    artifact_json, npz, warmup, runs, threads = argv
    from ..backends import BACKENDS
    from ..backends.base import Artifact
    from .latency import artifact_memory_mb, measure, peak_rss_mb, reset_peak_rss, rss_now_mb

    artifact = Artifact.from_dict(json.loads(Path(artifact_json).read_text()))
    with np.load(npz) as z:
        inputs = tuple(np.ascontiguousarray(z[k]) for k in sorted(z.files, key=lambda s: int(s.split("_")[1])))
    backend = BACKENDS.get(artifact.backend)
    t0 = time.perf_counter()
    backend.start_runtime()  # the runtime's start-up is not the artifact's load: timed apart
    runtime_start_ms = (time.perf_counter() - t0) * 1e3
    reset_peak_rss()  # imports peak above the idle runtime; the artifact's peak starts here
    idle_rss, idle_peak = rss_now_mb(), peak_rss_mb()
    runner = backend.runner(artifact, threads=int(threads))  # times its own load (runner.load_ms)
    if runner is None:
        print(f"no runtime for {artifact.backend} on this OS", file=sys.stderr)
        return 2
    lat = measure(runner, inputs, warmup=int(warmup), runs=int(runs))
    out = lat.to_dict()
    out.update(runtime_start_ms=runtime_start_ms, runtime_rss_mb=idle_rss,
               memory_mb=artifact_memory_mb(idle_rss, idle_peak, rss_now_mb(), lat.peak_rss_mb))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
