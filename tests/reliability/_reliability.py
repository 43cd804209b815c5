"""Helpers of the reliability battery (issue #12): running the real CLI, polling for markers,
and deciding whether anything under a build folder looks complete when it is not."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from _tiny_configs import MINI_TIMED

REPO = Path(__file__).resolve().parents[2]
# a finished stage folder is <stage>-<16 hex>; it only exists under that name with .complete inside
STAGE_DIR = re.compile(r"^(teacher|distill|reference|export|verify|bench)-[0-9a-f]{16}$")
# the MINI target with a short benchmark: one ONNX fp32 artifact per tower
MINI_FAST = MINI_TIMED + "bench: {warmup: 1, runs: 3, threads: 1}\n"
MINI_IMAGE = MINI_FAST.replace("towers: [image, text]", "towers: [image]")


def cli_env() -> dict:
    """The environment of a ``python -m edgeclip`` child: one torch thread (fast on a busy 2-core
    machine, and the same numerics as the in-process builds, which run under ``one_thread``)."""
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def run_cli(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeclip", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(*args: str, stderr_path: Path, cwd: Path = REPO) -> subprocess.Popen:
    """A background ``python -m edgeclip`` in its own process group, stderr to a file we can poll."""
    with open(stderr_path, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "edgeclip", *args], cwd=cwd, env=cli_env(),
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child we started (and anything it started in its group); reap it."""
    import signal
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def wait_for(cond, what: str, timeout: float = 240, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
    """Poll ``cond()`` until true; fail if ``proc`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise AssertionError(f"the build exited ({proc.returncode}) before {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def tqdm_step(text: str, desc: str) -> int:
    """The last step a tqdm bar named ``desc`` printed (0 if none yet)."""
    steps = re.findall(rf"{re.escape(desc)}:\s+\d+%\|[^|]*\|\s*(\d+)/\d+", text)
    return int(steps[-1]) if steps else 0


PROGRESS = re.compile(r"^\[\s*\d+/\d+\] ")  # pipeline.Progress: one line per finished stage


def one_error_line(stderr: str) -> str:
    """The error on ``stderr``: besides the progress lines of stages that finished before it,
    exactly one line, edgeclip's error, and last; no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not PROGRESS.match(ln)]
    assert len(lines) == 1, f"expected one error line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("edgeclip: error: "), lines[0]
    assert stderr.rstrip().splitlines()[-1] == lines[0]
    assert "Traceback" not in stderr and "internal error" not in stderr
    return lines[0]


def lookalikes(root: Path, out: Path | None = None, allow_tmp: bool = False) -> list[str]:
    """Everything under ``root`` that looks finished but is not: a stage folder without its
    ``.complete`` marker, a bundle manifest/report/zip or shipped artifact in ``out``, and
    (unless ``allow_tmp``: a killed build may leave them) temporary ``.tmp-*`` paths."""
    problems = []
    if root.exists():
        for p in root.rglob("*"):
            if p.is_dir() and STAGE_DIR.match(p.name) and not (p / ".complete").is_file():
                problems.append(f"stage folder without .complete: {p}")
            if not allow_tmp and p.name.startswith(".tmp"):
                problems.append(f"temporary path left behind: {p}")
    if out is not None:
        for name in ("manifest.json", "report.json", "report.md"):
            if (out / name).exists():
                problems.append(f"bundle file present: {out / name}")
        if (out / "artifacts").is_dir() and any((out / "artifacts").iterdir()):
            problems.append(f"artifacts present: {sorted(p.name for p in (out / 'artifacts').iterdir())}")
        if out.with_name(out.name + ".zip").exists():
            problems.append(f"bundle zip present: {out.with_name(out.name + '.zip')}")
    return problems


@contextmanager
def one_thread():
    """In-process builds with one torch thread, as the CLI children (``cli_env``) run."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def good_images(n: int, size: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8) for _ in range(n)]


def write_image_dataset(folder: Path, kind: str = "csv") -> Path:
    """Two good PNGs and one truncated JPEG between them, with captions: ``kind`` csv (returns the
    .csv path) or folder (captions.jsonl; returns the folder)."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, img in enumerate(good_images(2)):
        Image.fromarray(img).save(folder / f"good{i}.png")
        names.append(f"good{i}.png")
    buf = io.BytesIO()
    Image.fromarray(good_images(1, 64)[0]).save(buf, "JPEG")
    (folder / "bad.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    rows = [("good0.png", "a noisy square"), ("bad.jpg", "a broken photo"), ("good1.png", "another noisy square")]
    if kind == "csv":
        path = folder / "eval.csv"
        path.write_text("filepath,caption\n" + "".join(f"{f},{c}\n" for f, c in rows), encoding="utf-8")
        return path
    import json
    (folder / "captions.jsonl").write_text("".join(json.dumps({"file": f, "caption": c}) + "\n" for f, c in rows),
                                           encoding="utf-8")
    return folder
