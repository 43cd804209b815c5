"""The bundle stage: what an app takes — shipped artifacts, tokenizer files and test vectors, the
label set, the reference outputs, reports, code snippets, ``manifest.json`` and ``<out>.zip``.

The manifest's artifact entries and its reader live together in ``edgeclip.bundle.manifest``;
this stage gathers the build's facts into it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ... import __version__
from ..._io import copy_atomic, write_text_atomic
from ...bundle import manifest as bundle_manifest
from ..context import stage_model
from .mixed import mixed_md
from ...verify.profile import profile_md
from .select import records as result_records, selection_md, selection_rows
from .twin import ranking_device

__all__ = ["bundle", "TOKENIZER_SAMPLES"]


def _preprocessing(f, in_graph: bool, arts: list[dict]) -> dict:
    """What an app does to a decoded image before the image artifacts: with in-graph
    preprocessing only the resize to image_size (the artifact casts, normalizes and transposes)."""
    out = {"image_size": f.image_size, "mean": list(f.mean), "std": list(f.std), "resize_mode": f.resize_mode,
           "input_layout": "NCHW", "input_dtype": "float32", "in_graph": bool(in_graph)}
    if in_graph:
        dtypes = sorted({a["inputs"][0]["dtype"] for a in arts if a["tower"] in ("image", "zero-shot-head")})
        out.update(input_layout="NHWC", input_dtype="/".join(dtypes) or "uint8")
    return out

# the bundle's tokenizer test vectors: an app checks its tokenizer against these ids. They cover
# CJK, emoji (a ZWJ sequence too), accents, HTML entities, repeated and odd whitespace,
# full-width forms and curly quotes (ftfy's fixes), the empty text and text longer than any context.
TOKENIZER_SAMPLES = ["a photo of a cat", "a small red square left of a blue circle", "一只猫的照片",
                     "两个带条纹的蓝色小正方形，白色格子背景", "a red 圆形 🦄 and a 🐈‍⬛",
                     "Crème brûlée à São Paulo, naïve Ærøskøbing", "Tom &amp; Jerry &lt;3 it&#39;s &quot;fine&quot;",
                     "  a   lot\tof \n spaces  ", "ＦＵＬＬ width “curly” ‘quotes’ and the ﬁ ligature",
                     "Hello, World! 123", "", "a " * 100]


def bundle(ctx, model_dir: Path, ref_dir: Path, results) -> Path:
    from ...bundle.archive import write_zip, zip_path
    from ...bundle.labels import LABELS_JSON, bundle_labels
    from ...bundle.snippets import write_snippets
    from ...verify import refstore
    from ...verify.distill_summary import distill_md, distill_summaries
    from ...verify.reference import Reference, margins_md, reference_margins, reference_zero_shot
    from ...verify.report import machine_info, write_report, zero_shot_md
    out, r, t = ctx.out, ctx.plan.recipe, ctx.plan.target
    t0 = time.perf_counter()
    m = stage_model(model_dir)
    (out / "artifacts").mkdir(parents=True, exist_ok=True)
    tok_dir = out / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    tok_files = [Path(p).name for p in m.tokenizer.export(tok_dir)]
    write_text_atomic(tok_dir / "test_vectors.json",
                      json.dumps(m.tokenizer.test_vectors(TOKENIZER_SAMPLES), ensure_ascii=False, indent=1))
    # the reference outputs travel with the bundle: `edgeclip verify BUNDLE` re-runs the checks on them
    stored = ctx.reference_dir
    ref = refstore.provenance(ref_dir, "stored" if stored else "computed", stored)
    ref["files"] = refstore.copy_into_bundle(ref_dir, out / "reference")
    records, arts, keep, recommended = [], [], set(), {}
    for res in results:
        records += result_records(ctx, res)
        if not res.shipped:
            continue
        src = Path(res.artifact["path"])
        dst = out / "artifacts" / f"{res.planned.backend}-{src.name}"
        copy_atomic(src, dst)
        keep.add(dst.name)
        if res.recommended:
            recommended[res.planned.tower] = f"artifacts/{dst.name}"
        entry = bundle_manifest.artifact_entry(
            res.artifact, file=f"artifacts/{dst.name}", shipped=True, why_not_shipped=res.why_not_shipped,
            runtime=res.runner,
            metrics={**res.metrics, **({"latency_p50_ms": res.latency["p50_ms"]} if res.latency else {})},
            thresholds={k: v for k, v in vars(res.thresholds).items() if v is not None} if res.thresholds else {},
            devices=res.devices)
        if res.planned.tower == "zero-shot-head":  # logits come in the order of labels.json
            entry["labels_file"] = LABELS_JSON
        arts.append(entry)
    bundle_manifest.remove_stale(out / "artifacts", keep)  # an earlier build's artifacts must not ride along
    distill = distill_summaries(ctx.distill_dirs)
    reference = Reference.load(ref_dir)
    margins = reference_margins(reference)
    groups = reference_zero_shot(reference)
    machine = {**machine_info(), "bench_threads": t.bench.threads,
               **({"yardstick": ctx.yardstick} if ctx.yardstick else {})}
    calib = ctx.calibration.info if ctx.calibration is not None else None
    profiles = [(f"{res.name}{' (shipped)' if res.shipped else ''}", (res.latency or {}).get("profile"))
                for res in results]
    sens = out / "sensitivity.json"  # the mixed-precision stage's layer rankings, when it ran
    if ctx.sensitivity:
        write_text_atomic(sens, json.dumps(ctx.sensitivity, indent=1))
    else:
        sens.unlink(missing_ok=True)
    write_report(out, records, machine=machine, extra={"build": {"recipe": r.name, "target": t.name}, "reference": ref,
                                      "calibration": calib,
                                      "reference_margins": margins, "zero_shot_groups": groups, "distill": distill,
                                      "mixed_precision": ctx.mixed,
                                      "selection": selection_rows(results, ranking_device(t)),
                                      "profiles": {label: p for label, p in profiles if p}},
                 extra_md="\n\n".join(x for x in (selection_md(results, t), mixed_md(ctx.mixed), _calibration_md(calib),
                                                   zero_shot_md(groups, records),
                                                   refstore.provenance_md(ref),
                                                   margins_md(margins), distill_md(distill) if distill else "",
                                                   profile_md(profiles)) if x))
    f = m.facts
    manifest = {
        "edgeclip_version": __version__,
        "model": {"recipe": r.name, "uri": r.teacher if not r.distill else f"{r.name}:student",
                  "embed_dim": f.embed_dim, "logit_scale": float(m.logit_scale), "weights": f.weights,
                  "params": {"image": f.params_image, "text": f.params_text},
                  "flops": {"image": f.flops_image, "text": f.flops_text}, "distill": distill},
        "target": {"name": t.name, "platform": t.platform},
        "preprocessing": _preprocessing(f, t.in_graph_preprocess, arts),
        "tokenizer": {"type": m.tokenizer.kind, "context_length": m.tokenizer.context_length,
                      "vocab_size": m.tokenizer.vocab_size,
                      "files": [f"tokenizer/{n}" for n in tok_files], "test_vectors": "tokenizer/test_vectors.json",
                      "format": "huggingface-tokenizers", "pad_id": m.tokenizer.pad_id, "eot_id": m.tokenizer.eot_id,
                      "readers": bundle_manifest.tokenizer_readers(t.platform),
                      "caveats": bundle_manifest.tokenizer_caveats(
                          json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8")), t.platform)},
        "labels": bundle_labels(out, ctx.plan.labels, m),
        "artifacts": arts,
        "recommended": recommended,  # per tower, across backends, by the target's select policy
        "select": {"policy": t.select, **{k: v for k, v in vars(t.budgets).items() if v is not None}},
        "reference": ref,
        "bench": {"warmup": t.bench.warmup, "runs": t.bench.runs, "threads": t.bench.threads, "rounds": t.bench.rounds},
        "versions": ctx.versions,
    }
    manifest["snippets"] = write_snippets(out, manifest)  # from the manifest alone, as an app developer sees it
    manifest = bundle_manifest.write_manifest(out, manifest)
    write_zip(out, manifest)  # <out>.zip beside the folder: manifest + exactly the files it hashes
    ctx.progress.step(f"bundle (+ {zip_path(out).name})", "done", time.perf_counter() - t0)
    return out / "report.md"


def _calibration_md(info: dict | None) -> str:
    if not info:
        return ""
    return (f"Calibration of the statically quantized variants: {info['samples']} image-caption pairs from "
            f"{info['description']} (chosen by {info['chosen_by']}"
            + (f"; {info['skipped']} bad images skipped" if info.get("skipped") else "")
            + f"), digest {info['sha256']}.")
