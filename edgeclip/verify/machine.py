"""The machine's yardstick and description: what a latency needs beside it to travel.

A build times its artifacts next to two measurements of the machine it ran on, taken in the same
process at the bench thread count: the large-GEMM fp32 peak (numpy/OpenBLAS, re-measured every
timing round, best kept: a slow spell must not flatter the machine) and the DRAM copy bandwidth.
``machine_differences`` says whether two reports came from the same kind of machine (CPU model,
cores, bench threads, runtime versions); when they did not, milliseconds say more about the
hardware than about the change, and the regression gate compares latencies normalized by the
GEMM peak instead (``verify.compare``).
"""
from __future__ import annotations

import os
import time

import numpy as np

__all__ = ["best_seconds", "cpu_flags", "memory_bandwidth_gbs", "PeakProbe", "MATCH_FIELDS",
           "machine_differences"]

# what must agree for two reports' milliseconds to be compared as they are
MATCH_FIELDS = ("cpu", "cores", "machine", "bench_threads", "torch", "executorch", "ai-edge-litert", "onnxruntime",
                "coremltools")


def best_seconds(fn, reps: int) -> float:
    """Fastest of ``reps`` timed calls of ``fn`` (the least-disturbed one on a shared VM)."""
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def cpu_flags() -> list[str]:
    """The SIMD features that decide int8 speed: without VNNI (``avx512_vnni``/``avx_vnni``)
    x86 int8 GEMMs multiply through 16-bit intermediates and gain far less over fp32."""
    if not os.path.exists("/proc/cpuinfo"):
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo") if ln.startswith("flags")), [])
    keep = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
            "amx_int8", "amx_bf16")
    return [f for f in keep if f in flags]


def memory_bandwidth_gbs(mb: int = 256, reps: int = 5) -> float:
    """Best-of-``reps`` DRAM copy bandwidth (read + write bytes / s) of a ``mb`` MB array. At
    batch 1 a ViT reads every weight once per call (350 MB fp32 for ViT-B/32), so this bounds
    fp32 latency from below as the GEMM peak does."""
    src = np.ones(mb * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    return 2 * src.nbytes / best_seconds(lambda: np.copyto(dst, src), reps) / 1e9


class PeakProbe:
    """The machine's large-GEMM fp32 peak (numpy, best of 2), re-measured at every timing round.
    On a shared VM one measurement at the start can land in a slow spell (87 vs 145 GFLOP/s
    minutes apart here) and would flatter every roofline ratio; the best seen during the run is
    the honest floor. ``history`` keeps every round's own figure."""

    def __init__(self, start: float = 0.0, n: int = 2048):
        self.best, self.n, self.history = start, n, []
        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((n, n)).astype(np.float32)
        self.b = rng.standard_normal((n, n)).astype(np.float32)

    def measure(self) -> float:
        now = 2 * self.n**3 / best_seconds(lambda: self.a @ self.b, 2) / 1e9
        self.history.append(now)
        self.best = max(self.best, now)
        return self.best


def _fields(machine: dict) -> dict:
    m = dict(machine or {})
    m.setdefault("bench_threads", (m.get("yardstick") or {}).get("threads"))
    return {k: m.get(k) for k in MATCH_FIELDS}


def machine_differences(new: dict, base: dict) -> list[str]:
    """``field: base -> new`` for each description field that differs; [] means the same kind of
    machine. A field only one report records does not count (a report from an older edgeclip
    lacks ``bench_threads``; a phone's has no host runtime versions)."""
    a, b = _fields(new), _fields(base)
    return [f"{k}: {b[k]} -> {a[k]}" for k in MATCH_FIELDS if a[k] is not None and b[k] is not None and a[k] != b[k]]
