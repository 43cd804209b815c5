"""Stage outputs keyed by a hash of their inputs, written through a temporary folder.

A stage's folder only exists under its final name once the stage finished: it is built in
``.tmp-<name>-<pid>`` and renamed into place, so an interrupted build leaves nothing that looks
whole and a rerun redoes exactly the unfinished stages (removing the temporary folders that
killed builds left behind). Every decision (ran / cached) is appended to ``stage-log.jsonl`` so
tests and users can see what a build did.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .._io import pid_alive
from ..errors import InputError

__all__ = ["StageCache", "BuildLock", "resume_checkpoint_dir", "drop_resume_checkpoint"]


def resume_checkpoint_dir(cache_root: Path, stage: str, key: str) -> Path:
    """Where a training stage (teacher, distill) keeps ``state.pt`` so a killed build resumes."""
    return Path(cache_root) / f"ckpt-{stage}-{key}"


def drop_resume_checkpoint(cache_root: Path, stage: str, key: str) -> None:
    """Delete a training stage's resume checkpoint once its folder is published: it only serves a
    killed run, and it holds weights and optimizer state (80 MB for the default teacher)."""
    shutil.rmtree(resume_checkpoint_dir(cache_root, stage, key), ignore_errors=True)


class StageCache:
    def __init__(self, root: Path, log_path: Path):
        self.root = Path(root)
        self.log_path = Path(log_path)
        self.forced: set[str] = set()

    def path(self, stage: str, key: str) -> Path:
        return self.root / f"{stage}-{key}"

    def _log(self, stage: str, key: str, status: str, **extra) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(json.dumps({"time": time.time(), "stage": stage, "key": key,
                                "status": status, **extra}) + "\n")

    def note(self, stage: str, key: str, status: str, **extra) -> None:
        """Record a decision made outside this cache (e.g. a stored reference used instead)."""
        self._log(stage, key, status, **extra)

    def cached(self, stage: str, key: str) -> Path | None:
        p = self.path(stage, key)
        if p.is_dir() and (p / ".complete").exists() and stage.split(":")[0] not in self.forced:
            self._log(stage, key, "cached")
            return p
        return None

    @contextmanager
    def build(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a temporary folder; on success it becomes the stage's folder atomically."""
        final = self.path(stage, key)
        tmp = self.root / f".tmp-{stage}-{key}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        self._remove_stale(stage, key)
        tmp.mkdir(parents=True)
        try:
            yield tmp
            (tmp / ".complete").write_text(json.dumps({"stage": stage, "key": key}))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._log(stage, key, "ran")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _remove_stale(self, stage: str, key: str) -> None:
        """Delete this stage's temporary folders left by builds that were killed (their process
        is gone); a live process's folder (another target's build sharing the cache) is kept."""
        for old in self.root.glob(glob.escape(f".tmp-{stage}-{key}-") + "*"):
            pid = old.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)

    def log(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]


class BuildLock:
    """An exclusive lock on an output folder: a second build into it is refused, not interleaved."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / ".edgeclip.lock"
        self._fh = None

    def __enter__(self):
        import fcntl
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a+")
        except OSError as e:
            raise InputError(f"cannot write to output folder {self.path.parent} ({e.strerror}); "
                             "choose a writable --out") from e
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise InputError(f"another edgeclip build is writing to {self.path.parent}; wait for "
                             "it to finish or choose another --out") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()
        return self

    def __exit__(self, *exc):
        import fcntl
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        return False
