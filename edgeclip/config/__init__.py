"""Recipes and targets as frozen dataclasses (``config.py``), their YAML schema checks
(``_schema.py``) and the canonical names (``names.py``). Everything public is re-exported here:
``from edgeclip.config import load_recipe, Thresholds``.
"""
from __future__ import annotations

from .config import *  # noqa: F401,F403
from .config import __all__ as _config_all

__all__ = [*_config_all]
