"""The shared trainer: decay groups, schedule, determinism, bit-identical resume, clipping."""
from __future__ import annotations

import math

import pytest
import torch
from _distill_toy import Toy, stack, toy_batches, toy_items, toy_loss

from edgeclip.distill.losses import clip_loss
from edgeclip.distill.trainer import TrainConfig, Trainer, lr_factor, split_decay
from edgeclip.errors import ConfigError, EdgeclipError, InputError


def _cfg(tmp_path=None, **kw) -> TrainConfig:
    base = dict(steps=12, lr=3e-2, weight_decay=0.1, warmup_steps=3, seed=0, device="cpu",
                progress=False, checkpoint_dir=str(tmp_path) if tmp_path else None)
    base.update(kw)
    return TrainConfig(**base)


def _params(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_no_decay_on_biases_norms_embeddings_and_scale():
    decay, no_decay = split_decay(Toy())
    assert sorted(decay) == ["conv.weight", "fc_a.weight", "fc_b.weight"]
    assert sorted(no_decay) == ["conv.bias", "embed.weight", "fc_a.bias", "logit_scale",
                                "norm.bias", "norm.weight", "pos_embed"]


def test_no_decay_on_a_real_vit_tower():
    from edgeclip.models._specs import ViTSpec
    from edgeclip.models._vit import ViT

    decay, no_decay = split_decay(ViT(ViTSpec(image_size=16, patch_size=8, width=32, layers=1, heads=2,
                                              embed_dim=16)))
    assert "patch_embed.weight" in decay and "proj.weight" in decay
    assert "blocks.0.attn.q.weight" in decay and "blocks.0.mlp.fc.weight" in decay
    assert {"class_embedding", "pos_embed", "ln_post.weight", "blocks.0.attn.q.bias"} <= set(no_decay)


def test_weight_decay_reaches_only_the_decay_group():
    # With a zero loss the only update is decay: decayed weights shrink, the rest stay put.
    m = Toy()
    before = _params(m)

    def zero_loss(model, batch):
        ea, eb, s = model(*batch)
        return 0.0 * (ea.sum() + eb.sum() + s)

    Trainer(m, zero_loss, toy_batches(), _cfg(steps=3, weight_decay=0.5, lr=0.1, warmup_steps=0)).fit()
    after = _params(m)
    assert after["fc_a.weight"].norm() < before["fc_a.weight"].norm() * 0.99
    for k in ("embed.weight", "pos_embed", "norm.weight", "fc_a.bias", "logit_scale"):
        assert torch.equal(after[k], before[k]), k


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, warmup=4, total=20, min_ratio=0.1) for s in range(20)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert f[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[4:], f[5:]))          # monotone decay after warmup
    assert f[12] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 8 / 16)))
    assert lr_factor(20, 4, 20, 0.1) == pytest.approx(0.1)  # the floor at the end

    t = Trainer(Toy(), toy_loss, toy_batches(), _cfg(steps=10, warmup_steps=2, lr=1.0))
    seen = []
    for _ in range(10):
        seen.append(t.optimizer.param_groups[0]["lr"])
        t.fit(stop_at=t.step + 1)
    assert seen == pytest.approx([lr_factor(s, 2, 10) for s in range(10)])


def test_same_seed_same_weights_other_seed_differs():
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        m = Toy(seed=0)
        Trainer(m, toy_loss, toy_batches(seed=seed), _cfg(seed=seed)).fit()
        runs[name] = _params(m)
    assert _equal(runs["a"], runs["b"])
    assert not _equal(runs["a"], runs["c"])


def test_training_lowers_the_loss_and_records_parts():
    r = Trainer(Toy(), toy_loss, toy_batches(), _cfg(steps=30, lr=5e-2)).fit()
    assert len(r.losses) == 30 and r.steps == 30 and r.start_step == 0
    assert sum(r.losses[-5:]) / 5 < sum(r.losses[:5]) / 5 - 0.2
    assert len(r.parts["scale"]) == 30 and r.samples_per_s > 0
    assert r.precision == "fp32" and r.device == "cpu" and r.world_size == 1


def test_resume_is_bit_identical(tmp_path):
    n = 7
    straight = Toy()
    Trainer(straight, toy_loss, toy_batches(), _cfg(steps=2 * n)).fit()

    first = Toy()
    r1 = Trainer(first, toy_loss, toy_batches(), _cfg(tmp_path, steps=2 * n)).fit(stop_at=n)
    assert r1.steps == n and (tmp_path / "state.pt").is_file()
    assert not _equal(_params(first), _params(straight))
    # the state file is plain tensors and containers: loadable with weights_only=True
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["step"] == n

    torch.manual_seed(12345)  # a fresh "process": the global RNG is elsewhere until resumed
    resumed = Toy(seed=99)    # different init: every weight must come from the checkpoint
    r2 = Trainer(resumed, toy_loss, toy_batches(), _cfg(tmp_path, steps=2 * n)).fit()
    assert r2.start_step == n and r2.steps == 2 * n and len(r2.losses) == n
    assert _equal(_params(resumed), _params(straight))


