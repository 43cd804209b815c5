"""The reference bundle (DESIGN.md): fp32 torch outputs on the fixed evaluation set.

``compute_reference`` runs the fp32 towers (on CUDA when present, else CPU, recorded) over
the evaluation groups and returns a ``Reference``; ``save``/``load`` write ``reference.npz`` +
``reference.json`` so a reference made on a GPU machine can be reused by CPU-only CI.
``evaluate`` scores one artifact's outputs against it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .._io import write_json_atomic
from .metrics import (TIE_MARGIN, agrees_within, embedding_metrics, margin_summary, retrieval_agreement,
                      top1_agreement, top_gaps)

__all__ = ["Reference", "compute_reference", "evaluate", "evaluate_head", "class_embeddings", "reference_margins",
           "margins_md", "group_info", "reference_zero_shot"]


@dataclass
class Reference:
    arrays: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)

    def __getattr__(self, name):
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        np.savez_compressed(folder / "reference.npz", **self.arrays)
        write_json_atomic(folder / "reference.json", self.info)

    @classmethod
    def load(cls, folder: Path) -> "Reference":
        folder = Path(folder)
        with np.load(folder / "reference.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(arrays, json.loads((folder / "reference.json").read_text()))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_embeddings(prompt_emb: np.ndarray, prompt_class: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean of each class's prompt embeddings, renormalized (CLIP's prompt ensembling)."""
    out = np.zeros((n_classes, prompt_emb.shape[1]), np.float64)
    for c in range(n_classes):
        rows = prompt_emb[prompt_class == c]
        if len(rows):
            out[c] = rows.mean(0)
    return _unit(out).astype(np.float32)


def _run_torch(module, batches: np.ndarray, device: str, batch_size: int = 32) -> np.ndarray:
    import torch
    outs = []
    with torch.inference_mode():
        for i in range(0, len(batches), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(batches[i:i + batch_size])).to(device)
            outs.append(module(x).float().cpu().numpy())
    return np.concatenate(outs).astype(np.float32)


def compute_reference(image_tower, text_tower, encode_text: Callable[[list[str]], np.ndarray],
                      pixels_of: Callable[[np.ndarray], np.ndarray], groups, logit_scale: float,
                      model_hash: str, device: str | None = None) -> Reference:
    """``groups`` are ``edgeclip.build.evalset.Group``; English prompts drive zero-shot metrics."""
    import torch
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pixels, images, image_group, labels = [], [], [], []
    cap_text, cap_image, cap_lang = [], [], []
    prm_text, prm_class = [], []
    class_names, class_group, offset, n_img = [], [], 0, 0
    for gi, g in enumerate(groups):
        pixels.append(pixels_of(g.images))
        images.append(np.asarray(g.images, np.uint8))
        n = len(g.images)
        image_group += [gi] * n
        labels += (list(g.labels + offset) if g.labels is not None else [-1] * n)
        for lang, caps in g.captions.items():
            cap_text += caps
            cap_image += list(range(n_img, n_img + n))
            cap_lang += [lang] * n
        if g.class_prompts:
            for c, templates in enumerate(g.class_prompts["en"]):
                prm_text += templates
                prm_class += [offset + c] * len(templates)
            class_names += list(g.class_names)
            class_group += [gi] * len(g.class_names)
            offset += len(g.class_names)
        n_img += n
    a: dict[str, np.ndarray] = {
        "pixels": np.ascontiguousarray(np.concatenate(pixels).astype(np.float32)),
        # the decoded uint8[N,S,S,3] images the pixels came from: artifacts with in-graph
        # preprocessing take these
        "images": np.ascontiguousarray(np.concatenate(images)),
        "image_group": np.array(image_group, np.int32), "labels": np.array(labels, np.int64),
        "caption_ids": encode_text(cap_text).astype(np.int32),
        "caption_image": np.array(cap_image, np.int64), "caption_lang": np.array(cap_lang),
        "prompt_ids": encode_text(prm_text).astype(np.int32) if prm_text else np.zeros((0, 1), np.int32),
        "prompt_class": np.array(prm_class, np.int64), "class_group": np.array(class_group, np.int32),
    }
    img = image_tower.to(device).eval()
    txt = text_tower.to(device).eval()
    a["image_emb"] = _run_torch(img, a["pixels"], device)
    a["text_emb"] = _run_torch(txt, a["caption_ids"], device)
    a["prompt_emb"] = _run_torch(txt, a["prompt_ids"], device) if prm_text else np.zeros((0, a["image_emb"].shape[1]), np.float32)
    img.to("cpu")
    txt.to("cpu")
    info = {"device": device, "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "torch": torch.__version__, "model_hash": model_hash, "logit_scale": float(logit_scale),
            "groups": [g.name for g in groups], "class_names": class_names,
            "counts": {"images": int(n_img), "captions": len(cap_text), "prompts": len(prm_text)}}
    return Reference(a, info)


