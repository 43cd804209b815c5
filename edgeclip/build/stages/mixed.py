"""The mixed-precision stage: rescue quantized variants that miss the accuracy gates.

For every verified int8 variant (``int8-static``, ``int8-dynamic``, ``w8a8``) or palettized one
(``pal4``/``pal6``/``pal8``, CoreML: verified in the MIL interpreter off macOS) below the target's
thresholds, the tower's layers are ranked by sensitivity (``quantize.sensitivity``: each layer
quantized alone in a torch simulation of the scheme and of the backend's calibration, on the
build's calibration inputs; cached per model, tower, scheme, range estimator and calibration set).
The variant is then rebuilt with its most sensitive 1, 2, 4, 8 ... layers kept in float (pal6:
raised to 8 bits; pal4: to 6 or 8 bits per layer, by its sensitivity at 6 bits; static schemes:
from the second attempt on, with the residual adds float too), each rebuild exported, verified in
its real runtime and gated like any variant, until one passes or fewer than the target's
``mixed_precision.min_quantized_fraction`` of the quantizable weights would stay quantized. Every attempt becomes a candidate for the select stage; the
rankings go into the bundle (``sensitivity.json``) and the search into the report.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..._io import stable_hash
from ...errors import ExportError
from ..context import stage_model
from .artifact import artifact, calibration_for, calibration_inputs, quant_method
from .select import gate
from .twin import twin_steps

__all__ = ["mixed_precision", "sensitivity", "estimator_for", "mixed_md", "SENSITIVITY_VERSION"]

SENSITIVITY_VERSION = 1  # bump when quantize.sensitivity computes something else


def estimator_for(backend: str, method) -> str:
    """How ``backend`` ranges activations when it calibrates ``method`` (see quantize.sensitivity)."""
    from ...quantize.sensitivity import BACKEND_ESTIMATORS
    if backend != "litert" and getattr(method, "observer", None) == "minmax":
        return "minmax"
    return BACKEND_ESTIMATORS.get(backend, "minmax")


def sensitivity(ctx, model_dir: Path, model_key: str, tower: str, scheme: str, estimator: str) -> dict:
    """The cached ranking of ``tower``'s layers under ``scheme`` (``sensitivity.json`` of the stage)."""
    calib = calibration_for(ctx, model_dir)
    key = stable_hash("sensitivity", SENSITIVITY_VERSION, model_key, tower, scheme, estimator, calib.info["sha256"])

    def run(tmp: Path):
        import torch

        from ...models import reparameterize
        from ...quantize.sensitivity import rank_layers, simulate
        m = stage_model(model_dir)
        reparameterize(m)  # rank the layers that are exported
        t = m.tower(tower)
        inputs = [tuple(torch.from_numpy(a) for a in x) for x in calibration_inputs(m, tower, calib)]
        ranking = rank_layers(t, inputs, scheme, estimator)
        ranged = ("each input's own range" if scheme == "int8-dynamic" else f"{estimator} ranges of inputs and outputs")
        how = (f"a per-tensor k-means table of {2 ** int(scheme[3:])} weights" if scheme.startswith("pal")
               else f"per-channel symmetric int8 weights and {ranged}")
        (tmp / "sensitivity.json").write_text(json.dumps({
            "tower": tower, "scheme": scheme, "estimator": None if scheme.startswith("pal") else estimator,
            "samples": len(inputs),
            "calibration": calib.info["sha256"],
            "method": f"torch simulation: each layer alone with {how}",
            "all_layers_cosine": simulate(t, inputs, scheme, estimator=estimator),
            "layers": [s.to_dict() for s in ranking]}, indent=1))

    ctx.progress.total += 1
    label = f"sensitivity {tower} {scheme}" + ("" if scheme.startswith("pal") else f" ({estimator})")
    folder = ctx.timed(label, "sensitivity", key, ctx.cache, run)
    return json.loads((folder / "sensitivity.json").read_text())


# palettized variants raise their sensitive layers to 8 bits (pal4: to 6 where that is enough, see
# _layer_bits); pal8 and the int8 modes keep them float
_RAISE = {"pal4": "pal8", "pal6": "pal8", "pal8": "fp32"}


def _layer_bits(kept: list[dict], left: list[dict], at6: dict[str, float] | None) -> dict[str, str]:
    """pal4's raised layers, each at 6 bits where, palettized alone at 6 bits, it moves the tower's
    output no more than the most sensitive layer left at 4 bits does (its simulated cosine at least
    as high), else at 8. Equal per-layer error for the fewest bits is how Apple's mixed-bit
    palettization picks bits per layer. Other modes (``at6`` None): no per-layer choice."""
    if at6 is None:
        return {}
    bar = left[0]["cosine"] if left else 1.0
    return {x["name"]: "pal6" if at6.get(x["name"], -1.0) >= bar else "pal8" for x in kept}


def _as(mode: str) -> str:
    return "float" if mode == "fp32" else f"at {mode}"


def _counts(n: int):
    k = 1
    while k < n:
        yield k
        k *= 2
    yield n


