"""What a benchmark run records about the machine: description, SIMD flags, DRAM copy
bandwidth and the large-GEMM fp32 peak (the roofline's denominator). The yardstick itself is
``edgeclip.verify.machine``, which every build's timing run measures too."""
from __future__ import annotations

import os
import platform

from edgeclip.verify.machine import PeakProbe, best_seconds, cpu_flags, memory_bandwidth_gbs

__all__ = ["PeakProbe", "best_seconds", "cpu_flags", "gemm_peak_gflops", "machine", "memory_bandwidth_gbs"]


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