def _labelled_rows(ref: Reference):
    """Labelled images, and for each the global indices of its own group's classes."""
    rows, logits_idx = np.flatnonzero(ref.labels >= 0), []
    for i in rows:
        logits_idx.append(np.flatnonzero(ref.class_group == ref.image_group[i]))
    return rows, logits_idx


def _group_scores(emb, class_emb, rows, cls_idx) -> list[np.ndarray]:
    """Per labelled image, its cosines with its own group's classes (groups differ in class count)."""
    return [(class_emb[cls_idx[k]] @ emb[i]).astype(np.float64) for k, i in enumerate(rows)]


def _group_argmax(scores, cls_idx) -> np.ndarray:
    return np.array([cls_idx[k][np.argmax(s)] for k, s in enumerate(scores)])


def _group_agreement(ref_scores, out_pred, cls_idx, margin: float = TIE_MARGIN) -> float:
    """Zero-shot top-1 agreement, tie-aware: the artifact's class agrees when, by the reference's
    own cosines over the image's group's classes, it scores within ``margin`` of the best."""
    agree = [agrees_within(s[None], np.flatnonzero(cls_idx[k] == out_pred[k]).reshape(1, 1), margin)[0]
             for k, s in enumerate(ref_scores)]
    return float(np.mean(agree))


def reference_margins(ref: Reference, margin: float = TIE_MARGIN) -> dict[str, dict]:
    """How decisive the reference's own choices are (best minus second-best cosine): zero-shot
    per labelled image over its group's classes, and image->text retrieval over English captions."""
    out: dict[str, dict] = {}
    en = ref.caption_lang == "en"
    if en.any():
        out["retrieval_i2t"] = margin_summary(top_gaps(_unit(ref.image_emb) @ _unit(ref.text_emb[en]).T), margin)
    n_classes = len(ref.class_group)
    if n_classes:
        ref_cls = class_embeddings(ref.prompt_emb, ref.prompt_class, n_classes)
        rows, cls_idx = _labelled_rows(ref)
        gaps = np.concatenate([top_gaps(sc[None]) for sc in _group_scores(ref.image_emb, ref_cls, rows, cls_idx)]
                              or [np.zeros(0)])
        out["zero_shot"] = margin_summary(gaps, margin)
    return {k: v for k, v in out.items() if v}


def margins_md(margins: dict[str, dict]) -> str:
    """The report's line on how decisive the reference is, and what the agreement metrics forgive."""
    parts = [f"{name.replace('_', ' ')}: best-vs-second cosine gap p5 {m['gap_p5']:.2g}, median {m['gap_p50']:.2g}, "
             f"{m['tie_fraction']:.1%} of {m['rows']} within {m['margin']:g}" for name, m in margins.items()]
    if not parts:
        return ""
    return ("Reference decisiveness (" + "; ".join(parts) + "). Top-1 and R@1 agreement count an artifact's "
            "choice within that margin of the reference's best, by the reference's own scores, as agreeing.")


