"""The ``edgeclip`` command: argument parsing, exit codes, one-line errors.

Exit codes: 0 success, 1 a verification threshold failed, 2 bad input or a missing
toolchain, 3 an internal error (a bug: please report it with ``--debug`` output).
Toolchains are never imported here, so ``--help`` and ``list`` stay fast.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import EdgeclipError, exit_code

__all__ = ["main"]


def _cmd_list(args) -> int:
    what = args.what
    if what == "targets":
        from .config import list_targets, load_target
        for name, path in list_targets().items():
            t = load_target(path)
            backends = ", ".join(b.backend for b in t.backends)
            print(f"{name:<16} {t.platform:<8} {backends:<20} {t.description}")
    elif what == "recipes":
        from .config import DEFAULT_RECIPE, list_recipes, load_recipe
        for name, path in list_recipes().items():
            r = load_recipe(path)
            mark = " (default)" if name == DEFAULT_RECIPE else ""
            print(f"{name:<24} {r.teacher:<40} {r.description}{mark}")
    elif what == "models":
        from .models import list_models
        for name in list_models():
            print(name)
    elif what == "backends":
        from .backends import BACKENDS
        for name, b in BACKENDS.items():
            why = b.available()
            state = "available" if why is None else f"missing: {why}"
            print(f"{name:<11} {', '.join(b.formats):<12} {state}")
    elif what == "quant":
        from .backends import BACKENDS
        from .names import QUANT_MODES
        for mode in QUANT_MODES:
            who = [n for n, b in BACKENDS.items() if mode in b.quant_modes]
            print(f"{mode:<13} {', '.join(who) or '-'}")
    return 0


def _load_recipe_target(args):
    from .config import default_recipe, load_recipe, load_target
    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    target = load_target(args.target)
    return recipe, target


def _cmd_build(args) -> int:
    from .plan import make_plan
    recipe, target = _load_recipe_target(args)
    out = Path(args.out) if args.out else None
    plan = make_plan(recipe, target, out)
    if args.plan:
        print(plan.describe())
        return 0
    from .pipeline import run_build
    return run_build(plan, force=args.force)


def _cmd_info(args) -> int:
    from .models import describe, format_facts
    facts = describe(args.uri)
    print(json.dumps(facts, indent=2) if args.json else format_facts(facts))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeclip",
        description="Compile CLIP-style image-text models into verified on-device artifacts.")
    p.add_argument("--version", action="version", version=f"edgeclip {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ls = sub.add_parser("list", help="list targets, recipes, models, quantization modes or backends")
    ls.add_argument("what", choices=["targets", "recipes", "models", "quant", "backends"])
    ls.set_defaults(func=_cmd_list)

    b = sub.add_parser("build", help="distil, quantize, export, verify and bundle for a target")
    b.add_argument("--target", required=True, help="target name (edgeclip list targets) or a .yaml path")
    b.add_argument("--recipe", help="recipe name or .yaml path (default: the embedded default recipe)")
    b.add_argument("--out", help="output folder (default: build/<recipe>/<target>)")
    b.add_argument("--plan", action="store_true", help="validate and print the stages, run nothing")
    b.add_argument("--force", metavar="STAGE", help="rerun from this stage on")
    b.set_defaults(func=_cmd_build)

    i = sub.add_parser("info", help="parameters, FLOPs and preprocessing of a model URI")
    i.add_argument("uri", help="openclip:NAME[/TAG] | hf:ID | file:PATH | builtin:NAME")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgeclipError as e:
        if args.debug:
            raise
        msg = " ".join(str(e).split("\n"))
        print(f"edgeclip: error: {msg}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        print("edgeclip: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line unless --debug
        if args.debug:
            raise
        print(f"edgeclip: internal error: {type(e).__name__}: {e} (rerun with --debug for the "
              "traceback and report it)", file=sys.stderr)
        return exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
