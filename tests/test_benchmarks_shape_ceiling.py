"""benchmarks/shape_ceiling.py's own logic at toy size (its numbers come from a real run of
hundreds of steps; nothing here is timed): the ViT and the CNN code paths train and score on
the world's held-out and train splits, the grayscale view keeps shape while removing colour, and
the edge front maps a shape in any colour to the same outline."""
from __future__ import annotations

import pytest
import torch

from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def sc():
    return load_benchmark("shape_ceiling")


@pytest.mark.parametrize("variant", ["vit", "cnn-max-gray", "cnn-max-edge"])   # a ViT, a CNN with the gray view, one behind the edge front
def test_each_classifier_trains_and_scores_both_splits(sc, variant):
    row = sc.run(variant, steps=2, n_train=16, n_eval=8, batch=8)
    assert row["variant"] == variant and row["steps"] == 2 and row["n_eval"] == 8
    for key in ("heldout_shape", "train_split_shape"):
        assert 0.0 <= row[key] <= 1.0 and (row[key] * 8) % 1 == 0   # a fraction of 8 images
    assert row["final_loss"] > 0


def test_grayscale_half_turns_about_half_the_images_gray_and_leaves_the_rest(sc):
    x = torch.rand(200, 3, 4, 4)
    y = sc.grayscale_half(x, torch.Generator().manual_seed(0))
    gray = (y[:, 0] == y[:, 1]).all(-1).all(-1) & (y[:, 1] == y[:, 2]).all(-1).all(-1)
    kept = (y == x).flatten(1).all(1)
    assert (gray | kept).all() and 70 < int(gray.sum()) < 130
    luma = 0.299 * x[gray, 0] + 0.587 * x[gray, 1] + 0.114 * x[gray, 2]
    assert torch.allclose(y[gray, 0], luma, atol=1e-6)


def test_edge_front_sees_outlines_not_colours(sc):
    front = sc.EdgeMagnitude()
    x = torch.rand(4, 3, 16, 16)
    y = front(x)
    assert y.shape == (4, 1, 16, 16)
    assert torch.allclose(front(x[:, [2, 0, 1]]), y, atol=1e-5)        # any channel order: the same map
    square = torch.zeros(1, 3, 16, 16)
    square[..., 4:12, 4:12] = 1.0
    red, green = square * torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1), square * torch.tensor([0, 1.0, 0]).view(1, 3, 1, 1)
    assert torch.allclose(front(red), front(green), atol=1e-5)          # a red and a green square look alike
    bar = torch.zeros(1, 3, 16, 16)
    bar[..., 2:14, 6:10] = 1.0
    assert (front(bar) - front(red)).abs().max() > 0.5                  # another outline does not


def test_unknown_variant_is_a_one_line_error(sc):
    with pytest.raises(SystemExit, match="unknown variant 'resnet'; known: vit, cnn-avg"):
        sc.classifier("resnet")
