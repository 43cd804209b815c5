"""One intra-op thread for the distill tests: their models are tiny, and on a shared 2-core
machine two OpenMP threads spend most of each tiny op waiting for each other (30 toy steps took
10 s with two threads under load, 0.35 s with one)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
