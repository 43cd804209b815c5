"""Accuracy metrics of an artifact's outputs against the fp32 reference (pure numpy).

All functions take embeddings as ``[N, D]`` arrays (scores ``[N, K]``). Image/text embeddings are expected to be
L2-normalized by the towers; the metrics renormalize anyway so an artifact that lost its
normalization is judged on direction, and PSNR catches the scale.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "TIE_MARGIN", "cosine_rows", "psnr_db", "top1_agreement", "retrieval_agreement", "zero_shot_accuracy",
    "embedding_metrics", "agrees_within", "top_gaps", "margin_summary",
]

# Agreement metrics count a choice that scores within this much (cosine) of the reference's best,
# by the reference's own scores, as agreeing: the reference cannot tell such near-ties apart, and
# float rounding of an exact fp32 artifact reorders them (a random-init ViT-B/32's retrieval
# scores differ in the 6th decimal). Far below any decision a trained model makes (see the
# margins every report lists).
TIE_MARGIN = 1e-4


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_rows(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity between reference and artifact outputs."""
    ref, out = np.asarray(ref), np.asarray(out)
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs artifact {out.shape}")
    return np.sum(_unit(ref) * _unit(out), axis=-1)


def psnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """PSNR with the reference's peak-to-peak range as signal (AI Hub's convention)."""
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    mse = float(np.mean((ref - out) ** 2))
    peak = float(ref.max() - ref.min()) or 1.0
    if mse == 0.0:
        return float("inf")
    return 10.0 * np.log10(peak * peak / mse)


def agrees_within(ref_scores: np.ndarray, choices: np.ndarray, margin: float) -> np.ndarray:
    """Per row: does any chosen column score, by the reference's own scores, within ``margin`` of
    the reference's best? ``choices``: ``[N, k]`` column indices."""
    best = ref_scores.max(axis=1, keepdims=True)
    return (np.take_along_axis(ref_scores, choices, axis=1) >= best - margin).any(axis=1)


def top1_agreement(ref_scores: np.ndarray, out_scores: np.ndarray, margin: float = TIE_MARGIN) -> float:
    """Fraction of rows whose artifact argmax is the reference's choice, or ties with it: scores
    within ``margin`` of the reference's best by the reference's scores (float rounding may reorder
    near-ties, which is no disagreement). ``margin`` is in the scores' units."""
    ref_scores = np.asarray(ref_scores, dtype=np.float64)
    choice = np.argmax(np.asarray(out_scores), axis=-1).reshape(-1, 1)
    return float(np.mean(agrees_within(ref_scores, choice, margin)))


def retrieval_agreement(ref_q: np.ndarray, ref_g: np.ndarray, out_q: np.ndarray,
                        out_g: np.ndarray, k: int = 1, margin: float = TIE_MARGIN) -> float:
    """Fraction of queries whose artifact top-k gallery items include the reference's best, or an
    item within ``margin`` (cosine) of it by the reference's similarities.

    Queries are e.g. images and the gallery their captions (image→text retrieval).
    """
    ref_sims = _unit(ref_q) @ _unit(ref_g).T
    topk = np.argsort(-(_unit(out_q) @ _unit(out_g).T), axis=1, kind="stable")[:, :k]
    return float(np.mean(agrees_within(ref_sims, topk, margin)))


def top_gaps(scores: np.ndarray) -> np.ndarray:
    """Per row, best minus second-best score (rows with fewer than two columns are left out)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] < 2:
        return np.zeros(0)
    top2 = -np.sort(-scores, axis=1)[:, :2]
    return top2[:, 0] - top2[:, 1]


def margin_summary(gaps, margin: float = TIE_MARGIN) -> dict[str, float]:
    """How decisive a set of choices is: the 5th percentile and median of their best-vs-second
    gaps, and the fraction within ``margin`` (ties the agreement metrics forgive)."""
    gaps = np.asarray(gaps, dtype=np.float64)
    if not len(gaps):
        return {}
    return {"rows": int(len(gaps)), "gap_p5": float(np.percentile(gaps, 5)), "gap_p50": float(np.median(gaps)),
            "tie_fraction": float(np.mean(gaps <= margin)), "margin": float(margin)}


def zero_shot_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, -1) == np.asarray(labels)))


def embedding_metrics(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    cos = cosine_rows(ref, out)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "psnr_db": psnr_db(ref, out)}
