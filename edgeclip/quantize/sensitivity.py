"""Per-layer quantization sensitivity: which layers of a tower hurt its output most when quantized.

Toolchain-free: a torch-side simulation of the backends' int8 schemes, one layer at a time.
Weights are quantized per output channel, symmetric, to [-127, 127] (XNNPACK's, LiteRT's and
CoreML's int8 weights); a layer's input and output are quantized per tensor, asymmetric, to
[-128, 127] with the range the backend's calibration would estimate on the calibration inputs
(``int8-static``, ``w8a8``; ``BACKEND_ESTIMATORS``), or the input alone with its own range
(``int8-dynamic``, whose outputs stay float). Palettization (``pal4``/``pal6``/``pal8``) replaces
a layer's weights by a per-tensor k-means table of 2^bits values, as coremltools does. Everything
else stays fp32. Each layer's score is the tower's output with only that layer quantized against
the fp32 output on the calibration inputs: cosine (mean over samples) and PSNR. The build's mixed-precision search keeps the worst layers in float;
the real artifact, verified in its runtime, decides whether that was enough, not this estimate.

    rank_layers(tower, inputs, scheme) -> [LayerSensitivity, ...]   most sensitive first
    simulate(tower, inputs, scheme, layers=None) -> cosine_mean      the given layers quantized
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["LayerSensitivity", "SCHEMES", "ESTIMATORS", "BACKEND_ESTIMATORS", "quantizable_layers", "rank_layers", "simulate"]

# quantization mode -> how its activations are ranged ("static": calibration, "dynamic": per call)
# ("lut": weight-only palettization, CoreML's pal4/pal6/pal8: a per-tensor k-means table of 2^bits values)
SCHEMES = {"int8-static": "static", "w8a8": "static", "int8-dynamic": "dynamic",
           "pal4": "lut", "pal6": "lut", "pal8": "lut"}
# how a backend's static calibration turns observed activations into a range (see _Range)
ESTIMATORS = ("minmax", "moving_average", "histogram")
BACKEND_ESTIMATORS = {"litert": "moving_average", "executorch": "histogram", "onnx": "minmax", "coreml": "minmax"}


@dataclass(frozen=True)
class LayerSensitivity:
    name: str           # module path inside the tower (what an op_name override names)
    op_type: str        # "linear" | "conv"
    params: int         # weights of the layer (what keeping it float costs in size)
    cosine: float       # tower output, this layer alone quantized, against fp32 (mean over samples)
    psnr_db: float

    def to_dict(self) -> dict:
        return asdict(self)


def quantizable_layers(tower: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv layers the backends' int8 modes quantize, in module order."""
    return [(n, m) for n, m in tower.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


def _fake_weight(w: torch.Tensor) -> torch.Tensor:
    flat = w.reshape(w.shape[0], -1)
    scale = flat.abs().amax(1).clamp_min(1e-12) / 127.0
    q = torch.round(flat / scale[:, None]).clamp(-127, 127)
    return (q * scale[:, None]).reshape(w.shape)


def _lut_weight(w: torch.Tensor, bits: int, iters: int = 12) -> torch.Tensor:
    """Per-tensor k-means palettization (CoreML's ``kmeans`` ``per_tensor``): every weight replaced
    by the nearest of ``2**bits`` centroids, Lloyd iterations from quantile starts."""
    flat = w.detach().reshape(-1).float()
    k = min(2 ** bits, flat.numel())
    centroids = torch.quantile(flat[:: max(1, flat.numel() // 65536)], torch.linspace(0, 1, k))

    def nearest(c):  # 1-D: the midpoints of the sorted centroids bound their cells (no N x k matrix)
        c = c.sort().values
        return c, torch.bucketize(flat, (c[1:] + c[:-1]) / 2)

    for _ in range(iters):
        centroids, idx = nearest(centroids)
        sums = torch.zeros(k).index_add_(0, idx, flat)
        counts = torch.zeros(k).index_add_(0, idx, torch.ones_like(flat))
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    centroids, idx = nearest(centroids)
    return centroids[idx].reshape(w.shape).to(w.dtype)


def _fake_act(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # zero stays exact, as in every int8 runtime
    scale = max(hi - lo, 1e-12) / 255.0
    zp = round(-128 - lo / scale)
    return (torch.round(x / scale + zp).clamp(-128, 127) - zp) * scale


class _Range:
    """Running range of one tensor, estimated as the backend's calibration does: ``minmax``
    (the extremes over every sample), ``moving_average`` (ai-edge-quantizer's LiteRT default: each
    sample's min/max folded in with weight 0.05) or ``histogram`` (torch's HistogramObserver, which
    trades clipped outliers for resolution, as ExecuTorch's pt2e quantizer does)."""

    def __init__(self, estimator: str):
        self.estimator, self.lo, self.hi, self.obs = estimator, None, None, None
        if estimator == "histogram":
            from torch.ao.quantization.observer import HistogramObserver
            self.obs = HistogramObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)

    def update(self, x: torch.Tensor) -> None:
        if self.obs is not None:
            self.obs(x.detach().float())
            return
        lo, hi = float(x.min()), float(x.max())
        if self.lo is None:
            self.lo, self.hi = lo, hi
        elif self.estimator == "moving_average":
            self.lo, self.hi = 0.95 * self.lo + 0.05 * lo, 0.95 * self.hi + 0.05 * hi
        else:
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    def bounds(self) -> tuple[float, float]:
        if self.obs is not None:
            scale, zp = (float(v) for v in self.obs.calculate_qparams())
            return (-128 - zp) * scale, (127 - zp) * scale
        return self.lo, self.hi


def _ranges(tower: nn.Module, layers: list[tuple[str, nn.Module]], inputs, estimator: str) -> dict:
    """``name -> ((in_lo, in_hi), (out_lo, out_hi))`` of each layer over the calibration inputs."""
    seen = {n: (_Range(estimator), _Range(estimator)) for n, _ in layers}
    handles = []
    for n, m in layers:
        handles.append(m.register_forward_pre_hook(lambda _m, a, n=n: seen[n][0].update(a[0])))
        handles.append(m.register_forward_hook(lambda _m, _a, y, n=n: seen[n][1].update(y)))
    try:
        with torch.no_grad():
            for x in inputs:
                tower(*x)
    finally:
        for h in handles:
            h.remove()
    return {n: (i.bounds(), o.bounds()) for n, (i, o) in seen.items() if i.lo is not None or i.obs is not None}


@contextmanager
def _quantized(layers: Iterable[tuple[str, nn.Module]], ranges: dict | None, scheme: str = "int8-static"):
    """Within the block, ``layers`` run with fake-quantized weights and inputs, and (static
    ranges) fake-quantized outputs, as a runtime's int8 op requantizes what it writes;
    palettization (``lut``) changes the weights only."""
    saved, handles = [], []
    lut = SCHEMES[scheme] == "lut"
    try:
        for name, m in layers:
            saved.append((m, m.weight.data))
            m.weight.data = _lut_weight(m.weight.data, int(scheme[3:])) if lut else _fake_weight(m.weight.data)
            if lut:
                continue
            if ranges is None:
                handles.append(m.register_forward_pre_hook(
                    lambda _m, a: (_fake_act(a[0], float(a[0].min()), float(a[0].max())), *a[1:])))
            elif name in ranges:
                (ilo, ihi), (olo, ohi) = ranges[name]
                handles.append(m.register_forward_pre_hook(
                    lambda _m, a, lo=ilo, hi=ihi: (_fake_act(a[0], lo, hi), *a[1:])))
                handles.append(m.register_forward_hook(lambda _m, _a, y, lo=olo, hi=ohi: _fake_act(y, lo, hi)))
        yield
    finally:
        for h in handles:
            h.remove()
        for m, w in saved:
            m.weight.data = w


def _outputs(tower: nn.Module, inputs) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([tower(*x).reshape(len(x[0]), -1).float() for x in inputs])


def _score(ref: torch.Tensor, out: torch.Tensor) -> tuple[float, float]:
    cos = float(nn.functional.cosine_similarity(ref, out, dim=1).mean())
    mse = float(((ref - out) ** 2).mean())
    peak = float(ref.abs().max()) ** 2
    return cos, (math.inf if mse == 0 else 10 * math.log10(max(peak, 1e-30) / mse))


def _prepare(tower, inputs, scheme, estimator):
    if scheme not in SCHEMES:
        raise ConfigError(f"sensitivity: no simulation of {scheme!r}; it knows {', '.join(SCHEMES)}")
    if estimator not in ESTIMATORS:
        raise ConfigError(f"sensitivity: range estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    inputs = [tuple(torch.as_tensor(a) for a in x) for x in inputs]
    if not inputs:
        raise ConfigError("sensitivity needs calibration inputs; got none")
    tower = tower.eval()
    layers = quantizable_layers(tower)
    ranges = _ranges(tower, layers, inputs, estimator) if SCHEMES[scheme] == "static" else None
    return tower, inputs, layers, ranges


def simulate(tower: nn.Module, inputs: Sequence[tuple], scheme: str, layers: Sequence[str] | None = None,
             estimator: str = "minmax") -> float:
    """Cosine (mean) of the tower's output with ``layers`` (default: every quantizable one) quantized."""
    tower, inputs, all_layers, ranges = _prepare(tower, inputs, scheme, estimator)
    chosen = [(n, m) for n, m in all_layers if layers is None or n in set(layers)]
    ref = _outputs(tower, inputs)
    with _quantized(chosen, ranges, scheme):
        return _score(ref, _outputs(tower, inputs))[0]


def rank_layers(tower: nn.Module, inputs: Sequence[tuple], scheme: str,
                estimator: str = "minmax") -> list[LayerSensitivity]:
    """Every quantizable layer scored alone, the most sensitive (lowest cosine) first."""
    tower, inputs, layers, ranges = _prepare(tower, inputs, scheme, estimator)
    ref = _outputs(tower, inputs)
    out = []
    for name, m in layers:
        with _quantized([(name, m)], ranges, scheme):
            cos, psnr = _score(ref, _outputs(tower, inputs))
        kind = "linear" if isinstance(m, nn.Linear) else "conv"
        out.append(LayerSensitivity(name, kind, int(m.weight.numel()), cos, psnr))
    return sorted(out, key=lambda s: (s.cosine, s.psnr_db))
