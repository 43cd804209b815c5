"""Run one artifact over the reference inputs and score it: shared by the build's verify stage,
``edgeclip verify BUNDLE`` and ``edgeclip predict``.

``open_runner`` picks the artifact's own runtime where this OS has one; off macOS a CoreML
artifact runs in the reference MIL interpreter instead (``emulated=True``, so reports say so).
"""
from __future__ import annotations

import numpy as np

__all__ = ["open_runner", "why_no_runner", "run_rows", "batch_of", "takes_raw_pixels", "image_inputs",
           "tower_outputs", "check_artifact"]


def open_runner(art, threads: int = 2):
    """The artifact's Runner, the MIL interpreter for CoreML off macOS, or None."""
    from ..backends import BACKENDS
    runner = BACKENDS.get(art.backend).runner(art, threads=threads)
    if runner is None and art.backend == "coreml":  # off macOS: the reference MIL interpreter
        from .mil import MILRunner
        runner = MILRunner(art, threads=threads)
    return runner


def why_no_runner(art) -> str:
    from ..backends import BACKENDS
    why = BACKENDS.get(art.backend).why_no_runner(art)
    return why or f"no {art.backend} runtime on this OS"


def run_rows(runner, batch: np.ndarray, n: int = 1) -> np.ndarray:
    """Run a fixed-batch-``n`` artifact over every row of ``batch``, ``n`` rows a call; the last
    call is padded with copies of the last row, whose outputs are dropped."""
    out = []
    for i in range(0, len(batch), n):
        chunk = batch[i:i + n]
        k = len(chunk)
        if k < n:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], n - k, axis=0)])
        out.append(np.asarray(runner(np.ascontiguousarray(chunk))).reshape(n, -1)[:k])
    return np.concatenate(out).astype(np.float32)


def batch_of(art) -> int:
    """The fixed batch an artifact was exported with (its first input's leading dim)."""
    return max(1, int(art.input_shapes[0][0]))


def takes_raw_pixels(art) -> bool:
    """True for an image artifact with in-graph preprocessing: ``[B,S,S,3]`` pixels 0..255 in."""
    return bool(art.extra.get("in_graph_preprocess"))


def image_inputs(art, ref) -> np.ndarray:
    """The reference images as the artifact takes them: normalized float NCHW pixels, or the
    decoded uint8 NHWC images (in the artifact's input dtype) where it preprocesses in the graph."""
    if not takes_raw_pixels(art):
        return ref.pixels
    if "images" not in ref.arrays:
        from ..errors import InputError
        raise InputError("the reference predates stored raw images, which an artifact with in-graph "
                         "preprocessing needs; recompute it (edgeclip reference, or rebuild)")
    return ref.images.astype(art.input_dtypes[0])


def tower_outputs(runner, ref, art) -> dict[str, np.ndarray]:
    """The outputs ``reference.evaluate`` scores: images, or captions then prompts (a zero-shot
    head: its logits on the reference images), fed in the artifact's fixed batch and input form."""
    n = batch_of(art)
    if art.tower in ("image", "zero-shot-head"):
        return {"image" if art.tower == "image" else "logits": run_rows(runner, image_inputs(art, ref), n)}
    return {"text": run_rows(runner, ref.caption_ids, n), "prompt": run_rows(runner, ref.prompt_ids, n)}


def check_artifact(art, ref, threads: int = 2, head: tuple[np.ndarray, float] | None = None) -> dict:
    """``{"runner", "emulated", "metrics"}``; runner None (and ``why``) where nothing can run it.

    ``head``: for a zero-shot-head artifact, the fp32 head's ``(label_embeddings[K,D], logit_scale)``."""
    from .reference import evaluate, evaluate_head
    if art.tower == "zero-shot-head" and head is None:
        raise ValueError("a zero-shot-head artifact is checked against its label embeddings: pass head=")
    runner = open_runner(art, threads)
    if runner is None:
        return {"runner": None, "emulated": False, "metrics": {},
                "why": f"{why_no_runner(art)}; the artifact was converted but not run"}
    outputs = tower_outputs(runner, ref, art)
    if art.tower == "zero-shot-head":
        metrics = evaluate_head(ref, outputs["logits"], *head)
    else:
        metrics = evaluate(ref, art.tower, outputs)
    return {"runner": runner.runtime, "emulated": bool(getattr(runner, "emulated", False)),
            "metrics": metrics}
