"""``edgeclip build``: stage order, caching and resume, from recipe to verified bundle.

Stages: load teacher -> distill (0..n) -> reference -> per artifact: quantize+export -> verify
-> bench -> select -> bundle. Each stage's output folder is keyed by a hash of its inputs
(recipe section, upstream keys, tool versions) and written atomically by ``StageCache``, so a
rerun skips finished stages and an edited quantization section reruns only what it changes.
Teacher, distill and reference stages live in ``<out>/../.cache`` so the targets of one recipe
share them (``--target all``).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from ._stage_cache import BuildLock, StageCache
from .errors import VerificationFailed
from .plan import Plan, PlannedArtifact

__all__ = ["run_build", "run_reference", "Progress", "ArtifactResult"]


class Progress:
    """One line per step on stderr: [i/N] stage, elapsed, estimated time left."""

    def __init__(self, total: int, stream=None):
        # sys.stderr looked up now, not at import: it may have been replaced since (tests, notebooks)
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.stream = stream if stream is not None else sys.stderr

    def step(self, label: str, status: str, seconds: float) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        left = elapsed / self.done * (self.total - self.done)
        print(f"[{self.done:>2}/{self.total}] {label:<44} {status:<7} {seconds:6.1f}s"
              f"   elapsed {elapsed:5.0f}s  left ~{left:4.0f}s", file=self.stream, flush=True)


@dataclass
class ArtifactResult:
    planned: PlannedArtifact
    artifact_dir: Path
    artifact: dict
    metrics: dict = field(default_factory=dict)
    latency: dict | None = None
    runner: str | None = None
    emulated: bool = False
    verified: bool = False
    shortfalls: list = field(default_factory=list)
    shipped: bool = False
    why_not_shipped: str | None = None
    thresholds: object = None   # merged Thresholds, set by stages.select

    @property
    def name(self) -> str:
        p = self.planned
        return f"{p.backend}/{p.tower}/{p.quant}"


def writable_dir(path: Path, what: str) -> None:
    """Create ``path`` if needed and check a file can be written there; else a one-line InputError."""
    from .errors import InputError
    if path.exists() and not path.is_dir():
        raise InputError(f"the {what} {path} is a file, not a folder; move it away or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(f"cannot write to the {what} {path} ({e.strerror or type(e).__name__}); choose "
                         "another --out whose folder (and its parent, where the cache lives) is writable") from e


def _tool_versions() -> dict:
    from importlib import metadata
    out = {"edgeclip": __version__}
    for pkg in ("torch", "executorch", "coremltools", "litert-torch", "ai-edge-litert", "onnxruntime", "onnx"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


class Build:
    def __init__(self, plan: Plan, force: str | None, reference: Path | None = None):
        self.plan = plan
        self.out = plan.out_dir
        self.reference_dir = Path(reference) if reference else None  # --reference: a stored reference
        self.cache = StageCache(self.out.parent / ".cache", self.out / "stage-log.jsonl")
        self.local = StageCache(self.out / ".cache", self.out / "stage-log.jsonl")
        writable_dir(self.cache.root, "stage cache folder")  # found unwritable now, not after training
        if force:
            from .stages import FORCE_ORDER
            later = FORCE_ORDER[FORCE_ORDER.index(force):]
            self.cache.forced = self.local.forced = set(later)
        self.versions = _tool_versions()
        n_art = len(plan.artifacts)
        self.progress = Progress(2 + len(plan.recipe.distill) + 3 * n_art + 1)

    def timed(self, label: str, stage: str, key: str, cache: StageCache, fn, quiet: bool = False):
        """Return the stage folder, running ``fn(tmp_folder)`` only when not cached.

        ``quiet``: the toolchains' own chatter (converter banners, C++ logs) goes to the stage's
        ``log.txt`` instead of the terminal; on failure its last lines are shown."""
        t0 = time.perf_counter()
        hit = cache.cached(stage, key)
        if hit is not None:
            self.progress.step(label, "cached", time.perf_counter() - t0)
            return hit
        with cache.build(stage, key) as tmp:
            if quiet:
                with capture_fds(tmp / "log.txt"):
                    fn(tmp)
            else:
                fn(tmp)
        self.progress.step(label, "done", time.perf_counter() - t0)
        return cache.path(stage, key)


def run_build(plan: Plan, force: str | None = None, reference: Path | None = None) -> int:
    """``reference``: a folder written by ``edgeclip reference``, used instead of computing one
    once it is checked to belong to this build's model (else a one-line InputError)."""
    from . import stages
    if force is not None and force not in stages.FORCE_ORDER:
        from .errors import ConfigError
        raise ConfigError(f"--force: unknown stage {force!r}; stages: {', '.join(stages.FORCE_ORDER)}")
    if reference is not None:  # a missing or foreign-format folder fails before any work starts
        from .verify.refstore import read_info
        read_info(reference)
    with BuildLock(plan.out_dir):
        b = Build(plan, force, reference)
        model_dir, model_key = stages.teacher_and_distill(b)
        ref_dir, ref_key = stages.reference(b, model_dir, model_key)
        results = []
        for planned in plan.artifacts:
            results.append(stages.artifact(b, planned, model_dir, model_key, ref_dir, ref_key))
        stages.select(b, results)
        # the bundle is rewritten in place: drop the previous manifest first, so a build killed
        # halfway through never leaves the old manifest.json vouching for a mix of old and new files
        (plan.out_dir / "manifest.json").unlink(missing_ok=True)
        report_path = stages.bundle(b, model_dir, ref_dir, results)
    print(summary_table(results, report_path))
    from .verify.refstore import provenance, provenance_md
    print(provenance_md(provenance(ref_dir, "stored" if reference else "computed", reference)))
    missing = _towers_without_shipped(plan, results)
    if missing:
        from .verify.gate import format_shortfalls
        short = [s for r in results for s in r.shortfalls]
        if short:
            print("\nfell short of the target's thresholds:\n" + format_shortfalls(short))
        raise VerificationFailed(
            f"no artifact passed verification for {', '.join(missing)}; see the table above and "
            f"{report_path}")
    return 0


