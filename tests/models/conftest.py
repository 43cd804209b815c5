"""Fixtures for the model tests: builtin models built once per session, real photos, captions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    """Real decoded photos of different sizes (scikit-image samples), one grayscale."""
    from skimage import data

    return [data.astronaut(), data.chelsea(), data.coffee(), data.camera()]


@pytest.fixture(scope="session")
def builtin_models():
    from edgeclip.models import load_model

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = load_model(f"builtin:{name}")
        return cache[name]

    return get


@pytest.fixture(scope="session")
def tiny_vit(builtin_models):
    return builtin_models("tiny-vit")


@pytest.fixture(scope="session")
def cosine():
    """Row-wise cosine similarity in float64."""
    def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.detach().double(), b.detach().double()
        return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return cos
