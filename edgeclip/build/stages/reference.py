"""The reference stage: fp32 torch outputs of the built model on the recipe's evaluation set.

Computed once in the shared cache (on cuda when present), or taken from ``--reference DIR`` after
checking it was made for this model, eval set and weights; every artifact is verified against it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..._io import stable_hash
from ..context import stage_model

__all__ = ["REFERENCE_FORMAT", "reference"]

REFERENCE_FORMAT = 4  # bump when what the reference stage writes changes (2: recipe, weights, eval_key;
#                       3: images; 4: group_info)


def reference(ctx, model_dir: Path, model_key: str, device: str | None = None) -> tuple[Path, str]:
    """The fp32 reference: ``ctx.reference_dir`` (``--reference``) after checking it was made for this
    model and eval set, else computed in the shared cache; ``device`` None = cuda when present."""
    from ...verify import refstore
    r = ctx.plan.recipe
    ekey = refstore.eval_key(r.data.eval, r.seed)
    stored = ctx.reference_dir
    if stored is not None:
        t0 = time.perf_counter()
        info = refstore.check_stored(stored, r, model_key, ekey, refstore.weights_sha256(model_dir),
                                     ctx.versions["torch"])
        key = refstore.stored_key(stored)
        ctx.cache.note("reference", key, "stored", path=str(stored), device=info["device"])
        ctx.progress.step(f"reference (stored, fp32 torch on {info['device']})", "stored", time.perf_counter() - t0)
        return Path(stored), key
    key = stable_hash("reference", model_key, r.data.eval, r.seed, REFERENCE_FORMAT, *([device] if device else []))

    def run(tmp: Path):
        from ...models import preprocess_images
        from ...verify.reference import compute_reference
        from ..evalset import label_domain, labels_in_domain, load_eval_groups
        m = stage_model(model_dir)
        f = m.facts
        groups = load_eval_groups(r.data.eval, f.image_size, r.seed)
        ref = compute_reference(
            m.image, m.text, m.tokenizer.encode,
            lambda imgs: preprocess_images(imgs, f.image_size, f.mean, f.std, f.resize_mode).numpy(),
            groups, m.logit_scale, model_key, device=device)
        ref.info.update(recipe=r.name, teacher=r.teacher, eval_key=ekey, format=REFERENCE_FORMAT,
                        weights_sha256=refstore.weights_sha256(model_dir))
        # per labelled group: its chance level and whether the model learned such labels
        domain = label_domain(r)
        ref.info["label_domain"] = domain
        ref.info["group_info"] = {g.name: {"source": g.source, "classes": len(g.class_names),
                                           "chance": 1.0 / len(g.class_names),
                                           "in_domain": labels_in_domain(g.source, domain)}
                                  for g in groups if g.class_names}
        # bad eval images skipped under on_bad_image: skip are counted where the bundle keeps them
        ref.info["counts"]["skipped_images"] = sum(g.skipped for g in groups)
        ref.info["skipped"] = {g.name: {"skipped": g.skipped, "first": list(g.bad)} for g in groups if g.skipped}
        ref.save(tmp)
        (tmp / "groups.json").write_text(json.dumps({g.name: {
            "captions": g.captions, "class_names": list(g.class_names),
            "class_prompts": g.class_prompts} for g in groups}, ensure_ascii=False))

    d = ctx.timed(f"reference (fp32 torch{', ' + device if device else ''})", "reference", key, ctx.cache, run)
    return d, key
