"""What a benchmark run records about the machine: description, SIMD flags, DRAM copy
bandwidth and the large-GEMM fp32 peak (the roofline's denominator)."""
from __future__ import annotations

import os
import platform
import time

import numpy as np


def best_seconds(fn, reps: int) -> float:
    """Fastest of ``reps`` timed calls of ``fn`` (the least-disturbed one on a shared VM)."""
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def machine(threads: int) -> dict:
    import importlib.metadata as md

    def ver(p):
        try:
            return md.version(p)
        except md.PackageNotFoundError:
            return None

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "cpu_flags": cpu_flags(), "load_avg_start": os.getloadavg(),
            "versions": {p: ver(p) for p in ("torch", "executorch", "litert-torch", "ai-edge-litert",
                                             "onnxruntime", "coremltools", "open-clip-torch")},
            "note": "shared, noisy machine: compare rows of one run, not across runs"}


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
    """The machine's large-GEMM peak, re-measured at every timing round (numpy, best of 2).
    On a shared VM one measurement at the start can land in a slow spell (87 vs 145 GFLOP/s
    minutes apart here) and would flatter every roofline ratio; the best seen during the run
    is the honest floor."""

    def __init__(self, start: float, n: int = 2048):
        self.best, self.n = start, n
        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((n, n)).astype(np.float32)
        self.b = rng.standard_normal((n, n)).astype(np.float32)

    def measure(self) -> float:
        self.best = max(self.best, 2 * self.n**3 / best_seconds(lambda: self.a @ self.b, 2) / 1e9)
        return self.best


def gemm_peak_gflops(threads: int, n: int = 2048, reps: int = 8) -> dict[str, float]:
    """Best-of-``reps`` fp32 GFLOP/s of one large square matmul through torch (its CPU BLAS)
    and through numpy (OpenBLAS); the higher is the machine's practical peak. On the 2-core
    EPYC VM used here torch reached ~101 and numpy ~147 GFLOP/s."""
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    a, b = torch.randn(n, n), torch.randn(n, n)
    an, bn = a.numpy(), b.numpy()
    out = {}
    for name, mm in (("torch", lambda: torch.mm(a, b)), ("numpy", lambda: an @ bn)):
        mm()  # warm-up
        out[name] = 2 * n**3 / best_seconds(mm, reps) / 1e9
    return out