def _attempts(n: int, static: bool):
    """``(op types kept float, how many top layers kept float)`` in the order they are tried. Static
    schemes also quantize the residual stream's adds, which no layer ranking sees (measured on the
    default ViT student through ExecuTorch: every linear float moved cosine 0.9983 -> 0.9984, the
    adds float 0.9983 -> 0.9992); from the second attempt on they stay float too."""
    counts = list(_counts(n))
    yield (), counts[0]
    for k in counts if static else counts[1:]:
        yield (("add",) if static else ()), k


def mixed_precision(ctx, results: list, model_dir: Path, model_key: str, ref_dir: Path, ref_key: str) -> list:
    """``results`` plus every mixed-precision attempt; ``ctx.mixed`` records each search."""
    mp = ctx.plan.target.mixed_precision
    out = list(results)
    if not mp.search:
        return out
    for res in results:
        p = res.planned
        method = quant_method(p, ctx.plan.recipe.quantization)
        int8 = method.weight_bits == 8 and method.activation_bits == 8  # int8-static, int8-dynamic, w8a8
        if not (int8 or p.quant in _RAISE) or p.keep_float or not res.verified or not gate(ctx, res):
            continue
        layer_mode = _RAISE.get(p.quant, "fp32")
        est = estimator_for(p.backend, method)
        rank = sensitivity(ctx, model_dir, model_key, p.tower, p.quant, est)
        ctx.sensitivity[res.name] = rank
        layers = rank["layers"]
        at6 = ({x["name"]: x["cosine"] for x in sensitivity(ctx, model_dir, model_key, p.tower, "pal6", est)["layers"]}
               if p.quant == "pal4" else None)
        total = sum(x["params"] for x in layers) or 1
        search = {"artifact": res.name, "missed": [s.metric for s in res.shortfalls], "attempts": [], "outcome": ""}
        ctx.mixed.append(search)
        static = method.needs_calibration
        for types, k in _attempts(len(layers), static):
            kept = layers[:k]
            share = 1 - sum(x["params"] for x in kept) / total
            if share < mp.min_quantized_fraction:
                how = _as(layer_mode) if at6 is None else "at 6 or 8 bits"
                search["outcome"] = (f"gave up: keeping {k} layer{'s' * (k > 1)} {how} leaves {share:.0%} of the "
                                     f"weights at {p.quant}, "
                                     f"below min_quantized_fraction {mp.min_quantized_fraction:g}")
                break
            ctx.progress.total += 3 + twin_steps(ctx.plan.target, p.backend)  # export, verify, (twin,) bench
            floats = (*types, *(x["name"] for x in kept))
            bits = _layer_bits(kept, layers[k:], at6)
            planned = replace(p, keep_float=floats, layer_mode=layer_mode,
                              layer_modes=tuple((n, m) for n, m in bits.items() if m != layer_mode))
            try:
                attempt = artifact(ctx, planned, model_dir, model_key, ref_dir, ref_key)
            except ExportError as e:  # a combination the backend cannot build ends the search, not the build
                search["outcome"] = f"stopped: {planned.variant} did not export ({' '.join(str(e).split())[:200]})"
                break
            out.append(attempt)
            missed = gate(ctx, attempt)
            search["attempts"].append({"artifact": attempt.name, "float_layers": list(floats), "layer_mode": layer_mode,
                                       "layer_modes": {n: planned.mode_of(n) for n in floats if n not in types},
                                       "quantized_fraction": share, "missed": [s.metric for s in missed]})
            if not missed:
                modes = sorted({planned.mode_of(x["name"]) for x in kept})
                what = " and ".join([*(f"every {t} float" for t in types),
                                     f"{k} layer{'s' * (k > 1)} {' or '.join(_as(m) for m in modes)}"])
                search["outcome"] = f"passed with {what}: {attempt.name}"
                break
        else:
            search["outcome"] = search["outcome"] or "every layer float and still below the thresholds"
    return out


def mixed_md(searches: list[dict]) -> str:
    """The report's section: each search, its attempts, the layers kept float and the outcome."""
    if not searches:
        return ""
    out = ["## Mixed precision", "",
           "Quantized variants below the thresholds, rebuilt with their most sensitive layers in float "
           "(ranked in `sensitivity.json` by a torch simulation of the scheme; each attempt verified in its runtime).", "",
           "| variant | it missed | attempt | kept float (or at more bits) | quantized weights | the attempt missed |",
           "|---|---|---|---|---|---|"]
    for s in searches:
        missed = ", ".join(s["missed"])
        if not s["attempts"]:
            out.append(f"| {s['artifact']} | {missed} | - | - | - | - |")
        for a in s["attempts"]:
            modes = a.get("layer_modes") or {}
            kept = ", ".join(f"{n} ({modes[n]})" if modes.get(n, "fp32") != "fp32" else n for n in a["float_layers"])
            out.append(f"| {s['artifact']} | {missed} | {a['artifact']} | {kept} | "
                       f"{a['quantized_fraction']:.0%} | {', '.join(a['missed']) or 'none: passed'} |")
        out.append(f"| {s['artifact']} | | outcome: {s['outcome']} | | | |")
    return "\n".join(out)
