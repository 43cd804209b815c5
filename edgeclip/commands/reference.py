"""``edgeclip reference [--recipe R] [--out DIR] [--device auto|cpu|cuda]``: the fp32 reference outputs
once (on cuda when present), for ``edgeclip build --reference DIR`` on CPU-only machines."""
from __future__ import annotations

from pathlib import Path

__all__ = ["main"]


def main(args) -> int:
    from ..config import default_recipe, load_recipe
    from ..build import run_reference
    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    res = run_reference(recipe, Path(args.out) if args.out else None, device=args.device)
    info = res["info"]
    c = info["counts"]
    print(f"reference for recipe {recipe.name} (model key {info['model_hash']}): fp32 torch {info['torch']} on "
          f"{info['device']} ({info['device_name']}), {c['images']} images, {c['captions']} captions, "
          f"{c['prompts']} prompts\n  {res['out']}\nreuse it with: edgeclip build --target T --recipe "
          f"{args.recipe or recipe.name} --reference {res['out']}")
    return 0
