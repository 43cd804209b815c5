"""One artifact on one emulated core: its accuracy on ARM kernels against the fp32 reference and
its instructions per inference. What a build's twin stage records.

The whole evaluation set runs on the twin (the default build's is 176 images and 494 texts), fed
exactly as the host's verify feeds it (``verify.run``), and is scored by the same
``reference.evaluate``: an artifact that is accurate on x86 kernels but not on ARM ones fails
the same gates there.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ExportError
from .cores import Core
from .kit import Kit
from .run import count_instructions, run_outputs, runtime_name

__all__ = ["TWIN_VERSION", "device_name", "runner_name", "check_on_twin"]

TWIN_VERSION = 1  # bump when what the twin stage computes changes (inputs, counting, scoring)


def device_name(core: Core) -> str:
    return f"arm64:{core.name}"


def runner_name(core: Core) -> str:
    """The report's runner for twin records: emulated, and on which core."""
    return f"arm64-emulated:{core.name}"


def check_on_twin(art, ref, kit: Kit, core: Core, head: tuple[np.ndarray, float] | None = None,
                  core_root: Path | None = None) -> dict:
    """``{"device", "runner", "runtime", "metrics", "instructions"}`` of ``art`` on ``core``; where it
    crashed there (an instruction the core lacks...), no metrics, no count and the ``error``: a
    verdict on the artifact (the run is deterministic), not a failure of the caller.

    ``head``: a zero-shot-head artifact's fp32 ``(label_embeddings, logit_scale)``."""
    path = Path(art.path)
    out = {"device": device_name(core), "runner": runner_name(core), "runtime": runtime_name(path, kit)}
    try:
        return {**out, **_measure(art, ref, kit, core, head, core_root)}
    except ExportError as e:
        return {**out, "metrics": {}, "instructions": None, "error": " ".join(str(e).split())}


def _measure(art, ref, kit: Kit, core: Core, head, core_root: Path | None) -> dict:
    from ..reference import evaluate, evaluate_head
    from ..run import batch_of, image_inputs
    path, n = Path(art.path), batch_of(art)
    if art.tower in ("image", "zero-shot-head"):
        rows = {"image" if art.tower == "image" else "logits": image_inputs(art, ref)}
    else:
        rows = {"text": ref.caption_ids, "prompt": ref.prompt_ids}
    dtype = art.input_dtypes[0]
    outputs = {k: run_outputs(kit, core, path, np.ascontiguousarray(v.astype(dtype)), n, core_root)
               for k, v in rows.items()}
    if art.tower == "zero-shot-head":
        metrics = evaluate_head(ref, outputs["logits"], *head)
    else:
        metrics = evaluate(ref, art.tower, outputs)
    example = np.ascontiguousarray(next(iter(rows.values()))[:n].astype(dtype))
    return {"metrics": metrics, "instructions": count_instructions(kit, core, path, example, core_root=core_root)}
