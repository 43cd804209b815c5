"""Shard lists for WebDataset-style data: brace patterns, globs and ``::``-joined sources.

``shard-{000000..000009}.tar`` expands like the ``braceexpand`` package that open_clip uses
(zero padding kept, ranges may count down, ``{a,b}`` lists, several groups per pattern);
``::`` joins several sources as in open_clip's ``--train-data``.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Sequence

from ..errors import InputError

__all__ = ["expand_braces", "expand_shards"]

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")
_GLOB = re.compile(r"[*?\[]")


def _options(body: str) -> list[str] | None:
    """The alternatives of one brace group, or None when it is a literal ``{...}``."""
    m = _RANGE.fullmatch(body)
    if m:
        a, b = m.groups()
        lo, hi = int(a), int(b)
        width = max(len(a), len(b)) if a.lstrip("-").startswith("0") or b.lstrip("-").startswith("0") else 0
        step = 1 if hi >= lo else -1
        return [str(i).zfill(width) for i in range(lo, hi + step, step)]
    if "," in body:
        return body.split(",")
    return None


def expand_braces(pattern: str) -> list[str]:
    """``"a-{00..02}.tar"`` -> ``["a-00.tar", "a-01.tar", "a-02.tar"]``, in order."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    head, tail = pattern[: m.start()], pattern[m.end():]
    opts = _options(m.group(1))
    if opts is None:
        return [head + m.group(0) + rest for rest in expand_braces(tail)]
    return [out for o in opts for out in expand_braces(head + o + tail)]


def expand_shards(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Every shard path named by ``spec``; raises InputError if a pattern matches nothing or
    a named shard is missing (all missing ones counted, the first few named)."""
    parts = [str(s) for s in spec] if isinstance(spec, (list, tuple)) else str(spec).split("::")
    out: list[str] = []
    for part in parts:
        if re.match(r"^[a-z][a-z0-9+.-]*:(//|[^\\/])", part) and not os.path.exists(part):
            raise InputError(f"remote shard source {part!r} is not supported; download the "
                             "shards and pass local paths")
        for p in expand_braces(os.path.expanduser(part)):
            if _GLOB.search(p):
                hits = sorted(glob.glob(p))
                if not hits:
                    raise InputError(f"shard pattern {p!r} matched no files")
                out.extend(hits)
            else:
                out.append(p)
    if not out:
        raise InputError(f"no shards in {spec!r}")
    missing = [p for p in out if not os.path.isfile(p)]
    if missing:
        raise InputError(f"{len(missing)} of {len(out)} shards not found, first: "
                         f"{', '.join(missing[:3])}; check the pattern and the directory")
    return out
