"""What every stage of one build shares: the typed ``BuildContext`` and the small pieces around it.

``BuildContext`` holds the plan, the two stage caches (shared by a recipe's targets:
``<out>/../.cache``; local to this target: ``<out>/.cache``), tool versions (part of every stage
key), the progress printer, a stored reference (``--reference``) and the distill stages' folders
(which the bundle reports). Stages read and write only its fields.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .. import tool_versions
from ..errors import ConfigError, InputError
from .cache import StageCache

if TYPE_CHECKING:  # annotations only: plan.py imports default_root from here
    from .plan import Plan, PlannedArtifact

__all__ = ["BuildContext", "Progress", "ArtifactResult", "FORCE_ORDER", "default_root", "writable_dir",
           "capture_fds", "stage_model", "check_force"]

# --force STAGE reruns this stage and every later one
FORCE_ORDER = ["teacher", "distill", "reference", "sensitivity", "export", "verify", "twin", "bench", "rounds", "bundle"]


def check_force(force: str | None) -> None:
    if force is not None and force not in FORCE_ORDER:
        raise ConfigError(f"--force: unknown stage {force!r}; stages: {', '.join(FORCE_ORDER)}")


def default_root(recipe_name: str) -> Path:
    """Where a recipe's outputs go without ``--out``: ``build/<recipe>`` (targets, reference,
    reinforced data and the shared ``.cache`` below it)."""
    return Path("build") / recipe_name


# once-per-build training stages: minutes each, so their pace says nothing about the exports after
_TRAINING_STEPS = ("load", "distill")


class Progress:
    """One line per step on stderr: [i/N] stage, elapsed, estimated time left (from the pace of
    the steps after training; ``?`` until one has run)."""

    def __init__(self, total: int, stream=None):
        # sys.stderr looked up now, not at import: it may have been replaced since (tests, notebooks)
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.stream = stream if stream is not None else sys.stderr
        self._paced: list[float] = []

    def step(self, label: str, status: str, seconds: float) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        if not label.startswith(_TRAINING_STEPS):
            self._paced.append(seconds)
        left = (f"{sum(self._paced) / len(self._paced) * (self.total - self.done):4.0f}s" if self._paced
                else "   ?" if self.done < self.total else "   0s")
        print(f"[{self.done:>2}/{self.total}] {label:<44} {status:<7} {seconds:6.1f}s"
              f"   elapsed {elapsed:5.0f}s  left ~{left}", file=self.stream, flush=True)


@dataclass
class ArtifactResult:
    """One planned artifact through export, verify, bench and select."""

    planned: PlannedArtifact
    artifact_dir: Path
    artifact: dict
    metrics: dict = field(default_factory=dict)
    latency: dict | None = None  # isolated load/memory, then p50/p90/spread from the interleaved rounds
    bench_key: str = ""
    runner: str | None = None
    emulated: bool = False
    verified: bool = False
    shortfalls: list = field(default_factory=list)
    shipped: bool = False
    recommended: bool = False   # the one artifact of its tower an app should take, across backends
    why_not_shipped: str | None = None
    thresholds: object = None   # merged Thresholds, set by the select stage
    devices: dict = field(default_factory=dict)  # "arm64:CORE" -> the twin stage's result (ARM metrics, instructions)

    @property
    def name(self) -> str:
        p = self.planned
        return f"{p.backend}/{p.tower}/{p.variant}"


@dataclass
class BuildContext:
    plan: Plan
    cache: StageCache                     # shared by the recipe's targets
    local: StageCache                     # this target's own (bench: latency is per machine run)
    versions: dict
    progress: Progress
    reference_dir: Path | None = None     # --reference: a stored reference instead of computing one
    distill_dirs: list = field(default_factory=list)  # (DistillStage, folder) per distill stage
    yardstick: dict | None = None         # the machine's GEMM peak and bandwidth, from the rounds stage
    calibration: object = None            # build.calibration.Calibration, read when a variant needs it
    sensitivity: dict = field(default_factory=dict)  # searched artifact name -> its layer ranking
    mixed: list = field(default_factory=list)        # the mixed-precision searches, for the report

    @classmethod
    def create(cls, plan: Plan, force: str | None = None, reference: Path | None = None,
               steps: int | None = None) -> "BuildContext":
        """The context of a build into ``plan.out_dir``; ``force``: rerun from that stage on;
        ``steps``: how many progress lines to expect (default: every stage of the plan)."""
        out = plan.out_dir
        log = out / "stage-log.jsonl"
        cache, local = StageCache(out.parent / ".cache", log), StageCache(out / ".cache", log)
        writable_dir(cache.root, "stage cache folder")  # found unwritable now, not after training
        check_force(force)
        if force:
            cache.forced = local.forced = set(FORCE_ORDER[FORCE_ORDER.index(force):])
        if steps is None:
            from .stages.twin import twin_steps
            twins = sum(twin_steps(plan.target, a.backend) for a in plan.artifacts)
            steps = 2 + len(plan.recipe.distill) + 3 * len(plan.artifacts) + twins + 2
        return cls(plan=plan, cache=cache, local=local, versions=tool_versions(), progress=Progress(steps),
                   reference_dir=Path(reference) if reference else None)

    @property
    def out(self) -> Path:
        return self.plan.out_dir

    def backend_entry(self, backend: str):
        """The target's ``BackendEntry`` for ``backend`` (its options, modes, thresholds)."""
        return next(e for e in self.plan.target.backends if e.backend == backend)

    def timed(self, label: str, stage: str, key: str, cache: StageCache, fn: Callable[[Path], None],
              quiet: bool = False) -> Path:
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


def stage_model(model_dir: Path):
    """The model a teacher/distill stage wrote, in eval mode."""
    from ..models import load_model
    return load_model(f"file:{Path(model_dir) / 'model.safetensors'}").eval()


def writable_dir(path: Path, what: str) -> None:
    """Create ``path`` if needed and check a file can be written there; else a one-line InputError."""
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
