"""The ground helpers (edgeclip/_io.py) every part writes through: atomic writes, hashes, tables."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeclip._io import (atomic_file, atomic_target, copy_atomic, format_table, sha256_path, stable_hash,
                          write_json_atomic, write_text_atomic)


def _names(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_file(target, "w") as f:
            f.write('{"v": 2, "half')
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert _names(tmp_path) == ["a.json"]


def test_a_file_gets_normal_permissions_and_its_suffix_while_written(tmp_path):
    seen = []
    with atomic_target(tmp_path / "plot.png") as tmp:
        seen.append(tmp.name)
        tmp.write_bytes(b"png")
    assert seen[0].startswith(".tmp-plot-") and seen[0].endswith(".png")  # writers infer formats from it
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "plot.png").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_folder_is_replaced_whole(tmp_path):
    src = tmp_path / "src"
    (src / "inner").mkdir(parents=True)
    (src / "inner" / "x.txt").write_text("new")
    dst = tmp_path / "dst"
    (dst / "old").mkdir(parents=True)
    (dst / "old" / "y.txt").write_text("old")
    copy_atomic(src, dst)
    assert _names(dst) == ["inner", "inner/x.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_leftovers_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".tmp-state-{dead.pid}-0badc0de.pt"
    stale.write_bytes(b"half a checkpoint")
    mine = tmp_path / f".tmp-state-{os.getpid()}-11111111.pt"  # a live writer's: kept
    mine.write_bytes(b"in flight")
    other = tmp_path / f".tmp-other-{dead.pid}-0badc0de.pt"   # another file's: not ours to touch
    other.write_bytes(b"x")
    write_text_atomic(tmp_path / "state.pt", "whole")
    assert not stale.exists() and mine.exists() and other.exists()


def test_sha256_of_a_folder_covers_names_and_bytes(tmp_path):
    a = tmp_path / "a"
    (a / "s").mkdir(parents=True)
    (a / "s" / "f").write_bytes(b"1")
    before = sha256_path(a)
    (a / "s" / "f").rename(a / "s" / "g")
    assert sha256_path(a) != before
    (a / "s" / "g").rename(a / "s" / "f")
    assert sha256_path(a) == before


def test_stable_hash_reads_dataclasses_paths_and_sets():
    @dataclass(frozen=True)
    class Part:
        name: str
        n: int

    assert stable_hash(Part("x", 1), Path("p"), {2, 1}) == stable_hash({"name": "x", "n": 1}, "p", [1, 2])
    assert stable_hash(Part("x", 1)) != stable_hash(Part("x", 2))
    with pytest.raises(TypeError):
        stable_hash(object())


def test_format_table_aligns_columns_under_a_rule():
    text = format_table([["name", "ms"], ["litert/image/fp32", "3.5"], ["onnx", "12.25"]], indent="  ")
    assert text.splitlines() == ["  name               ms",
                                 "  -----------------  -----",
                                 "  litert/image/fp32  3.5",
                                 "  onnx               12.25"]
