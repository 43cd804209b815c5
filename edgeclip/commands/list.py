"""``edgeclip list {targets,recipes,models,quant,backends}``: what exists, which toolchains are installed
(and whether the ARM64 twin, on which android artifacts are judged, is set up)."""
from __future__ import annotations

__all__ = ["main"]


def main(args) -> int:
    what = args.what
    if what == "targets":
        from ..config import list_targets, load_target
        for name, path in list_targets().items():
            t = load_target(path)
            backends = ", ".join(b.backend for b in t.backends)
            print(f"{name:<16} {t.platform:<8} {backends:<20} {t.description}")
    elif what == "recipes":
        from ..config import DEFAULT_RECIPE, list_recipes, load_recipe
        for name, path in list_recipes().items():
            r = load_recipe(path)
            mark = " (default)" if name == DEFAULT_RECIPE else ""
            print(f"{name:<24} {r.teacher:<40} {r.description}{mark}")
    elif what == "models":
        from ..models import list_models
        for row in list_models(include_openclip=args.all):
            print(f"{row['uri']:<48} {row['description']}")
    elif what == "backends":
        from ..backends import BACKENDS
        for name, b in BACKENDS.items():
            why = b.available()
            state = "available" if why is None else f"missing: {why}"
            print(f"{name:<11} {', '.join(b.formats):<12} {state}")
        from ..verify.arm64 import kit_status
        why = kit_status()  # where android artifacts are judged: the emulated phone cores
        print(f"{'arm64-twin':<11} {'.pte, .tflite, .onnx on emulated ARM cores':<12} "
              f"{'available' if why is None else 'missing: ' + why}")
    elif what == "quant":
        from ..backends import BACKENDS
        from ..config.names import QUANT_MODES
        for mode in QUANT_MODES:
            who = [n for n, b in BACKENDS.items() if mode in b.quant_modes]
            print(f"{mode:<13} {', '.join(who) or '-'}")
    return 0
