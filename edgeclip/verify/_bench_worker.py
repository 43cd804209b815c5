"""Child process of ``measure_isolated``: load one artifact cold, time it, print JSON."""
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
    from .latency import measure

    artifact = Artifact.from_dict(json.loads(Path(artifact_json).read_text()))
    with np.load(npz) as z:
        inputs = tuple(np.ascontiguousarray(z[k]) for k in sorted(z.files, key=lambda s: int(s.split("_")[1])))
    t0 = time.perf_counter()
    runner = BACKENDS.get(artifact.backend).runner(artifact, threads=int(threads))
    load_ms = (time.perf_counter() - t0) * 1e3
    if runner is None:
        print(f"no runtime for {artifact.backend} on this OS", file=sys.stderr)
        return 2
    lat = measure(runner, inputs, warmup=int(warmup), runs=int(runs))
    out = lat.to_dict()
    out["load_ms"] = load_ms
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
