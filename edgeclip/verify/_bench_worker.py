"""Child process of ``measure_isolated``: start the runtime, load one artifact, time it, print JSON."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

# profiled calls at least: the profile is a median of per-run sums (verify.profile), which needs
# more runs than the 5 timed ones to be steady on towers whose ops take about a microsecond
PROFILE_RUNS = 20


def main(argv: list[str]) -> int:
    artifact_json, npz, warmup, runs, threads = argv
    from ..backends import BACKENDS
    from ..backends.base import Artifact
    from .latency import artifact_memory_mb, measure, peak_rss_mb, reset_peak_rss, rss_now_mb
    from .profile import profile_artifact

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
    del runner  # the profile loads its own copy, with the runtime's profiler switched on
    try:
        out["profile"] = profile_artifact(artifact, inputs, runs=max(int(runs), PROFILE_RUNS), threads=int(threads))
    except Exception as e:  # a profiler that fails says so in the report; the timing above stands
        out["profile"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
