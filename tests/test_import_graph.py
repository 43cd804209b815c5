"""The house rules of DESIGN.md "Parts", checked on the source: who may import whom, no import
circle, no import of another part's ``_private`` module, no file over 400 lines, and every CLI
verb in a module of its own name. Every import counts, also one inside a function (a lazy import
still ties the two modules together); only ``if TYPE_CHECKING:`` blocks are left out.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "edgeclip"
MAX_LINES = 400

# part -> the parts it may import (DESIGN.md "Parts"; every part may import the ground)
ALLOWED = {
    "face": {"commands", "build", "config"},
    "commands": {"build", "bundle", "verify", "backends", "distill", "models", "data", "config"},
    "build": {"bundle", "verify", "backends", "quantize", "distill", "models", "data", "config"},
    "bundle": {"verify", "backends", "models", "config"},
    "verify": {"backends", "models", "data", "config"},
    "backends": {"quantize", "models", "config"},
    "distill": {"models", "data", "config"},
    "quantize": {"models", "data", "config"},
    "models": {"config"},
    "data": {"config"},
    "config": set(),
    "ground": set(),
}
GROUND = {"edgeclip", "edgeclip.errors", "edgeclip.registry", "edgeclip._io"}
FACE = {"edgeclip.cli", "edgeclip.__main__"}
VERBS = ("build", "reference", "list", "info", "pretrain", "distill", "reinforce", "verify", "predict", "inspect", "bench", "device")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def part_of(module: str) -> str:
    if module in GROUND:
        return "ground"
    if module in FACE:
        return "face"
    return module.split(".")[1]


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, root: Path, modules: set[str]) -> list[tuple[str, int]]:
    """``[(imported module, line)]`` of edgeclip modules: ``from pkg import name`` counts as
    ``pkg.name`` when that is a module, else as ``pkg``."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == root.name]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub if sub in modules else target, node.lineno))
    return out


def import_graph(root: Path) -> dict[str, list[tuple[str, int]]]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(p, root) for p in files}
    return {module_name(p, root): [(m, ln) for m, ln in imports_of(p, root, modules) if m != module_name(p, root)]
            for p in files}


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w, _ in graph.get(v, []):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_private_of_other_part(importer: str, imported: str) -> bool:
    """``edgeclip.models._build`` imported from outside ``edgeclip.models`` (ground's ``_io`` is
    everyone's)."""
    if imported in GROUND:
        return False
    names = imported.split(".")
    for i, name in enumerate(names):
        if name.startswith("_") and not name.startswith("__"):
            owner = ".".join(names[:i])
            return importer != owner and not importer.startswith(owner + ".")
    return False


def violations(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    out = []
    for importer, edges in graph.items():
        mine = part_of(importer)
        for imported, line in edges:
            theirs = part_of(imported)
            where = f"{importer}:{line} imports {imported}"
            if theirs != mine and theirs != "ground" and theirs not in ALLOWED[mine]:
                out.append(f"{where}: part {mine} may not import part {theirs}")
            if _is_private_of_other_part(importer, imported):
                out.append(f"{where}: a private module of another package")
            if (mine == theirs == "backends" and not importer.split(".")[-1].startswith("_")
                    and importer != "edgeclip.backends" and not imported.split(".")[-1].startswith("_")
                    and imported not in ("edgeclip.backends", "edgeclip.backends.base")):
                out.append(f"{where}: a backend imports another backend")
            if imported.split(".")[0] in ("benchmarks", "tests"):
                out.append(f"{where}: the library imports {imported.split('.')[0]}/")
    return out


def test_no_import_circle():
    found = cycles(import_graph(ROOT))
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_parts_import_only_what_design_allows():
    bad = violations(import_graph(ROOT))
    assert not bad, "\n".join(bad)


def test_the_library_never_imports_benchmarks_or_tests():
    for p in ROOT.rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+(benchmarks|tests)\b", text, re.M), p


def test_no_file_over_400_lines():
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_every_cli_verb_lives_in_a_module_of_its_name():
    from edgeclip.cli import _parser
    sub = next(a for a in _parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(VERBS)
    for verb in VERBS:
        module = ROOT / "commands" / f"{verb}.py"
        assert module.is_file(), f"edgeclip {verb}: no edgeclip/commands/{verb}.py"
        assert "def main(args)" in module.read_text(encoding="utf-8"), f"commands/{verb}.py has no main(args)"


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "edgeclip"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_the_checks_catch_a_deliberate_circle_a_layer_breach_and_a_private_import(tmp_path):
    """The checker itself, on a small package: each rule fires on what it must refuse."""
    root = _package(tmp_path, {
        "__init__.py": "", "errors.py": "",
        "models/__init__.py": "", "models/_build.py": "from . import zoo\n",
        "models/zoo.py": "def f():\n    from ._build import x\n",  # lazy: still a circle
        "config/__init__.py": "from ..models import zoo\n",        # config may not import models
        "distill/__init__.py": "from ..models._build import x\n",  # another part's private module
        "build/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..commands import x\n",
        "commands/__init__.py": "",
    })
    graph = import_graph(root)
    assert cycles(graph) == [["edgeclip.models._build", "edgeclip.models.zoo"]]
    bad = violations(graph)
    assert any("edgeclip.config:1 imports edgeclip.models.zoo: part config may not import part models" in b
               for b in bad), bad
    assert any("edgeclip.distill:1 imports edgeclip.models._build: a private module" in b for b in bad), bad
    assert not any(b.startswith("edgeclip.build") for b in bad), bad  # TYPE_CHECKING imports are annotations


@pytest.mark.parametrize("importer,imported,private", [
    ("edgeclip.distill.dcclip", "edgeclip.models._build", True),
    ("edgeclip.models.zoo", "edgeclip.models._build", False),
    ("edgeclip.models", "edgeclip.models._hf", False),
    ("edgeclip.bundle.labels", "edgeclip._io", False),
    ("edgeclip.build.stages.teacher", "edgeclip.distill", False),
])
def test_private_module_rule(importer, imported, private):
    assert _is_private_of_other_part(importer, imported) is private
