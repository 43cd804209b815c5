"""``edgeclip info URI [--json]``: parameters, FLOPs and preprocessing of a model."""
from __future__ import annotations

import json

__all__ = ["main"]


def main(args) -> int:
    from ..models import describe, format_facts
    facts = describe(args.uri)
    print(json.dumps(facts, indent=2) if args.json else format_facts(facts))
    return 0
