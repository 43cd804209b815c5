"""StepBatches: a batch is a pure function of the step; epochs are permutations; ranks shard."""
from __future__ import annotations

import pytest

from edgeclip.distill.batches import StepBatches
from edgeclip.errors import ConfigError


class Recorder:
    """Items are their own index; remembers which epoch each read happened in."""

    def __init__(self, n: int):
        self.n, self.epoch, self.reads = n, 0, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads.append((self.epoch, i))
        return i

    def set_epoch(self, e):
        self.epoch = e


def test_each_epoch_is_a_permutation_and_epochs_differ():
    sb = StepBatches(list(range(12)), 4, seed=3)
    epoch0 = [i for s in range(3) for i in sb.batch(s)]
    epoch1 = [i for s in range(3, 6) for i in sb.batch(s)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(12))
    assert epoch0 != epoch1 and epoch0 != list(range(12))


def test_batches_across_an_epoch_boundary():
    sb = StepBatches(list(range(10)), 4, seed=0)
    first_two_epochs = [i for s in range(5) for i in sb.batch(s)]  # 20 items, step 2 straddles
    assert sorted(first_two_epochs[:10]) == sorted(first_two_epochs[10:]) == list(range(10))
    assert [e for e, _ in sb.indices(2)] == [0, 0, 1, 1]


def test_pure_function_of_step_and_seed():
    a, b = StepBatches(list(range(50)), 8, seed=1), StepBatches(list(range(50)), 8, seed=1)
    assert [a.batch(s) for s in (9, 0, 4)] == [b.batch(s) for s in (9, 0, 4)]  # order-free
    assert StepBatches(list(range(50)), 8, seed=2).batch(0) != a.batch(0)


def test_ranks_split_the_global_batch():
    sb = StepBatches(list(range(30)), 6, seed=0, collate=list)
    for step in (0, 7):
        shards = [sb.batch(step, r, 3) for r in range(3)]
        assert [i for s in shards for i in s] == sb.batch(step)
        assert all(len(s) == 2 for s in shards)


def test_world_size_must_divide_the_batch():
    with pytest.raises(ConfigError, match="divisible"):
        StepBatches(list(range(10)), 5, seed=0).batch(0, 0, 2)


def test_dataset_is_told_the_epoch_of_each_item():
    ds = Recorder(6)
    sb = StepBatches(ds, 4, seed=0)
    for s in range(3):
        sb.batch(s)
    assert [e for e, _ in ds.reads] == [0] * 6 + [1] * 6


def test_rejects_streams_and_empty_sets():
    with pytest.raises(ConfigError, match="map-style"):
        StepBatches(iter(range(5)), 2)
    with pytest.raises(ConfigError, match="non-empty"):
        StepBatches([], 2)


def test_groups_stay_together_in_batches_and_shards():
    sb = StepBatches(list(range(24)), 8, seed=5, group=2)
    for step in range(6):
        for shard in (sb.batch(step, r, 2) for r in range(2)):
            assert all(shard[k] // 2 == shard[k + 1] // 2 and shard[k] % 2 == 0 for k in range(0, len(shard), 2))
    assert sorted(i for s in range(3) for i in sb.batch(s)) == list(range(24))
    assert StepBatches(list(range(24)), 8, seed=5).batch(0) == StepBatches(
        list(range(24)), 8, seed=5, group=1).batch(0)


def test_group_must_divide_dataset_and_batch():
    with pytest.raises(ConfigError, match="group 2"):
        StepBatches(list(range(5)), 4, group=2)
    with pytest.raises(ConfigError, match="group 2"):
        StepBatches(list(range(8)), 3, group=2)
    with pytest.raises(ConfigError, match="group 2"):
        StepBatches(list(range(8)), 2, group=2).batch(0, 0, 2)
