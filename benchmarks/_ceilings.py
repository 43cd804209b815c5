"""Kernel ceilings for ``latency.py``: models made only of one kind of layer at a tower's own
shapes, so each runtime's kernel speed there is measured beside the tower in the same run.

- ``gemm:TxW``: a Linear stack on [1, T, W] (a ViT's MLP GEMMs).
- ``convs:ARCH``: every Conv2d of an open_clip image tower (reparameterized, BN folded), each on the
  input it sees when the tower runs on a real photo, with no other op between them.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ConvStack", "GemmStack"]


class GemmStack:
    """``gemm:TOKENSxWIDTH``: a stack of 6 (W -> 4W -> W) Linear pairs with residuals on
    [1, TOKENS, W], the MLP GEMMs of a ViT without anything else. Its speed per runtime is the
    ceiling that runtime's GEMM kernels reach at the tower's shape, the yardstick next to the
    large-GEMM roofline (small-M GEMMs do not reach the large-GEMM peak)."""

    @staticmethod
    def build(spec: str):
        import torch
        from torch import nn

        tokens, width = (int(v) for v in spec.split(":", 1)[1].lower().split("x"))

        class Stack(nn.Module):
            input_names = ("x",)  # activations, not pixels

            def __init__(self):
                super().__init__()
                self.pairs = nn.ModuleList(nn.Sequential(nn.Linear(width, 4 * width), nn.Linear(4 * width, width))
                                           for _ in range(6))

            def forward(self, x):
                for p in self.pairs:
                    x = x + p(x)
                return x

        torch.manual_seed(0)
        rng = np.random.default_rng(0)

        def sample():  # activation-like values (LayerNorm output scale)
            return (rng.standard_normal((1, tokens, width)).astype(np.float32),)
        return Stack().eval(), [sample() for _ in range(2)], [sample() for _ in range(4)]


class ConvStack:
    """``convs:ARCH``: the tower's own convolutions alone. Each distinct conv input shape is one
    model input (a conv applied to a slice or a resize would time the copy too); every conv reads
    the input of its shape and its output is averaged over space, so the model's output depends
    on every conv and no runtime can drop one. The inputs are the activations the tower itself
    computes on the benchmark's photos (eval and calibration), so int8 ranges are the tower's."""

    @staticmethod
    def build(spec: str, load_tower):
        import torch
        from torch import nn

        arch = spec.split(":", 1)[1]
        tower, inputs, calibration = load_tower(arch, "image")
        convs, seen = [], []

        def hook(mod, args):
            seen.append((mod, tuple(args[0].shape), args[0].detach()))
        handles = [m.register_forward_pre_hook(hook) for m in tower.modules() if isinstance(m, nn.Conv2d)]

        def activations(samples):
            out = []
            for s in samples:
                seen.clear()
                with torch.no_grad():
                    tower(torch.from_numpy(s[0]))
                out.append(list(seen))
            return out
        try:
            eval_acts, cal_acts = activations(inputs), activations(calibration)
        finally:
            for h in handles:
                h.remove()
        shapes = list(dict.fromkeys(shape for _, shape, _ in eval_acts[0]))
        for mod, shape, _ in eval_acts[0]:
            convs.append((mod, shapes.index(shape)))

        class Convs(nn.Module):
            input_names = tuple(f"x{i}" for i in range(len(shapes)))

            def __init__(self):
                super().__init__()
                self.convs = nn.ModuleList(m for m, _ in convs)
                self.slots = [i for _, i in convs]

            def forward(self, *xs):
                return torch.cat([c(xs[i]).mean((2, 3)) for c, i in zip(self.convs, self.slots)], 1)

        def samples(acts):  # per photo: one tensor per distinct shape, the first conv's input of it
            out = []
            for run in acts:
                first = {}
                for _, shape, x in run:
                    first.setdefault(shape, x.numpy().copy())
                out.append(tuple(first[s] for s in shapes))
            return out
        return Convs().eval(), samples(eval_acts), samples(cal_acts)
