"""Top-1 and R@1 agreement forgive near-ties of the reference, and nothing else.

A random-init tower maps every input to nearly the same direction, so the reference's retrieval
and zero-shot scores differ in the 5th-6th decimal; an exact fp32 artifact reorders such
near-ties by float rounding. Agreement is judged by the reference's own scores: a choice within
``TIE_MARGIN`` of the reference's best agrees. A decisive (trained-like) reference with shuffled
artifact outputs must still fail.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgeclip.verify.metrics import TIE_MARGIN, margin_summary, retrieval_agreement, top1_agreement, top_gaps
from edgeclip.verify.reference import Reference, evaluate, evaluate_head, reference_margins

N, D, K = 48, 16, 6


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _reference(spread: float, seed: int = 0) -> Reference:
    """Every embedding is ``base + spread * noise``: spread 1e-5 is a random-init tower's near-ties,
    spread 3 a trained tower's decisive choices. One labelled group of K classes."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(D)

    def emb(n):
        return _unit(base + spread * rng.standard_normal((n, D)))
    labels = rng.integers(0, K, N)
    return Reference({
        "image_emb": emb(N), "text_emb": emb(N), "caption_lang": np.array(["en"] * N),
        "prompt_emb": emb(2 * K), "prompt_class": np.repeat(np.arange(K), 2), "class_group": np.zeros(K, np.int32),
        "labels": labels.astype(np.int64), "image_group": np.zeros(N, np.int32),
    }, {})


def _fp32_rounding(x, seed=1):
    """An exact fp32 artifact's outputs: the reference's, off in the 7th decimal."""
    rng = np.random.default_rng(seed)
    return _unit(x.astype(np.float64) + 3e-7 * rng.standard_normal(x.shape))


def _text_outputs(ref, f):
    return {"text": f(ref.text_emb), "prompt": f(ref.prompt_emb)}


def test_hand_case_near_tie_agrees_real_disagreement_does_not():
    ref = np.array([[0.50000, 0.49999, 0.1], [0.9, 0.2, 0.1]])
    out = np.array([[0.49, 0.51, 0.0], [0.1, 0.2, 0.9]])   # row 0 flips a near-tie, row 1 is wrong
    assert top1_agreement(ref, out) == pytest.approx(0.5)
    assert top1_agreement(ref, out, margin=0.0) == 0.0
    q = np.eye(2)
    g_ref = np.array([[1.0, 0.0], [1.0, 1e-6]])            # query 0: both gallery items tie
    g_out = g_ref[[1, 0]]
    assert retrieval_agreement(q[:1], g_ref, q[:1], g_out) == 1.0
    assert retrieval_agreement(q[:1], g_ref, q[:1], g_out, margin=0.0) == 0.0


@pytest.mark.parametrize("tower", ["image", "text"])
def test_an_exact_fp32_artifact_of_a_near_tie_reference_agrees(tower):
    ref = _reference(spread=1e-5)
    outputs = {"image": _fp32_rounding(ref.image_emb)} if tower == "image" else _text_outputs(ref, _fp32_rounding)
    m = evaluate(ref, tower, outputs)
    assert m["cosine_min"] > 0.999999
    assert m["top1_agreement"] == 1.0 and m["r1_agreement"] == 1.0
    # the exact-argmax rule this replaces fails the same artifact: the test would catch a regression
    sims_ref = ref.image_emb @ ref.text_emb.T
    sims_out = (outputs["image"] @ ref.text_emb.T) if tower == "image" else ref.image_emb @ outputs["text"].T
    exact = float(np.mean(sims_ref.argmax(1) == sims_out.argmax(1)))
    assert exact < 0.85, exact
    margins = reference_margins(ref)
    assert margins["retrieval_i2t"]["tie_fraction"] > 0.5 and margins["zero_shot"]["rows"] == N


@pytest.mark.parametrize("tower", ["image", "text"])
def test_shuffled_outputs_of_a_decisive_reference_fail(tower):
    ref = _reference(spread=3.0)
    perm = np.random.default_rng(2).permutation

    def shuffle(x):
        return x[perm(len(x))]
    outputs = {"image": shuffle(ref.image_emb)} if tower == "image" else _text_outputs(ref, shuffle)
    m = evaluate(ref, tower, outputs)
    assert m["r1_agreement"] < 0.3 and m["top1_agreement"] < 0.6, m
    good = evaluate(ref, tower, {"image": _fp32_rounding(ref.image_emb)} if tower == "image"
                    else _text_outputs(ref, _fp32_rounding))
    assert good["r1_agreement"] == 1.0 and good["top1_agreement"] == 1.0
    assert reference_margins(ref)["retrieval_i2t"]["tie_fraction"] == 0.0


def test_zero_shot_head_margin_scales_with_the_logit_scale():
    ref = _reference(spread=1e-5)
    label_emb = _unit(ref.prompt_emb[::2])
    scale = 100.0
    expected = scale * ref.image_emb.astype(np.float64) @ label_emb.T
    noisy = expected + 1e-5 * np.random.default_rng(3).standard_normal(expected.shape)  # 1e-7 in cosine
    assert evaluate_head(ref, noisy, label_emb, scale)["top1_agreement"] == 1.0
    decisive = _reference(spread=3.0)
    label_d = _unit(decisive.prompt_emb[::2])
    exp_d = scale * decisive.image_emb.astype(np.float64) @ label_d.T
    assert evaluate_head(decisive, exp_d[np.random.default_rng(4).permutation(N)], label_d, scale)["top1_agreement"] < 0.6


def test_margin_summary():
    gaps = top_gaps(np.array([[1.0, 0.99995, 0.0], [1.0, 0.5, 0.2], [0.3, 0.1, 0.2]]))
    np.testing.assert_allclose(gaps, [5e-5, 0.5, 0.1])
    s = margin_summary(gaps)
    assert s["rows"] == 3 and s["tie_fraction"] == pytest.approx(1 / 3) and s["margin"] == TIE_MARGIN
    assert s["gap_p50"] == pytest.approx(0.1)
    assert margin_summary([]) == {}
