"""Backend test fixtures (the cases and the export cache live in _backends_cases.py)."""
from __future__ import annotations

import json
import os

import pytest

from _backends_cases import ExportCache


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    shared = None
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' base folders share this session's parent
        shared = tmp_path_factory.getbasetemp().parent / "backend-exports"
        shared.mkdir(exist_ok=True)
    cache = ExportCache(tmp_path_factory.mktemp("exports"), shared)
    yield cache
    dest = os.environ.get("EDGECLIP_BACKEND_NUMBERS")  # opt-in dump of measured numbers
    if dest:
        with open(dest, "w") as f:
            json.dump(cache.numbers, f, indent=1)
