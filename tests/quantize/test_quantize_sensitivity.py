"""Per-layer sensitivity: the torch simulation's arithmetic, a planted outlier layer ranked first,
the range estimators on a rare activation outlier, and agreement with LiteRT's real int8-static
quantizer (each layer quantized alone through op_name overrides, run in the LiteRT interpreter)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeclip.errors import ConfigError
from edgeclip.quantize.sensitivity import (
    _fake_act, _fake_weight, _lut_weight, quantizable_layers, rank_layers, simulate,
)


class Mlp(nn.Module):
    """Three linears; ``b`` carries a weight outlier in column 0 (which reads a channel that is
    always 0, so fp32 never sees it): per-row int8 scales then leave b's other weights a few levels."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a, self.b, self.c = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 8)
        for m in (self.a, self.b, self.c):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight.shape[1] ** 0.5)
                m.bias.zero_()
        with torch.no_grad():
            self.a.weight[0] = 0.0      # a's output channel 0 is 0, so is b's input channel 0 after relu
            self.b.weight[:, 0] = 60.0  # the outlier

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def _inputs(n: int = 24, seed: int = 1, spike: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, 1, 16, generator=g)
    xs[1::8, 0, 0] += spike  # a rare outlier in the input, on every 8th sample from the second
    return [(x,) for x in xs]


def test_fake_quantization_arithmetic():
    w = torch.tensor([[1.27, -0.5, 0.25], [2.54, 0.0, -1.0]])  # multiples of max/127 per row
    torch.testing.assert_close(_fake_weight(w), w)  # on the per-channel grid already: unchanged
    noisy = w + 1e-3
    assert (_fake_weight(noisy) - noisy).abs().max() <= noisy.abs().amax(1).max() / 127 / 2 + 1e-7
    x = torch.linspace(-1, 3, 9)
    q = _fake_act(x, -1.0, 3.0)
    assert (q - x).abs().max() <= 4 / 255 / 2 + 1e-6 and _fake_act(torch.zeros(1), -1.0, 3.0).item() == 0.0
    assert _fake_act(torch.tensor([10.0]), -1.0, 3.0).item() == pytest.approx(3.0, abs=4 / 255)  # clipped


def test_palettization_uses_its_table_size():
    torch.manual_seed(0)
    w = torch.randn(64, 64)
    for bits in (4, 6, 8):
        q = _lut_weight(w, bits)
        assert len(torch.unique(q)) <= 2 ** bits
    errs = [float(((_lut_weight(w, b) - w) ** 2).mean()) for b in (4, 6, 8)]
    assert errs[0] > errs[1] > errs[2] > 0  # more bits, less error
    few = torch.tensor([[0.5, -0.5, 0.5, 2.0]])
    torch.testing.assert_close(_lut_weight(few, 4), few)  # fewer distinct values than entries: exact
    # unlike int8's per-row scale, a k-means table spends one entry on b's outlier column and fits
    # the rest: b is no longer the worst layer
    ranking = rank_layers(Mlp().eval(), _inputs(), "pal4")
    assert ranking[0].name != "b" and [s.cosine for s in ranking] == sorted(s.cosine for s in ranking)
    assert simulate(Mlp().eval(), _inputs(), "pal8") > simulate(Mlp().eval(), _inputs(), "pal4")


def test_the_planted_outlier_layer_ranks_first():
    model = Mlp().eval()
    assert [n for n, _ in quantizable_layers(model)] == ["a", "b", "c"]
    for scheme in ("int8-static", "int8-dynamic"):
        ranking = rank_layers(model, _inputs(), scheme)
        assert ranking[0].name == "b" and ranking[0].cosine < ranking[1].cosine - 0.01, (scheme, ranking)
        assert ranking[0].params == 32 * 32
        everything = simulate(model, _inputs(), scheme)
        assert everything <= ranking[0].cosine + 1e-3  # all layers together: no better than the worst alone
        assert simulate(model, _inputs(), scheme, layers=["a", "c"]) > ranking[0].cosine
    with pytest.raises(ConfigError, match="no simulation of 'int4'"):
        rank_layers(model, _inputs(), "int4")
    with pytest.raises(ConfigError, match="range estimator"):
        rank_layers(model, _inputs(), "int8-static", estimator="mse")
    with pytest.raises(ConfigError, match="calibration inputs"):
        rank_layers(model, [], "int8-static")


def test_range_estimators_treat_a_rare_outlier_differently():
    """One linear reading inputs with a rare spike: min/max ranging pays for the spike on every
    sample, a moving average mostly forgets it, dynamic ranging adapts per sample."""
    torch.manual_seed(0)
    layer = nn.Linear(16, 16).eval()
    xs = _inputs(spike=200.0)
    cos = {e: simulate(layer, xs, "int8-static", estimator=e) for e in ("minmax", "moving_average", "histogram")}
    assert cos["minmax"] < cos["moving_average"] and cos["histogram"] < 1.0, cos
    assert simulate(layer, xs, "int8-dynamic") > cos["minmax"]


@pytest.mark.toolchain
def test_simulation_agrees_with_litert_int8_static(tmp_path):
    """Each layer quantized alone by LiteRT's own int8-static path (the others kept float by
    op_name overrides): the real runtime ranks the layers as the simulation does."""
    from edgeclip.backends import BACKENDS, ExportSpec
    from edgeclip.quantize import make_method

    litert = BACKENDS.get("litert")
    model, inputs = Mlp().eval(), _inputs(spike=20.0)
    calib = [tuple(a.numpy() for a in x) for x in inputs]
    with torch.no_grad():
        ref = np.concatenate([model(*x).numpy() for x in inputs])
    real = {}
    for name in ("a", "b", "c"):
        others = {n: "fp32" for n in ("a", "b", "c") if n != name}
        spec = ExportSpec(tower="image", quant="int8-static", calibration=calib, name=f"only-{name}",
                          quant_config=make_method("int8-static", overrides={"op_name": others}))
        art = litert.export(model, inputs[0], spec, tmp_path)
        run = litert.runner(art)
        out = np.concatenate([run(*c) for c in calib])
        cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
        real[name] = float(cos.mean())
    sim = {s.name: s.cosine for s in rank_layers(model, inputs, "int8-static", estimator="moving_average")}
    print("LiteRT, each layer alone:", real, "simulated:", sim)
    assert min(real, key=real.get) == min(sim, key=sim.get) == "b", (real, sim)
    for name in sim:  # and the estimates are close to what the runtime does
        assert abs(sim[name] - real[name]) < max(0.5 * (1 - real[name]), 2e-3), (real, sim)
