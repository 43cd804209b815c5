"""The twin stage: every artifact a target's ``devices`` can run (``.pte``, ``.tflite``, ``.onnx``)
also runs on each emulated ARM core (``verify.arm64``): its accuracy on ARM kernels and its
instructions per inference there.

Counts and ARM outputs do not depend on the build machine or its load, so the stage lives in the
shared cache beside verify, keyed by the verify key, the core and the twin kit's runtimes. The
first device's count is what the select stage ranks variants by (``cost``).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..._io import stable_hash

__all__ = ["twin_steps", "twin", "ranking_device", "twin_count"]


def twin_steps(target, backend: str) -> int:
    """Progress lines the twin stage adds for one artifact of ``backend``."""
    from ...config.names import FORMATS
    from ...verify.arm64 import TWIN_FORMATS
    return len(target.devices) if FORMATS[backend] in TWIN_FORMATS else 0


def ranking_device(target) -> str | None:
    """The device whose instruction count ranks the variants: the target's first; None: host ms."""
    from ...verify.arm64 import core_of
    from ...verify.arm64.check import device_name
    return device_name(core_of(target.devices[0])) if target.devices else None


def twin_count(res, device: str | None) -> float | None:
    """``res``'s instructions per inference on ``device`` (None where it was not counted)."""
    if device is None:
        return None
    return (res.devices.get(device) or {}).get("instructions")


def twin(ctx, res, art, verify_key: str, ref_dir: Path, head=None) -> None:
    """Run ``art`` (verified as ``res``) on each of the target's cores; fills ``res.devices``."""
    from ...verify.arm64 import TWIN_FORMATS, core_of, ready_kit
    from ...verify.arm64.check import TWIN_VERSION, check_on_twin, device_name
    from ...verify.reference import Reference
    devices = ctx.plan.target.devices
    if not devices or Path(art.path).suffix not in TWIN_FORMATS or not res.verified:
        return
    kit = ready_kit(setup_if_missing=True)
    for spec in devices:
        core = core_of(spec)
        key = stable_hash("twin", TWIN_VERSION, verify_key, core, kit.info["version"], kit.info["pins"])

        def run(tmp: Path, core=core):
            out = check_on_twin(art, Reference.load(ref_dir), kit, core, head=head)
            (tmp / "twin.json").write_text(json.dumps(out))

        label = f"arm64 {core.name} {res.planned.backend} {res.planned.tower} {res.planned.variant}"
        folder = ctx.timed(label, "twin", key, ctx.cache, run, quiet=True)
        res.devices[device_name(core)] = json.loads((folder / "twin.json").read_text())
