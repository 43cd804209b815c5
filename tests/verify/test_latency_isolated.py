"""measure_isolated: the artifact's own load and memory, the runtime's start-up timed apart.

Two artifacts per runtime, a 16-wide layer and a 2048-wide stack (50 MB of fp32 weights), timed
in the fresh worker process the build uses. The big one's memory must show its weights, the small
one's must not; the idle runtime (torch and the interpreter for ExecuTorch) is reported apart.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from edgeclip.backends import ExportSpec, get_backend
from edgeclip.verify.latency import artifact_memory_mb, measure_isolated

BIG_MB = 3 * 2048 * 2048 * 4 / 2**20  # 48 MiB of weights


def _stack(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*(nn.Linear(width, width, bias=False) for _ in range(3))).eval()


@pytest.mark.toolchain
@pytest.mark.parametrize("backend", ["onnx", "litert", "executorch"])
def test_memory_is_the_artifacts_and_start_up_is_apart(backend, tmp_path):
    lat = {}
    for width in (16, 2048):
        example = (np.random.default_rng(0).standard_normal((1, width)).astype(np.float32),)
        spec = ExportSpec(tower="image", name=f"w{width}")
        art = get_backend(backend).export(_stack(width), example, spec, tmp_path / f"w{width}")
        desc = tmp_path / f"w{width}.json"
        desc.write_text(json.dumps(art.to_dict(), default=str))
        lat[width] = measure_isolated(desc, example, warmup=1, runs=3, threads=1)
    small, big = lat[16], lat[2048]
    for x in (small, big):
        assert x.runtime_start_ms is not None and x.runtime_rss_mb and x.memory_mb is not None
        assert x.memory_mb <= x.peak_rss_mb - x.runtime_rss_mb + 1.0  # the artifact's share of the peak
    # the big stack's weights show up; the small one costs a runtime's per-session overhead only
    # (ONNX Runtime's arena and thread pools: about 12 MB here)
    assert big.memory_mb - small.memory_mb > 0.5 * BIG_MB and small.memory_mb < big.memory_mb / 3
    # loading a 16-wide layer on a started runtime is cheaper than starting the runtime
    assert small.load_ms < small.runtime_start_ms


def test_memory_growth_rules():
    assert artifact_memory_mb(100.0, 120.0, 130.0, 180.0) == 80.0   # peaked after the idle point
    assert artifact_memory_mb(100.0, 300.0, 130.0, 300.0) == 30.0   # an import peaked higher
    assert artifact_memory_mb(None, 120.0, None, 150.0) == 30.0     # no /proc: the peak's growth
    assert artifact_memory_mb(100.0, 300.0, 90.0, 300.0) == 0.0     # never negative
