"""The Backend contract of DESIGN.md: export a tower, load it, run it.

Every backend module (coreml, executorch, litert, onnx) implements ``Backend`` and
registers an instance in ``BACKENDS``. Toolchains are imported lazily inside the module's
functions so that importing this package stays cheap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..registry import Registry

__all__ = ["ExportSpec", "Artifact", "Runner", "Backend", "BACKENDS", "size_bytes"]


@dataclass(frozen=True)
class ExportSpec:
    """What to build: which tower, in which quantization, for which deployment.

    ``calibration`` holds representative inputs for static quantization: a list of
    tuples of numpy arrays with the same dtypes/shapes as ``example`` (real images and
    captions, not randn). ``options`` carries backend-specific knobs from the target
    file (e.g. ``{"compute_precision": "fp16", "minimum_deployment_target": "iOS17",
    "partitioners": ["coreml", "xnnpack"], "threads": 2}``).
    """

    tower: str                       # "image" | "text" | "zero-shot-head"
    quant: str = "fp32"              # one of edgeclip.config.names.QUANT_MODES
    input_names: tuple[str, ...] = ("input",)
    output_names: tuple[str, ...] = ("embedding",)
    calibration: Sequence[tuple[np.ndarray, ...]] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)  # author, license, description, preprocessing
    name: str = "model"             # file stem of the artifact
    # the validated edgeclip.quantize config for ``quant`` (its parameters and per-layer
    # overrides); None means that mode's defaults
    quant_config: Any = None


@dataclass
class Artifact:
    """One exported file (or directory for .mlpackage) and what an app needs to call it."""

    path: Path
    backend: str
    tower: str
    quant: str
    input_names: list[str]
    output_names: list[str]
    input_shapes: list[list[int]]
    input_dtypes: list[str]
    output_shapes: list[list[int]]
    output_dtypes: list[str]
    # fraction of graph ops placed on an accelerated delegate/kernel library (1.0 when the
    # whole graph runs in the backend's optimized runtime); None where it does not apply
    delegated_fraction: float | None = None
    not_delegated: list[str] = field(default_factory=list)   # op names left to slow kernels
    not_quantized: list[str] = field(default_factory=list)   # layers kept in higher precision
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return size_bytes(self.path)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items()}
        d["path"] = str(self.path)
        d["size_bytes"] = self.size_bytes
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Path | None = None) -> "Artifact":
        """Inverse of :meth:`to_dict`; a relative ``path`` is resolved against ``base``."""
        d = {k: v for k, v in d.items() if k != "size_bytes"}
        d["path"] = (base / d["path"]) if base is not None else Path(d["path"])
        return cls(**d)


@runtime_checkable
class Runner(Protocol):
    """Loaded artifact, callable on numpy inputs, returning the first output as numpy."""

    load_ms: float
    threads: int
    runtime: str            # e.g. "executorch-xnnpack", "ai-edge-litert", "onnxruntime"
    emulated: bool          # True when not the vendor runtime (CoreML MIL interpreter)

    def __call__(self, *inputs: np.ndarray) -> np.ndarray: ...


class Backend(Protocol):
    name: str
    formats: tuple[str, ...]
    quant_modes: tuple[str, ...]

    def available(self) -> str | None:
        """None when the toolchain is importable, else why not and how to install it."""

    def export(self, tower, example: tuple, spec: ExportSpec, out_dir: Path) -> Artifact: ...

    def runner(self, artifact: Artifact, threads: int = 2) -> Runner | None:
        """None where this OS has no runtime for the format (CoreML off macOS)."""

    def start_runtime(self) -> None:
        """Import and start the format's runtime without loading an artifact, so that a runner's
        ``load_ms`` and memory are the artifact's own (the bench worker times this apart)."""

    def why_no_runner(self, artifact: Artifact) -> str | None:
        """Why ``runner(artifact)`` is None here (e.g. a CoreML-delegated .pte on Linux)."""


BACKENDS: Registry[Backend] = Registry("backend")


def size_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
