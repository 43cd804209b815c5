"""Method options from a recipe's ``options:`` mapping (torch-free: plans validate them)."""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..errors import ConfigError

__all__ = ["options_from"]


def options_from(cls: type, options: dict[str, Any], what: str):
    """``cls(**options)``, an unknown key being a one-line ConfigError listing the valid ones."""
    valid = {f.name for f in fields(cls)}
    bad = sorted(set(options) - valid)
    if bad:
        raise ConfigError(f"{what} options: unknown keys {bad}; valid keys: {sorted(valid)}")
    return cls(**options)