def run_reference(recipe, out_dir: Path | None = None, device: str | None = None) -> dict:
    """``edgeclip reference``: the recipe's teacher/distill stages and its fp32 reference, through
    the stage cache a build of the same recipe uses (``<out>/../.cache``), copied to ``out_dir``.

    ``device``: auto (None; cuda when present, else cpu), cpu or cuda (an error when absent)."""
    from . import stages
    from .verify.refstore import export_reference, resolve_device
    device = resolve_device(device)
    out = Path(out_dir) if out_dir else Path("build") / recipe.name / "reference"
    plan = Plan(recipe=recipe, target=None, out_dir=out, towers=())
    t0 = time.perf_counter()
    with BuildLock(out):
        b = Build(plan, None)
        b.progress = Progress(2 + len(recipe.distill))
        model_dir, model_key = stages.teacher_and_distill(b)
        ref_dir, _key = stages.reference(b, model_dir, model_key, device=device)
        export_reference(ref_dir, out)
    info = json.loads((out / "reference.json").read_text())
    return {"out": out, "info": info, "seconds": time.perf_counter() - t0}


def _towers_without_shipped(plan: Plan, results: list[ArtifactResult]) -> list[str]:
    groups: dict[str, bool] = {}
    for r in results:
        k = f"{r.planned.backend}/{r.planned.tower}"
        groups[k] = groups.get(k, False) or r.shipped
    return [k for k, ok in groups.items() if not ok]


def summary_table(results: list[ArtifactResult], report_path: Path) -> str:
    head = ["artifact", "size MB", "p50 ms", "cosine", "top1 agr", "runner", "result"]
    rows = [head]
    for r in results:
        size = r.artifact.get("size_bytes", 0) / 1e6
        p50 = f"{r.latency['p50_ms']:.2f}" if r.latency else "-"
        cos = f"{r.metrics['cosine_mean']:.5f}" if r.metrics.get("cosine_mean") is not None else "-"
        agr = f"{r.metrics['top1_agreement']:.3f}" if r.metrics.get("top1_agreement") is not None else "-"
        runner = (r.runner or "none") + (" (emulated)" if r.emulated else "")
        if r.shipped:
            res = "shipped" if r.verified else "shipped, UNVERIFIED"
        else:
            res = f"not shipped: {r.why_not_shipped}"
        rows.append([r.name, f"{size:.2f}", p50, cos, agr, runner, res])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(["", *lines, "", f"report: {report_path}"])


@contextmanager
def capture_fds(log_path: Path):
    """Send fds 1 and 2 (Python and C++ writers alike) to ``log_path`` for the duration; on an
    exception, echo the log's tail to the real stderr so the cause is not hidden."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            tail = Path(log_path).read_text(errors="replace").splitlines()[-15:]
            if tail:
                print("  | " + "\n  | ".join(tail), file=sys.stderr)
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def copy_into(src: Path, dst: Path) -> None:
    """Copy a file or folder into the bundle through a temporary name."""
    tmp = dst.with_name(f".tmp-{dst.name}")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    if src.is_dir():
        shutil.copytree(src, tmp)
    else:
        shutil.copy2(src, tmp)
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    tmp.rename(dst)

