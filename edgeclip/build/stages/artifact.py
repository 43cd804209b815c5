"""The artifact stage: one planned variant (backend x tower x quantization) through export,
verify and bench.

Export writes the artifact and its example inputs; verify runs it in its real runtime (CoreML off
macOS: the MIL interpreter, marked emulated) against the reference; bench loads it alone in a
child process (load time, memory; the rounds stage then times every artifact together). Export
and verify live in the shared cache, bench in this target's own.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..._io import stable_hash
from ...errors import ConfigError
from ..context import ArtifactResult, stage_model
from ...quantize.overrides import OP_TYPES
from ..plan import CALIBRATED, PlannedArtifact
from .twin import twin

__all__ = ["CALIBRATED", "MIL_INTERPRETER_VERSION", "EXPORT_VERSION", "artifact", "calibration_for", "calibration_inputs", "quant_method"]

MIL_INTERPRETER_VERSION = 1  # bump when edgeclip.verify.mil changes what it computes
# bump when a backend's export writes something else (2: ExecuTorch int8 token tables; 3: the recipe's
# quantization params and keep_float reach the backends, as the variant's float layers do; 4: ExecuTorch
# lowers last-dim means as 1/C FC kernels, ONNX dynamic int8 keeps convs float; 5: ExecuTorch folds
# transposes in a row into one permute)
EXPORT_VERSION = 5
# in-graph preprocessing takes uint8 pixels; coremltools 9 declares no uint8 tensor input (it
# casts it back to int32 at the boundary), so CoreML artifacts take int32 0..255
_RAW_DTYPES = {"coreml": "int32"}
_IO_NAMES = {"image": (("pixels",), ("image_embedding",)), "text": (("input_ids",), ("text_embedding",)),
             "zero-shot-head": (("pixels",), ("logits",))}


def quant_method(p: PlannedArtifact, q):
    """The quantization config of ``p``: the recipe's ``quantization.params`` for its mode, and
    ``keep_float`` (the recipe's, then the variant's own layers) as overrides: an op type
    (``softmax``) by type and fp32, anything else by module path and the variant's ``layer_mode``
    (fp32, or more palettization bits), or its own in ``layer_modes``."""
    from ...quantize.methods import make_method
    from ...quantize.overrides import Overrides
    names = {n: "fp32" for n in q.keep_float}
    names.update((n, "fp32" if n in OP_TYPES else p.mode_of(n)) for n in p.keep_float)
    ov = Overrides(op_type=tuple((n, m) for n, m in names.items() if n in OP_TYPES),
                   op_name=tuple((n, m) for n, m in names.items() if n not in OP_TYPES))
    return make_method(p.quant, q.params.get(p.quant), ov if ov else None)


def calibration_inputs(model, tower: str, calib, raw_dtype=None) -> list[tuple[np.ndarray, ...]]:
    """Calibration inputs as the artifact takes them, from ``calib`` (``build.calibration``;
    ``raw_dtype``: in-graph preprocessing, the uint8 NHWC images in the artifact's input dtype)."""
    from ...models import preprocess_images
    f = model.facts
    images, caps = calib.images, calib.captions
    n = len(images)
    if tower in ("image", "zero-shot-head"):
        px = images.astype(raw_dtype) if raw_dtype is not None else \
            preprocess_images(images, f.image_size, f.mean, f.std, f.resize_mode).numpy()
        return [(np.ascontiguousarray(px[i:i + 1]),) for i in range(n)]
    ids = model.tokenizer.encode(caps).astype(np.int32)
    return [(np.ascontiguousarray(ids[i:i + 1]),) for i in range(n)]


def calibration_for(ctx, model_dir: Path):
    """The build's calibration set (read once, at the model's resolution): ``build.calibration``."""
    if ctx.calibration is None:
        from ..calibration import calibration_set
        ctx.calibration = calibration_set(ctx.plan.recipe, stage_model(model_dir).facts.image_size)
    return ctx.calibration


def _load_artifact(folder: Path):
    from ...backends.base import Artifact
    return Artifact.from_dict(json.loads((folder / "artifact.json").read_text()), base=folder)


def artifact(ctx, p: PlannedArtifact, model_dir: Path, model_key: str, ref_dir: Path, ref_key: str):
    from ...backends import BACKENDS
    from ...backends.base import ExportSpec
    from ...bundle.labels import read_head, write_head
    r, t = ctx.plan.recipe, ctx.plan.target
    entry = ctx.backend_entry(p.backend)
    q = r.quantization
    label = f"{p.backend} {p.tower} {p.variant}"
    head = p.tower == "zero-shot-head"
    raw = t.in_graph_preprocess and p.tower in ("image", "zero-shot-head")  # raw pixels in, normalized inside
    raw_dtype = _RAW_DTYPES.get(p.backend, "uint8") if raw else None
    ls = ctx.plan.labels
    if head and ls is None:  # make_plan refuses this; a hand-made plan gets the same message
        raise ConfigError("the zero-shot-head tower needs a label set; pass --labels labels.txt")
    calib = calibration_for(ctx, model_dir) if p.quant in CALIBRATED else None
    export_key = stable_hash("export", EXPORT_VERSION, model_key, p, entry.options, q.params.get(p.quant, {}),
                             q.keep_float, calib.info["sha256"] if calib else 0,
                             t.batch_size, ctx.versions, *([ls.labels, ls.templates] if head else []),
                             *(["in-graph"] if raw else []))
    backend = BACKENDS.get(p.backend)

    def run_export(tmp: Path):
        from ...models import reparameterize
        m = stage_model(model_dir)
        reparameterize(m)  # fold MobileOne/RepMixer branches: same outputs, one conv each
        tower = m.tower("zero-shot-head", ls.labels, ls.templates) if head else m.tower(p.tower)
        if head:  # the fp32 head's label matrix: verify compares the artifact with it
            write_head(tmp, tower, ls)
        if raw:
            import torch
            image = m.image.with_preprocess((m.facts.image_size,) * 2, input_dtype=getattr(torch, raw_dtype))
            if head:
                tower.image = image
            else:
                tower = image
        example = tuple(x.contiguous() for x in tower.example_inputs(t.batch_size))
        ins, outs = _IO_NAMES[p.tower]
        calibration = calibration_inputs(m, p.tower, calib, raw_dtype) if calib else None
        options = dict(entry.options)
        metadata = {"author": "edgeclip", "license": "see the teacher's license",
                    "description": f"{r.name} {p.tower} tower ({p.variant})",
                    "preprocessing": json.dumps(m.facts.to_dict())}
        if raw:
            s = m.facts.image_size
            metadata["input:pixels"] = (f"{raw_dtype}[B,{s},{s},3] RGB pixels 0..255 (NHWC) resized to {s}x{s}; "
                                        "normalized inside the model")
        if head:
            metadata.setdefault("input:pixels", "float32[B,3,H,W] RGB pixels, resized and normalized (see preprocessing)")
            metadata.update({"output:logits": f"float32[B,{len(ls.labels)}] logit_scale x cosine per label, "
                                               "in the order of labels/labels.json"})
        stem = f"{p.tower}-{p.variant.replace('+', '-')}"
        spec = ExportSpec(tower=p.tower, quant=p.quant, input_names=ins, output_names=outs,
                          calibration=calibration, options=options, name=stem, metadata=metadata,
                          quant_config=quant_method(p, q))
        art = backend.export(tower, example, spec, tmp)
        for i, x in enumerate(example):  # bench feeds these: token ids valid for this vocabulary
            np.save(tmp / f"example-{i}.npy", x.cpu().numpy())
        d = art.to_dict()
        d["path"] = Path(art.path).name
        d["extra"]["in_graph_preprocess"] = bool(raw)
        # pal4+pal8xN: those layers are palettized finer, not float
        d["extra"]["float_layers"] = [n for n in p.keep_float if n in OP_TYPES or p.mode_of(n) == "fp32"]
        d["extra"]["layer_quant"] = {n: p.mode_of(n) for n in p.keep_float
                                     if n not in OP_TYPES and p.mode_of(n) != "fp32"}
        (tmp / "artifact.json").write_text(json.dumps(d, indent=2, default=str))

    export_dir = ctx.timed(f"export {label}", "export", export_key, ctx.cache, run_export, quiet=True)
    art = _load_artifact(export_dir)
    result = ArtifactResult(planned=p, artifact_dir=export_dir, artifact=art.to_dict())

    verify_key = stable_hash("verify", export_key, ref_key, MIL_INTERPRETER_VERSION)

    def run_verify(tmp: Path):
        from ...verify.reference import Reference
        from ...verify.run import check_artifact  # shared with `edgeclip verify BUNDLE`
        (tmp / "verify.json").write_text(json.dumps(check_artifact(art, Reference.load(ref_dir), t.bench.threads,
                                                                   head=read_head(export_dir) if head else None)))

    vdir = ctx.timed(f"verify {label}", "verify", verify_key, ctx.cache, run_verify, quiet=True)
    v = json.loads((vdir / "verify.json").read_text())
    result.runner, result.metrics = v["runner"], v["metrics"]
    result.emulated, result.verified = bool(v.get("emulated")), v["runner"] is not None
    twin(ctx, result, art, verify_key, ref_dir, head=read_head(export_dir) if head else None)

    bench_key = stable_hash("bench/6", export_key, t.bench, ctx.versions)  # /6: the profile moved to the rounds stage

    def run_bench(tmp: Path):
        from ...verify.latency import measure_isolated
        if result.runner is None or result.emulated:  # an interpreter's latency means nothing
            (tmp / "bench.json").write_text(json.dumps(None))
            return
        absjson = tmp / "artifact.json"  # with the absolute path the worker loads
        absjson.write_text(json.dumps(art.to_dict(), default=str))
        # load, start-up and memory, alone in a fresh process; the reported latency and the per-op
        # profile (verify.profile) come from the rounds stage, so a few calls suffice here (the
        # memory peak of a call is reached at once)
        lat = measure_isolated(absjson, _bench_inputs(art, export_dir), t.bench.warmup, min(t.bench.runs, 5),
                               t.bench.threads)
        (tmp / "bench.json").write_text(json.dumps(lat.to_dict()))

    bdir = ctx.timed(f"bench {label}", "bench", bench_key, ctx.local, run_bench, quiet=True)
    result.latency = json.loads((bdir / "bench.json").read_text())
    result.bench_key = bench_key
    return result


def _bench_inputs(art, export_dir: Path) -> tuple[np.ndarray, ...]:
    """The export's own example inputs (a tokenizer-shaped id row stays inside the vocabulary);
    random ones for exports cached before examples were stored."""
    saved = [export_dir / f"example-{i}.npy" for i in range(len(art.input_shapes))]
    if saved and all(p.exists() for p in saved):
        return tuple(np.ascontiguousarray(np.load(p)).astype(d) for p, d in zip(saved, art.input_dtypes))
    rng = np.random.default_rng(0)
    out = []
    for shape, dtype in zip(art.input_shapes, art.input_dtypes):
        if "int" in dtype:
            out.append(rng.integers(1, 1000, size=shape).astype(dtype))
        else:
            out.append(rng.standard_normal(shape).astype(dtype))
    return tuple(out)