def evaluate(ref: Reference, tower: str, outputs: dict[str, np.ndarray]) -> dict[str, float]:
    """Metrics of an artifact's outputs. Image towers give ``{"image": [N,D]}``; text towers
    ``{"text": [M,D], "prompt": [P,D]}`` (captions then prompts, as in the reference)."""
    n_classes = len(ref.class_group)
    ref_cls = class_embeddings(ref.prompt_emb, ref.prompt_class, n_classes) if n_classes else None
    en = ref.caption_lang == "en"
    if tower == "image":
        out_img, out_cls = outputs["image"], ref_cls
        m = embedding_metrics(ref.image_emb, out_img)
        m["r1_agreement"] = retrieval_agreement(ref.image_emb, ref.text_emb[en], out_img, ref.text_emb[en], k=1)
        m["r5_agreement"] = retrieval_agreement(ref.image_emb, ref.text_emb[en], out_img, ref.text_emb[en], k=5)
    elif tower == "text":
        out_img = ref.image_emb
        out_cls = class_embeddings(outputs["prompt"], ref.prompt_class, n_classes) if n_classes else None
        both_ref = np.concatenate([ref.text_emb, ref.prompt_emb])
        both_out = np.concatenate([outputs["text"], outputs["prompt"]])
        m = embedding_metrics(both_ref, both_out)
        m["r1_agreement"] = retrieval_agreement(ref.image_emb, ref.text_emb[en], ref.image_emb, outputs["text"][en], k=1)
        m["r5_agreement"] = retrieval_agreement(ref.image_emb, ref.text_emb[en], ref.image_emb, outputs["text"][en], k=5)
    else:
        raise ValueError(f"no evaluation for tower {tower!r}")
    if n_classes:
        rows, cls_idx = _labelled_rows(ref)
        ref_scores = _group_scores(ref.image_emb, ref_cls, rows, cls_idx)
        ref_pred = _group_argmax(ref_scores, cls_idx)
        out_pred = _group_argmax(_group_scores(out_img, out_cls, rows, cls_idx), cls_idx)
        m["top1_agreement"] = _group_agreement(ref_scores, out_pred, cls_idx)
        m["zero_shot_groups"] = _per_group(ref, rows, cls_idx, ref_scores, ref_pred, out_pred)
    return m


def reference_zero_shot(ref: Reference) -> dict[str, dict]:
    """Per labelled group: classes, chance, whether the model learned such labels, and the fp32
    reference's own zero-shot accuracy (where it means something)."""
    if not len(ref.class_group):
        return {}
    groups = evaluate(ref, "image", {"image": ref.image_emb})["zero_shot_groups"]
    info = group_info(ref)
    return {name: {"classes": info.get(name, {}).get("classes"), "source": info.get(name, {}).get("source", ""),
                   "chance": g["chance"], "in_domain": g["in_domain"], "n": g["n"],
                   "reference_top1": g["reference_top1"]} for name, g in groups.items()}


def group_info(ref: Reference) -> dict[str, dict]:
    """Per labelled group: source, classes, chance, in_domain (references made before edgeclip
    recorded it: chance from the class count, in_domain unknown, None)."""
    info = ref.info.get("group_info")
    if info is not None:
        return info
    names = ref.info.get("groups", [])
    out = {}
    for gi in sorted(set(ref.class_group.tolist())):
        k = int(np.sum(ref.class_group == gi))
        out[names[gi] if gi < len(names) else f"group-{gi}"] = {"source": "", "classes": k, "chance": 1.0 / k,
                                                                "in_domain": None}
    return out


def _per_group(ref, rows, cls_idx, ref_scores, ref_pred, out_pred) -> dict[str, dict]:
    """Zero-shot per evaluation group, never averaged across groups (class counts and domains
    differ): the artifact's agreement with the fp32 reference always; absolute accuracy (the
    artifact's and the reference's, beside chance) only where the model learned such labels."""
    info, names = group_info(ref), ref.info.get("groups", [])
    group_of_row = ref.image_group[rows]
    out = {}
    for gi in sorted(set(group_of_row.tolist())):
        name = names[gi] if gi < len(names) else f"group-{gi}"
        g = info.get(name, {})
        sel = np.flatnonzero(group_of_row == gi)
        truth = ref.labels[rows][sel]
        trained = g.get("in_domain") is not False
        out[name] = {"n": int(len(sel)), "chance": g.get("chance"), "in_domain": g.get("in_domain"),
                     "agreement": _group_agreement([ref_scores[k] for k in sel], out_pred[sel], [cls_idx[k] for k in sel]),
                     "top1": float(np.mean(out_pred[sel] == truth)) if trained else None,
                     "reference_top1": float(np.mean(ref_pred[sel] == truth)) if trained else None}
    return out



def evaluate_head(ref: Reference, logits: np.ndarray, label_emb: np.ndarray, logit_scale: float) -> dict[str, float]:
    """Metrics of a zero-shot head's ``[N, K]`` logits on the reference images against the fp32
    torch head, ``logit_scale * image_emb @ label_emb.T`` (the fp32 image tower's reference
    embeddings times the head's own label matrix): cosine and PSNR of the logit rows, top-1
    agreement of the predicted labels."""
    expected = (float(logit_scale) * ref.image_emb.astype(np.float64) @ np.asarray(label_emb, np.float64).T)
    logits = np.asarray(logits, np.float64)
    m = embedding_metrics(expected, logits)
    m["top1_agreement"] = top1_agreement(expected, logits, margin=TIE_MARGIN * float(logit_scale))
    return m
