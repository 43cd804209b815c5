"""The stages of one build, each a function over ``pipeline.Build`` (see pipeline.py).

Every stage computes its cache key from its inputs first, then either reuses the finished
folder or builds it through a temporary one. Keys chain: an artifact's key includes the
model's key, so a new student invalidates every artifact built from the old one.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ._stage_cache import stable_hash
from .errors import ConfigError
from .plan import PlannedArtifact

__all__ = ["FORCE_ORDER", "teacher_key", "make_teacher", "teacher_and_distill", "reference", "artifact", "select", "bundle"]

FORCE_ORDER = ["teacher", "distill", "reference", "export", "verify", "bench", "bundle"]
CALIBRATED = ("int8-static", "w8a8")
MIL_INTERPRETER_VERSION = 1  # bump when edgeclip.verify.mil changes what it computes
_IO_NAMES = {"image": (("pixels",), ("image_embedding",)), "text": (("input_ids",), ("text_embedding",)),
             "zero-shot-head": (("pixels",), ("logits",))}


def _load(model_dir: Path):
    from .models import load_model
    return load_model(f"file:{model_dir / 'model.safetensors'}").eval()


def pretrain_source(r):
    """The data the teacher pretrains on: ``data.train``, in ``pretrain.languages`` when given (a
    DC-CLIP recipe pretrains an English teacher, then distils on English + Chinese)."""
    src = r.data.train
    if r.pretrain and r.pretrain.languages:
        from dataclasses import replace
        src = replace(src, languages=tuple(r.pretrain.languages))
    return src


def teacher_key(r, torch_version: str) -> str:
    """The teacher stage's cache key: ``edgeclip pretrain`` and ``build`` share the stage. Only
    what the teacher is trained on counts, so recipes that differ after it share one teacher."""
    pt = None
    if r.pretrain:
        pt = {k: getattr(r.pretrain, k) for k in ("steps", "batch_size", "lr", "weight_decay", "warmup_steps")}
    return stable_hash("teacher", r.teacher, r.seed, pt, pretrain_source(r) if r.pretrain else None, torch_version)


def make_teacher(r, key: str, cache_root: Path, out: Path) -> None:
    """Load (and pretrain, if the recipe says so) the teacher into ``out/model.safetensors``."""
    from .models import load_model, save_model
    model = load_model(r.teacher)
    if r.pretrain:
        _pretrain(model, r, cache_root / f"ckpt-teacher-{key}")
    save_model(model, out / "model.safetensors")


def teacher_and_distill(b) -> tuple[Path, str]:
    r = b.plan.recipe
    key = teacher_key(r, b.versions["torch"])

    def run_teacher(tmp: Path):
        make_teacher(r, key, b.cache.root, tmp)

    what = "load + pretrain teacher" if r.pretrain else "load teacher"
    teacher_dir = model_dir = b.timed(f"{what} {r.teacher}", "teacher", key, b.cache, run_teacher)
    b.distill_dirs = []  # (stage, folder): the bundle reports each stage's record
    for i, st in enumerate(r.distill):
        from .distill import METHODS
        key = stable_hash("distill", key, st, r.data.train, r.seed)
        prev = model_dir

        # every stage mimics the recipe's teacher and starts from the previous stage's model
        def run_distill(tmp: Path, st=st, prev=prev, key=key):
            METHODS.get(st.method).run(teacher_dir=teacher_dir, init_dir=prev, stage=st, recipe=r, out=tmp,
                                       checkpoint_dir=b.cache.root / f"ckpt-distill-{key}")

        model_dir = b.timed(f"distill {i + 1}/{len(r.distill)} {st.method}", "distill", key, b.cache, run_distill)
        b.distill_dirs.append((st, model_dir))
    return model_dir, key


def _pretrain(model, r, checkpoint_dir: Path) -> None:
    """CLIP-loss training from scratch; checkpoints outside the stage folder so a killed
    build resumes from the last checkpoint instead of step 0."""
    from .distill._data import training_pairs
    from .distill.pretrain import pretrain_clip
    src, pt = pretrain_source(r), r.pretrain
    if src.source != "synthetic":
        raise ConfigError(f"pretrain: training a teacher from scratch on {src.source} data is not "
                          "supported yet; use data.train.source: synthetic or a pretrained teacher")
    data = training_pairs(src, model.facts.image_size, r.seed)  # one caption language after another
    pretrain_clip(model, data, steps=pt.steps, batch_size=pt.batch_size, lr=pt.lr,
                  weight_decay=pt.weight_decay, warmup_steps=pt.warmup_steps, seed=r.seed,
                  checkpoint_dir=str(checkpoint_dir))


REFERENCE_FORMAT = 2  # bump when what the reference stage writes changes (2: recipe, weights, eval_key)


def reference(b, model_dir: Path, model_key: str, device: str | None = None) -> tuple[Path, str]:
    """The fp32 reference: ``b.reference_dir`` (``--reference``) after checking it was made for this
    model and eval set, else computed in the shared cache; ``device`` None = cuda when present."""
    from .verify import refstore
    r = b.plan.recipe
    ekey = refstore.eval_key(r.data.eval, r.seed)
    stored = getattr(b, "reference_dir", None)
    if stored is not None:
        t0 = time.perf_counter()
        info = refstore.check_stored(stored, r, model_key, ekey, refstore.weights_sha256(model_dir),
                                     b.versions["torch"])
        key = refstore.stored_key(stored)
        b.cache.note("reference", key, "stored", path=str(stored), device=info["device"])
        b.progress.step(f"reference (stored, fp32 torch on {info['device']})", "stored", time.perf_counter() - t0)
        return Path(stored), key
    key = stable_hash("reference", model_key, r.data.eval, r.seed, REFERENCE_FORMAT, *([device] if device else []))

    def run(tmp: Path):
        from .evalset import load_eval_groups
        from .models._preprocess import preprocess_images
        from .verify.reference import compute_reference
        m = _load(model_dir)
        f = m.facts
        groups = load_eval_groups(r.data.eval, f.image_size, r.seed)
        ref = compute_reference(
            m.image, m.text, m.tokenizer.encode,
            lambda imgs: preprocess_images(imgs, f.image_size, f.mean, f.std, f.resize_mode).numpy(),
            groups, m.logit_scale, model_key, device=device)
        ref.info.update(recipe=r.name, teacher=r.teacher, eval_key=ekey, format=REFERENCE_FORMAT,
                        weights_sha256=refstore.weights_sha256(model_dir))
        # bad eval images skipped under on_bad_image: skip are counted where the bundle keeps them
        ref.info["counts"]["skipped_images"] = sum(g.skipped for g in groups)
        ref.info["skipped"] = {g.name: {"skipped": g.skipped, "first": list(g.bad)} for g in groups if g.skipped}
        ref.save(tmp)
        (tmp / "groups.json").write_text(json.dumps({g.name: {
            "captions": g.captions, "class_names": list(g.class_names),
            "class_prompts": g.class_prompts} for g in groups}, ensure_ascii=False))

    d = b.timed(f"reference (fp32 torch{', ' + device if device else ''})", "reference", key, b.cache, run)
    return d, key


def _calibration(model, tower: str, n: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    from .evalset import calibration_images
    from .models._preprocess import preprocess_images
    f = model.facts
    images, caps = calibration_images(n, f.image_size, seed)
    if tower in ("image", "zero-shot-head"):
        px = preprocess_images(images, f.image_size, f.mean, f.std, f.resize_mode).numpy()
        return [(np.ascontiguousarray(px[i:i + 1]),) for i in range(n)]
    ids = model.tokenizer.encode(caps).astype(np.int32)
    return [(np.ascontiguousarray(ids[i:i + 1]),) for i in range(n)]


def _entry(b, backend: str):
    return next(e for e in b.plan.target.backends if e.backend == backend)


def _load_artifact(folder: Path):
    from .backends.base import Artifact
    return Artifact.from_dict(json.loads((folder / "artifact.json").read_text()), base=folder)


def artifact(b, p: PlannedArtifact, model_dir: Path, model_key: str, ref_dir: Path, ref_key: str):
    from .backends import BACKENDS
    from .backends.base import ExportSpec
    from .labels import read_head, write_head
    from .pipeline import ArtifactResult
    r, t = b.plan.recipe, b.plan.target
    entry = _entry(b, p.backend)
    q = r.quantization
    label = f"{p.backend} {p.tower} {p.quant}"
    head = p.tower == "zero-shot-head"
    ls = b.plan.labels
    if head and ls is None:  # make_plan refuses this; a hand-made plan gets the same message
        raise ConfigError("the zero-shot-head tower needs a label set; pass --labels labels.txt")
    export_key = stable_hash("export", model_key, p, entry.options, q.params.get(p.quant, {}),
                             q.keep_float, q.calibration_samples if p.quant in CALIBRATED else 0,
                             t.batch_size, b.versions, *([ls.labels, ls.templates] if head else []))
    backend = BACKENDS.get(p.backend)

    def run_export(tmp: Path):
        from .models import reparameterize
        m = _load(model_dir)
        reparameterize(m)  # fold MobileOne/RepMixer branches: same outputs, one conv each
        tower = m.tower("zero-shot-head", ls.labels, ls.templates) if head else m.tower(p.tower)
        if head:  # the fp32 head's label matrix: verify compares the artifact with it
            write_head(tmp, tower, ls)
        example = tuple(x.contiguous() for x in tower.example_inputs(t.batch_size))
        ins, outs = _IO_NAMES[p.tower]
        calib = _calibration(m, p.tower, q.calibration_samples, r.seed) if p.quant in CALIBRATED else None
        options = dict(entry.options)
        options.update(q.params.get(p.quant, {}))
        if q.keep_float:
            options["keep_float"] = list(q.keep_float)
        metadata = {"author": "edgeclip", "license": "see the teacher's license",
                    "description": f"{r.name} {p.tower} tower ({p.quant})",
                    "preprocessing": json.dumps(m.facts.to_dict())}
        if head:
            metadata.update({"input:pixels": "float32[B,3,H,W] RGB pixels, resized and normalized (see preprocessing)",
                             "output:logits": f"float32[B,{len(ls.labels)}] logit_scale x cosine per label, "
                                              "in the order of labels/labels.json"})
        spec = ExportSpec(tower=p.tower, quant=p.quant, input_names=ins, output_names=outs,
                          calibration=calib, options=options, name=f"{p.tower}-{p.quant}", metadata=metadata)
        art = backend.export(tower, example, spec, tmp)
        for i, x in enumerate(example):  # bench feeds these: token ids valid for this vocabulary
            np.save(tmp / f"example-{i}.npy", x.cpu().numpy())
        d = art.to_dict()
        d["path"] = Path(art.path).name
        (tmp / "artifact.json").write_text(json.dumps(d, indent=2, default=str))

    export_dir = b.timed(f"export {label}", "export", export_key, b.cache, run_export, quiet=True)
    art = _load_artifact(export_dir)
    result = ArtifactResult(planned=p, artifact_dir=export_dir, artifact=art.to_dict())

    verify_key = stable_hash("verify", export_key, ref_key, MIL_INTERPRETER_VERSION)

    def run_verify(tmp: Path):
        from .verify.reference import Reference
        from .verify.run import check_artifact  # shared with `edgeclip verify BUNDLE`
        (tmp / "verify.json").write_text(json.dumps(check_artifact(art, Reference.load(ref_dir), t.bench.threads,
                                                                   head=read_head(export_dir) if head else None)))

    vdir = b.timed(f"verify {label}", "verify", verify_key, b.cache, run_verify, quiet=True)
    v = json.loads((vdir / "verify.json").read_text())
    result.runner, result.metrics = v["runner"], v["metrics"]
    result.emulated, result.verified = bool(v.get("emulated")), v["runner"] is not None

    bench_key = stable_hash("bench", export_key, t.bench, b.versions)

    def run_bench(tmp: Path):
        from .verify.latency import measure_isolated
        if result.runner is None or result.emulated:  # an interpreter's latency means nothing
            (tmp / "bench.json").write_text(json.dumps(None))
            return
        absjson = tmp / "artifact.json"  # with the absolute path the worker loads
        absjson.write_text(json.dumps(art.to_dict(), default=str))
        lat = measure_isolated(absjson, _bench_inputs(art, export_dir), t.bench.warmup, t.bench.runs, t.bench.threads)
        (tmp / "bench.json").write_text(json.dumps(lat.to_dict()))

    bdir = b.timed(f"bench {label}", "bench", bench_key, b.local, run_bench, quiet=True)
    result.latency = json.loads((bdir / "bench.json").read_text())
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


def select(b, results) -> None:
    """Gate each artifact, then ship per (backend, tower) the smallest variant that passed the
    accuracy gates, never a quantized one slower than its float sibling beyond the target's
    ``max_latency_ratio_vs_fp32``."""
    from .verify.gate import check_accuracy
    r, t = b.plan.recipe, b.plan.target
    for res in results:
        entry = _entry(b, res.planned.backend)
        th = t.thresholds.merged(entry.thresholds).merged(r.thresholds)
        res.thresholds = th
        if res.verified:
            res.shortfalls = check_accuracy(_records(b, res), {res.name: th})
    groups: dict[tuple, list] = {}
    for res in results:
        groups.setdefault((res.planned.backend, res.planned.tower), []).append(res)
    for (_backend, _tower), rs in groups.items():
        floats = [x for x in rs if x.planned.quant in ("fp32", "fp16") and x.latency]
        base = min((x.latency["p50_ms"] for x in floats), default=None)
        ok = []
        for x in rs:
            ratio = x.thresholds.max_latency_ratio_vs_fp32
            if x.verified and x.shortfalls:
                x.why_not_shipped = "below thresholds: " + ", ".join(s.metric for s in x.shortfalls)
            elif (ratio and base and x.latency and x.planned.quant not in ("fp32", "fp16")
                  and x.latency["p50_ms"] > base * ratio):
                x.why_not_shipped = (f"slower than its float sibling ({x.latency['p50_ms']:.2f} ms vs "
                                     f"{base:.2f} ms)")
            else:
                ok.append(x)
        verified = [x for x in ok if x.verified]
        if verified:  # accurate enough and not slower than float: the smallest wins
            best = min(verified, key=lambda x: (x.artifact["size_bytes"],
                                                x.latency["p50_ms"] if x.latency else 0.0))
        elif ok:  # nothing could run here (CoreML off macOS): ship the first, float, variant
            best = ok[0]
        else:
            continue
        best.shipped = True
        for x in ok:
            if x is not best:
                x.why_not_shipped = f"{best.planned.quant} was chosen" + (
                    " (smaller, passed the same gates)" if best.verified
                    else " (the float variant, as nothing could be verified here)")


def _records(b, res) -> list:
    from .verify.report import METRIC_UNITS, Record
    out = []
    base = dict(model=b.plan.recipe.name, target=b.plan.target.name, backend=res.planned.backend,
                tower=res.planned.tower, quant=res.planned.quant, runner=res.runner or "none",
                emulated=res.emulated)
    for k, v in res.metrics.items():
        if k in METRIC_UNITS:
            out.append(Record(**base, metric=k, value=v))
    if res.latency:
        for k, m in (("p50_ms", "latency_p50_ms"), ("p90_ms", "latency_p90_ms"),
                     ("load_ms", "load_ms"), ("peak_rss_mb", "peak_rss_mb")):
            out.append(Record(**base, metric=m, value=res.latency[k]))
    out.append(Record(**base, metric="size_mb", value=res.artifact["size_bytes"] / 1e6))
    if res.artifact.get("delegated_fraction") is not None:
        out.append(Record(**base, metric="delegated_fraction", value=res.artifact["delegated_fraction"]))
    compute = res.artifact.get("extra", {}).get("compute_delegated_fraction")
    if compute is not None:
        out.append(Record(**base, metric="compute_delegated_fraction", value=compute))
    return out


def bundle(b, model_dir: Path, ref_dir: Path, results) -> Path:
    from . import __version__
    from .bundle import remove_stale, write_manifest
    from .bundlezip import write_zip, zip_path
    from .labels import LABELS_JSON, bundle_labels
    from .pipeline import copy_into
    from .snippets import write_snippets
    from .verify import refstore
    from .verify.report import write_report
    out, r, t = b.plan.out_dir, b.plan.recipe, b.plan.target
    t0 = time.perf_counter()
    m = _load(model_dir)
    (out / "artifacts").mkdir(parents=True, exist_ok=True)
    tok_dir = out / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    tok_files = [Path(p).name for p in m.tokenizer.export(tok_dir)]
    samples = ["a photo of a cat", "a small red square left of a blue circle", "一只猫的照片",
               "Hello, World! 123", "a " * 100]
    (tok_dir / "test_vectors.json").write_text(json.dumps(m.tokenizer.test_vectors(samples), ensure_ascii=False, indent=1))
    # the reference outputs travel with the bundle: `edgeclip verify BUNDLE` re-runs the checks on them
    stored = getattr(b, "reference_dir", None)
    ref = refstore.provenance(ref_dir, "stored" if stored else "computed", stored)
    ref["files"] = refstore.copy_into_bundle(ref_dir, out / "reference")
    records, arts, keep = [], [], set()
    for res in results:
        records += _records(b, res)
        src = Path(res.artifact["path"])
        entry = {"file": f"artifacts/{src.name}", "backend": res.planned.backend,
                 "format": src.suffix, "tower": res.planned.tower, "quant": res.planned.quant,
                 "inputs": _tensors(res.artifact, "input"), "outputs": _tensors(res.artifact, "output"),
                 "size_bytes": res.artifact["size_bytes"], "shipped": res.shipped,
                 "why_not_shipped": res.why_not_shipped, "runtime": res.runner,
                 "metrics": {**res.metrics, **({"latency_p50_ms": res.latency["p50_ms"]} if res.latency else {})},
                 "delegated_fraction": res.artifact.get("delegated_fraction"),
                 "compute_delegated_fraction": res.artifact.get("extra", {}).get("compute_delegated_fraction"),
                 "not_delegated": res.artifact.get("not_delegated", []), "notes": res.artifact.get("notes", []),
                 "thresholds": {k: v for k, v in vars(res.thresholds).items() if v is not None}
                 if res.thresholds else {}}
        if res.shipped:
            dst = out / "artifacts" / f"{res.planned.backend}-{src.name}"
            copy_into(src, dst)
            entry["file"] = f"artifacts/{dst.name}"
            if res.planned.tower == "zero-shot-head":  # logits come in the order of labels.json
                entry["labels_file"] = LABELS_JSON
            arts.append(entry)
            keep.add(dst.name)
    remove_stale(out / "artifacts", keep)  # an earlier build's artifacts must not ride along
    from .verify.distill_summary import distill_md, distill_summaries
    distill = distill_summaries(getattr(b, "distill_dirs", []))
    write_report(out, records, extra={"build": {"recipe": r.name, "target": t.name}, "reference": ref,
                                      "distill": distill},
                 extra_md=refstore.provenance_md(ref) + ("\n" + distill_md(distill) if distill else ""))
    f = m.facts
    manifest = {
        "edgeclip_version": __version__,
        "model": {"recipe": r.name, "uri": r.teacher if not r.distill else f"{r.name}:student",
                  "embed_dim": f.embed_dim, "logit_scale": float(m.logit_scale), "weights": f.weights,
                  "params": {"image": f.params_image, "text": f.params_text},
                  "flops": {"image": f.flops_image, "text": f.flops_text}, "distill": distill},
        "target": {"name": t.name, "platform": t.platform},
        "preprocessing": {"image_size": f.image_size, "mean": list(f.mean), "std": list(f.std),
                          "resize_mode": f.resize_mode, "input_layout": "NCHW", "input_dtype": "float32",
                          "in_graph": False},
        "tokenizer": {"type": m.tokenizer.kind, "context_length": m.tokenizer.context_length,
                      "vocab_size": m.tokenizer.vocab_size,
                      "files": [f"tokenizer/{n}" for n in tok_files], "test_vectors": "tokenizer/test_vectors.json"},
        "labels": bundle_labels(out, b.plan.labels, m),
        "artifacts": arts,
        "reference": ref,
        "bench": {"warmup": t.bench.warmup, "runs": t.bench.runs, "threads": t.bench.threads},
        "versions": b.versions,
    }
    manifest["snippets"] = write_snippets(out, manifest)  # from the manifest alone, as an app developer sees it
    manifest = write_manifest(out, manifest)
    write_zip(out, manifest)  # <out>.zip beside the folder: manifest + exactly the files it hashes
    b.progress.step(f"bundle (+ {zip_path(out).name})", "done", time.perf_counter() - t0)
    return out / "report.md"


def _tensors(art: dict, kind: str) -> list[dict]:
    return [{"name": n, "shape": list(s), "dtype": d} for n, s, d in
            zip(art[f"{kind}_names"], art[f"{kind}_shapes"], art[f"{kind}_dtypes"])]
