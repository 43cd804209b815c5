"""Run an artifact on the ARM64 twin: its outputs on ARM kernels and its instruction count.

``.onnx`` and ``.tflite`` run in the guest's python (``guest.py``), ``.pte`` in the
cross-compiled ``et_runner``; each under ``qemu-aarch64 -cpu CORE`` with the core's own
``/proc/cpuinfo``. Instructions per inference = (count with k runs - count with 0 runs) / k,
counted by the TCG plugin on one guest thread: deterministic (the same binary, inputs and core
give the same count on any host, whatever else it is doing), unlike emulated wall time, which
says nothing (fp32 NEON costs 10-15x more per instruction to emulate than int8).
"""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ExportError, InputError
from .cores import Core
from .kit import Kit

__all__ = ["TWIN_FORMATS", "TwinResult", "runtime_name", "run_outputs", "count_instructions", "twin_command"]

TWIN_FORMATS = (".pte", ".tflite", ".onnx")
COUNT_RUNS = {".pte": 5, ".tflite": 20, ".onnx": 20}  # the C++ runner counts exactly; a guest python adds
# a few thousand instructions of noise per process (measured: spread 2.7-5.3 k of 350 M), spread over the runs
_GUEST = Path(__file__).resolve().parent / "guest.py"
_TIMEOUT_S = 1800


@dataclass(frozen=True)
class TwinResult:
    core: str
    runtime: str
    instructions: float | None = None


def runtime_name(path: Path, kit: Kit) -> str:
    """What runs ``path`` on the twin, with its version (reports name it: LiteRT there is an older
    release than the host's)."""
    pins = kit.info["pins"]
    suffix = Path(path).suffix
    return {".pte": f"executorch {pins.get('executorch')} (et_runner)",
            ".tflite": f"ai-edge-litert {pins.get('ai-edge-litert (arm64)')}",
            ".onnx": f"onnxruntime {pins.get('onnxruntime')}"}[suffix]


def twin_command(kit: Kit, core: Core, argv: list[str], count_file: Path | None = None,
                 core_root: Path | None = None) -> list[str]:
    """``qemu-aarch64`` running ``argv`` as ``core`` (``core_root``: another view of the root, a
    test's planted cpuinfo)."""
    cmd = ["qemu-aarch64", "-cpu", core.qemu_cpu, "-L", str(core_root or kit.core_root(core.name))]
    if count_file is not None:
        cmd += ["-plugin", f"{kit.plugin},outfile={count_file}"]
    return cmd + argv


def _env(kit: Kit) -> dict:
    """The guest's whole environment, nothing of the host's: its size alone moves the count."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(kit.site), "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1", "ORT_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1"}


def _guest_argv(kit: Kit, root: Path, model: Path, inputs: Path, batch: int, mode: str, out: Path) -> list[str]:
    """Both guests take ``MODEL INPUTS BATCH MODE OUT``, MODE ``outputs`` or a repeat count."""
    if model.suffix == ".pte":
        return [str(kit.et_runner), str(model), str(inputs), str(batch), mode, str(out)]
    return [str(kit.python(root)), str(_GUEST), str(model), str(inputs), str(batch), mode, str(out)]


def _invoke(kit: Kit, core: Core, model: Path, rows: np.ndarray, batch: int, mode: str, work: Path,
            core_root: Path | None) -> tuple[np.ndarray | None, int | None]:
    """Outputs (mode ``outputs``) or the instruction count of a run with ``mode`` repeats."""
    count = mode != "outputs"
    inputs, out, counted = work / "inputs.npy", work / "out.npy", work / f"count-{mode}.txt"
    if model.suffix == ".pte":  # the C++ runner reads raw rows, not .npy
        inputs, out = work / "inputs.bin", work / "out.bin"
        np.ascontiguousarray(rows).tofile(inputs)
    else:
        np.save(inputs, np.ascontiguousarray(rows))
    root = core_root or kit.core_root(core.name)
    cmd = twin_command(kit, core, _guest_argv(kit, root, model, inputs, batch, mode, out), counted if count else None,
                       root)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=_env(kit), timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise ExportError(f"{model.name} on the arm64 twin ({core.name}) ran past {_TIMEOUT_S} s") from e
    if r.returncode != 0:
        sig = f"signal {-r.returncode}" if r.returncode < 0 else f"exit {r.returncode}"
        tail = (r.stderr.strip() or r.stdout.strip() or "no output").splitlines()[-1]
        raise ExportError(f"{model.name} failed on the arm64 twin ({core.name}, {sig}"
                          f"{': an instruction this core lacks' if r.returncode == -4 else ''}): {tail[:300]}")
    n = None
    if count:
        text = counted.read_text().strip()
        if not text.startswith("insns:"):
            raise ExportError(f"the counting plugin wrote {text[:80]!r}, not a count; rerun edgeclip device setup arm64")
        n = int(text.split()[1])
    outputs = None
    if not count:
        outputs = np.load(out) if out.suffix == ".npy" else np.fromfile(out, np.float32).reshape(len(rows), -1)
    return outputs, n


def _check(model: Path) -> Path:
    model = Path(model)
    if model.suffix not in TWIN_FORMATS:
        raise InputError(f"{model.name}: the arm64 twin runs {', '.join(TWIN_FORMATS)} artifacts, not {model.suffix}")
    return model


def run_outputs(kit: Kit, core: Core, model: Path, rows: np.ndarray, batch: int,
                core_root: Path | None = None) -> np.ndarray:
    """Every row of ``rows`` through ``model`` on ARM kernels, ``batch`` rows a call: ``[R, -1]`` float32."""
    model = _check(model)
    with tempfile.TemporaryDirectory(prefix="edgeclip-arm64-") as d:
        return _invoke(kit, core, model, rows, batch, "outputs", Path(d), core_root)[0]


def count_instructions(kit: Kit, core: Core, model: Path, example: np.ndarray, runs: int | None = None,
                       core_root: Path | None = None) -> float:
    """Guest instructions of one inference of ``model`` on ``example`` (one call's input)."""
    model = _check(model)
    runs = runs or COUNT_RUNS[model.suffix]
    batch = len(example)
    with tempfile.TemporaryDirectory(prefix="edgeclip-arm64-") as d:
        _o, base = _invoke(kit, core, model, example, batch, "0", Path(d), core_root)
        _o, total = _invoke(kit, core, model, example, batch, str(runs), Path(d), core_root)
    if total <= base:
        raise ExportError(f"{model.name}: {runs} runs counted no more instructions than none ({total} vs {base})")
    return (total - base) / runs