def test_fit_in_pieces_equals_one_fit():
    straight, pieces = Toy(), Toy()
    Trainer(straight, toy_loss, toy_batches(), _cfg()).fit()
    t = Trainer(pieces, toy_loss, toy_batches(), _cfg())
    for stop in (2, 5, 11, None):
        t.fit(stop_at=stop)
    assert t.step == 12 and _equal(_params(pieces), _params(straight))


def test_resume_of_plain_iterable_fast_forwards(tmp_path):
    def batches():
        items = toy_items(64)
        return [stack(items[i:i + 8]) for i in range(0, 64, 8)]

    straight = Toy()
    Trainer(straight, toy_loss, batches(), _cfg(steps=8)).fit()
    Trainer(Toy(), toy_loss, batches(), _cfg(tmp_path, steps=8)).fit(stop_at=3)
    resumed = Toy(seed=5)
    Trainer(resumed, toy_loss, batches(), _cfg(tmp_path, steps=8)).fit()
    assert _equal(_params(resumed), _params(straight))


def test_iterable_that_runs_out_says_so():
    with pytest.raises(ConfigError, match="ran out at step 2"):
        Trainer(Toy(), toy_loss, [stack(toy_items(16)[:8])] * 2, _cfg(steps=4)).fit()


def test_periodic_checkpoints_and_no_temp_files(tmp_path):
    t = Trainer(Toy(), toy_loss, toy_batches(), _cfg(tmp_path, steps=6, checkpoint_every=2))
    t.fit(stop_at=5)
    assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_checkpoint_for_other_step_count_is_refused(tmp_path):
    Trainer(Toy(), toy_loss, toy_batches(), _cfg(tmp_path, steps=6)).fit(stop_at=2)
    with pytest.raises(ConfigError, match="6 steps"):
        Trainer(Toy(), toy_loss, toy_batches(), _cfg(tmp_path, steps=9)).fit()


def test_corrupt_checkpoint_is_an_input_error(tmp_path):
    (tmp_path / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="delete it"):
        Trainer(Toy(), toy_loss, toy_batches(), _cfg(tmp_path)).fit()


def test_gradients_are_clipped():
    m = Toy()
    r = Trainer(m, toy_loss, toy_batches(), _cfg(steps=3, grad_clip=1e-3)).fit()
    assert min(r.grad_norms) > 1e-2  # the raw gradients were far above the limit ...
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in m.parameters()))
    assert total <= 1e-3 * 1.001      # ... and the ones the optimizer saw were clipped


def test_non_finite_loss_stops_with_advice():
    def nan_loss(model, batch):
        ea, eb, s = model(*batch)
        return (ea.sum() + eb.sum() + s) * float("nan")

    with pytest.raises(EdgeclipError, match="lower lr"):
        Trainer(Toy(), nan_loss, toy_batches(), _cfg()).fit()


def test_progress_bar_shows_loss_and_throughput(capsys):
    Trainer(Toy(), toy_loss, toy_batches(), _cfg(steps=3, progress=True, desc="toy")).fit()
    err = capsys.readouterr().err
    assert "toy" in err and "loss=" in err and "samples/s=" in err and "3/3" in err


def test_bf16_autocast_when_asked_fp32_by_default_on_cpu():
    seen = []

    def loss(model, batch):
        ea, eb, s = model(*batch)
        seen.append(model.fc_a(ea).dtype)  # a matmul inside the step: bf16 only under autocast
        return clip_loss(ea, eb, s)

    r = Trainer(Toy(), loss, toy_batches(), _cfg(steps=2, precision="bf16")).fit()
    assert r.precision == "bf16" and seen[-1] == torch.bfloat16 and math.isfinite(r.final_loss)
    r = Trainer(Toy(), loss, toy_batches(), _cfg(steps=2)).fit()
    assert r.precision == "fp32" and seen[-1] == torch.float32


def test_threads_apply_during_fit_and_are_restored():
    seen = []

    def loss(model, batch):
        seen.append(torch.get_num_threads())
        return toy_loss(model, batch)

    torch.set_num_threads(1)
    Trainer(Toy(), loss, toy_batches(), _cfg(steps=2, threads=2)).fit()
    assert seen == [2, 2] and torch.get_num_threads() == 1


@pytest.mark.parametrize("bad", [dict(steps=0), dict(lr=0.0), dict(precision="fp8"), dict(grad_clip=0.0),
                                 dict(min_lr_ratio=2.0), dict(warmup_steps=-1), dict(threads=0)])
def test_config_is_validated(bad):
    with pytest.raises(ConfigError):
        _cfg(**bad)


def test_unknown_device_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown device"):
        Trainer(Toy(), toy_loss, toy_batches(), _cfg(device="tpu"))
