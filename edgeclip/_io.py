"""Ground helpers every part may use: atomic writes, hashes, plain-text tables.

Atomic writes go through a temporary name in the destination's folder and one ``os.replace``,
so a reader (or a killed build's rerun) sees the old file or the whole new one, never a part.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

__all__ = ["user_cache_dir", "pid_alive", "atomic_target", "atomic_file", "write_text_atomic", "write_json_atomic",
           "copy_atomic", "sha256_path", "stable_hash", "format_table", "markdown_table"]


def user_cache_dir() -> Path:
    """edgeclip's per-user cache (extracted bundles, the ARM64 twin's kit): ``$EDGECLIP_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/edgeclip``, else ``~/.cache/edgeclip``."""
    env = os.environ.get("EDGECLIP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edgeclip"


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_stale_tmp(path: Path) -> None:
    """Temporary siblings of ``path`` that killed writers left (their process is gone)."""
    prefix = f".tmp-{path.stem}-"
    for old in path.parent.glob(glob.escape(prefix) + "*"):
        pid = old.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            _remove(old)


@contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for the caller to write (a file or a folder); on
    success it replaces ``path`` (an old folder there is moved aside first), on failure it is
    removed. What a killed writer of the same path left behind is removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(path)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = path.with_name(f".tmp-{path.stem}-{tag}{path.suffix}")  # the suffix kept: writers infer formats from it
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, _file_mode())  # mkstemp-style writers create 0600
        if path.is_dir() and not path.is_symlink():  # a folder can't be replaced in one step: move it aside
            trash = path.with_name(f".old-{path.stem}-{tag}{path.suffix}")
            path.rename(trash)
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", fsync: bool = False,
                encoding: str | None = None) -> Iterator[IO[Any]]:
    """An open file that becomes ``path`` when the block ends without an error. ``fsync``: flush
    it to disk first (shards and checkpoints a crash must not truncate)."""
    with atomic_target(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2, ensure_ascii: bool = True) -> None:
    with atomic_file(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, default=str, ensure_ascii=ensure_ascii)
        f.write("\n")


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a file or a folder to ``dst`` through a temporary name."""
    src = Path(src)
    with atomic_target(dst) as tmp:
        if src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copy2(src, tmp)


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder's files in sorted relative-path order (names included)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def stable_hash(*parts: Any) -> str:
    """Hash of JSON-serialisable parts (dataclasses via their fields), 16 hex digits: stage keys."""
    def default(o):
        if hasattr(o, "__dataclass_fields__"):
            return {k: getattr(o, k) for k in o.__dataclass_fields__}
        if isinstance(o, Path):
            return str(o)
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        raise TypeError(f"cannot hash {type(o).__name__}")
    blob = json.dumps(parts, sort_keys=True, default=default, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def format_table(rows: Sequence[Sequence[str]], indent: str = "", rule: bool = True) -> str:
    """Left-aligned columns two spaces apart; ``rows[0]`` is the header, underlined when ``rule``."""
    rows = [[str(c) for c in r] for r in rows]
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    lines = [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if rule:
        lines.insert(1, indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table; ``rows[0]`` is the header."""
    return (["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            + ["| " + " | ".join(r) + " |" for r in rows[1:]])
