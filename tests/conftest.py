"""Shared test setup: deterministic, small, single-process torch on 2 cores."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")        # no test may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
