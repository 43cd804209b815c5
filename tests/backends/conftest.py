"""Backend test fixtures (the cases and the export cache live in _backends_cases.py)."""
from __future__ import annotations

import json
import os

import pytest

from _backends_cases import ExportCache


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    cache = ExportCache(tmp_path_factory.mktemp("exports"))
    yield cache
    dest = os.environ.get("EDGECLIP_BACKEND_NUMBERS")  # opt-in dump of measured numbers
    if dest:
        with open(dest, "w") as f:
            json.dump(cache.numbers, f, indent=1)
