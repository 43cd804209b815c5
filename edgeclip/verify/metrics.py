"""Accuracy metrics of an artifact's outputs against the fp32 reference (pure numpy).

All functions take embeddings as ``[N, D]`` arrays. Image/text embeddings are expected to be
L2-normalized by the towers; the metrics renormalize anyway so an artifact that lost its
normalization is judged on direction, and PSNR catches the scale.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "cosine_rows", "psnr_db", "top1_agreement", "retrieval_agreement", "zero_shot_accuracy",
    "embedding_metrics",
]


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


def top1_agreement(ref_logits: np.ndarray, out_logits: np.ndarray) -> float:
    """Fraction of rows whose argmax class is the same in both."""
    return float(np.mean(np.argmax(ref_logits, -1) == np.argmax(out_logits, -1)))


def retrieval_agreement(ref_q: np.ndarray, ref_g: np.ndarray, out_q: np.ndarray,
                        out_g: np.ndarray, k: int = 1) -> float:
    """Fraction of queries whose reference top-1 gallery item is in the artifact's top-k.

    Queries are e.g. images and the gallery their captions (image→text retrieval).
    """
    ref_top1 = np.argmax(_unit(ref_q) @ _unit(ref_g).T, axis=1)
    sims = _unit(out_q) @ _unit(out_g).T
    topk = np.argsort(-sims, axis=1)[:, :k]
    return float(np.mean([ref_top1[i] in topk[i] for i in range(len(ref_top1))]))


def zero_shot_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, -1) == np.asarray(labels)))


def embedding_metrics(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    cos = cosine_rows(ref, out)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "psnr_db": psnr_db(ref, out)}
