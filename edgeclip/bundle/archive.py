"""A bundle as one ``.zip``: written beside the bundle folder, opened safely.

``edgeclip build`` writes ``<bundle>.zip`` next to the folder (``build/<recipe>/<target>.zip``):
``manifest.json`` and exactly the files its sha256 list names, at the archive's root, with fixed
timestamps and modes (the same bundle gives the same bytes), through a temporary name and an
atomic rename. ``unzip -d DIR bundle.zip`` gives back the folder.

``open_bundle(path)`` returns a folder for ``predict``/``verify``/``inspect``: a folder as it is;
a zip is extracted into ``$EDGECLIP_CACHE_DIR/bundles/<name>-<sha256 prefix>/`` (default
``~/.cache/edgeclip``, or ``$XDG_CACHE_HOME/edgeclip``) after every entry is checked — no
absolute path, no ``..`` component, no backslash, no symlink, nothing that resolves outside the
folder (zip-slip), no duplicate — and before the folder is used, the manifest's sha256 of every
file is checked and a file the manifest does not list is refused. Any of these is one
``InputError`` naming the archive and the entry; nothing half-extracted is left behind.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import uuid
import zipfile
from pathlib import Path

from .._io import atomic_target, sha256_path, user_cache_dir
from ..errors import InputError
from .manifest import load_manifest

__all__ = ["zip_path", "write_zip", "open_bundle", "extract_bundle"]

ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_DONE = ".edgeclip-extracted"  # marker of a finished, checked extraction (holds the zip's sha256)


def zip_path(bundle_dir: Path) -> Path:
    """Where ``edgeclip build`` writes a bundle's archive: ``<folder>.zip`` beside the folder."""
    bundle_dir = Path(bundle_dir)
    return bundle_dir.with_name(bundle_dir.name + ".zip")


def write_zip(bundle_dir: Path, manifest: dict) -> Path:
    """Archive ``manifest.json`` + every file of ``manifest["files"]``; atomic, deterministic."""
    bundle_dir = Path(bundle_dir)
    out = zip_path(bundle_dir)
    with atomic_target(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel in ["manifest.json", *sorted(manifest["files"])]:
            src = bundle_dir / rel
            info = zipfile.ZipInfo(Path(rel).as_posix(), ZIP_TIME)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            big = src.stat().st_size >= zipfile.ZIP64_LIMIT
            with open(src, "rb") as f, zf.open(info, "w", force_zip64=big) as dst:
                shutil.copyfileobj(f, dst, 1 << 20)
    return out


def _why_unsafe(info: zipfile.ZipInfo, root: Path) -> str | None:
    name = info.filename
    if not name or "\x00" in name:
        return "has an empty or NUL-containing name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if "\\" in name:
        return "contains a backslash (a Windows path separator)"
    if ".." in name.split("/"):
        return "has a '..' component"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    target = (root / name).resolve()
    if target == root or root not in target.parents:
        return "resolves outside the bundle folder"
    return None


def _refuse(zpath: Path, entry: str, why: str) -> InputError:
    return InputError(f"{zpath}: entry {entry!r} {why}; refusing the archive (re-download or rebuild the bundle)")


def extract_bundle(zpath: Path, dest: Path) -> dict:
    """Extract ``zpath`` into the new folder ``dest`` after checking every entry, then check the
    manifest and every file's sha256; returns the manifest. ``dest`` must not exist."""
    zpath, dest = Path(zpath), Path(dest)
    dest.mkdir(parents=True)
    root = dest.resolve()
    try:
        with zipfile.ZipFile(zpath) as zf:
            infos = zf.infolist()
            seen: set[str] = set()
            for info in infos:  # every entry checked before the first byte is written
                why = _why_unsafe(info, root)
                if why:
                    raise _refuse(zpath, info.filename, why)
                key = info.filename.rstrip("/")
                if key in seen:
                    raise _refuse(zpath, info.filename, "appears twice")
                seen.add(key)
            for info in infos:
                target = root / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as e:
        raise InputError(f"{zpath}: not a readable zip archive ({e}); re-download or rebuild the bundle") from e
    if not (dest / "manifest.json").is_file():
        raise InputError(f"{zpath}: no manifest.json at the archive's root; zip the bundle folder's contents "
                         "(edgeclip build writes <bundle>.zip)")
    manifest = load_manifest(dest, check_files=True, where=str(zpath))  # schema + every sha256
    listed = {Path(rel).as_posix() for rel in manifest["files"]} | {"manifest.json"}
    for p in sorted(dest.rglob("*")):
        rel = p.relative_to(dest).as_posix()
        if p.is_file() and rel not in listed:
            raise _refuse(zpath, rel, "is not listed in manifest.json (no sha256 covers it)")
    return manifest


def open_bundle(path: Path) -> Path:
    """The bundle folder for ``path``: itself when a folder, else its zip extracted and checked
    (cached by the zip's sha256, so a second call reuses the folder)."""
    p = Path(path)
    if p.is_dir():
        return p
    if not p.exists():
        raise InputError(f"{p}: no such bundle; pass a bundle folder or the .zip that `edgeclip build` wrote")
    if not zipfile.is_zipfile(p):
        raise InputError(f"{p}: neither a bundle folder nor a zip archive; pass build/<recipe>/<target> "
                         "or build/<recipe>/<target>.zip")
    digest = sha256_path(p)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", p.stem)[:64] or "bundle"
    dest = user_cache_dir() / "bundles" / f"{stem}-{digest[:16]}"
    if (dest / _DONE).is_file() and (dest / _DONE).read_text() == digest:
        return dest
    if dest.exists():  # an earlier extraction that never finished
        shutil.rmtree(dest, ignore_errors=True)
    tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        extract_bundle(p, tmp)
        (tmp / _DONE).write_text(digest)
        try:
            os.rename(tmp, dest)
        except OSError:  # another process finished the same extraction first
            if not (dest / _DONE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
