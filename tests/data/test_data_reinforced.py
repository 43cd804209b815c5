"""Reinforced shards and index: exact round trips, reproducible bytes, random access, errors."""
from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import skimage.data

from edgeclip.data import SyntheticWorld, WebDatasetLoader, paraphrases
from edgeclip.data.augment import AugmentConfig, sample_params
from edgeclip.data.reinforced import (
    SCHEMA, ReinforcedDataset, ReinforcedSample, read_index, read_shard, shard_name,
    write_index, write_shard,
)
from edgeclip._io import sha256_path
from edgeclip.errors import InputError

K, N, DIMS = 3, 2, (8, 4)
_CROP_ONLY = AugmentConfig(rand_augment=False)  # numpy only: keeps this file torch-free
_OPS = [[5, -9.0], [3, 8.700906753540039], [7, 0.26999998092651367]]


def _emb(rng, rows):
    """Rows with each teacher's slice L2-normalized, as reinforce stores them."""
    parts = [rng.standard_normal((rows, d)).astype(np.float32) for d in DIMS]
    return np.concatenate([p / np.linalg.norm(p, axis=1, keepdims=True) for p in parts], 1)


def _samples(start, count, seed=0):
    world, rng = SyntheticWorld(seed=seed, image_size=32), np.random.default_rng(seed + start)
    out = []
    for i in range(start, start + count):
        image, cap, meta = world[i]
        paug = [{**sample_params(rng, 32, 32, _CROP_ONLY, 32), "rand_augment": _OPS}
                for _ in range(K)]
        out.append(ReinforcedSample(f"{i:06d}", image, cap, paraphrases(world.scene(i), N),
                                    paug, _emb(rng, K), _emb(rng, 1 + N), {"index": i}))
    return out


def _assert_same(a: ReinforcedSample, b: ReinforcedSample, emb_exact=True):
    assert (a.key, a.caption, a.syn_captions, a.param_aug, a.meta) == \
           (b.key, b.caption, b.syn_captions, b.param_aug, b.meta)
    assert a.image.dtype == b.image.dtype and np.array_equal(a.image, b.image)
    if emb_exact:
        assert a.image_emb.dtype == np.float32 and np.array_equal(a.image_emb, b.image_emb)
        assert np.array_equal(a.text_emb, b.text_emb)


def _bf16(x):
    """Nearest bfloat16 (ties to even), by comparing the two neighbours in float64."""
    x = np.asarray(x, np.float32)
    down = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)  # toward zero
    up = (down.view(np.uint32) + np.uint32(0x10000)).view(np.float32)    # away from zero
    even_down = (down.view(np.uint32) >> 16) % 2 == 0
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN inputs: replaced below
        d_down = np.abs(x.astype(np.float64) - down)
        d_up = np.abs(up.astype(np.float64) - x)
        out = np.where((d_down < d_up) | ((d_down == d_up) & even_down), down, up)
    return np.where(np.isfinite(x), out, x)


def test_fp32_round_trip_is_exact_on_a_photo(tmp_path):
    rng = np.random.default_rng(0)
    photo = skimage.data.astronaut()[::4, ::4]
    paug = [sample_params(rng, *photo.shape[:2], _CROP_ONLY, 64) for _ in range(K)]
    s = ReinforcedSample("astro", photo, "an astronaut", ["a woman in a space suit", "a flag"],
                         paug, _emb(rng, K), _emb(rng, 1 + N), {"src": "skimage", "ü": [1]})
    entry = write_shard(tmp_path / "a.tar", [s] + _samples(0, 2))
    assert entry["file"] == "a.tar" and entry["samples"] == 3
    assert entry["sha256"] == sha256_path(tmp_path / "a.tar")
    back = read_shard(tmp_path / "a.tar")
    assert [b.key for b in back] == ["astro", "000000", "000001"]
    for a, b in zip([s] + _samples(0, 2), back):
        _assert_same(a, b)


def test_bf16_equals_rounded_source(tmp_path):
    src = _samples(0, 2)
    src[0].image_emb[0, :4] = [np.nan, -np.inf, 3.0e38, 1 + 2 ** -8]  # 1+2^-8: a tie -> 1
    write_shard(tmp_path / "b.tar", src, dtype="bf16")
    for a, b in zip(src, read_shard(tmp_path / "b.tar")):
        _assert_same(a, b, emb_exact=False)
        assert b.image_emb.dtype == np.float32
        np.testing.assert_array_equal(b.image_emb, _bf16(a.image_emb))  # NaN == NaN here
        np.testing.assert_array_equal(b.text_emb, _bf16(a.text_emb))
    back = read_shard(tmp_path / "b.tar")
    assert back[0].image_emb[0, 3] == 1.0 and not np.array_equal(back[1].text_emb, src[1].text_emb)


def test_rewrite_gives_identical_bytes(tmp_path, monkeypatch):
    import time

    e1 = write_shard(tmp_path / "x.tar", _samples(0, 3), dtype="bf16")
    first = (tmp_path / "x.tar").read_bytes()
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 86400)  # a stored "now" would show up
    e2 = write_shard(tmp_path / "x.tar", _samples(0, 3), dtype="bf16")
    assert e1 == e2 and (tmp_path / "x.tar").read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["x.tar"]  # no temp file left behind
    with tarfile.open(tmp_path / "x.tar") as tf:
        names = tf.getnames()
        assert {(m.mtime, m.uid, m.gid, m.mode) for m in tf} == {(0, 0, 0, 0o644)}
    assert names[:6] == ["000000.png", "000000.txt", "000000.syn.json", "000000.paug.json",
                         "000000.npz", "000000.json"]


def test_plain_webdataset_loader_reads_the_shard(tmp_path):
    src = _samples(0, 2)
    write_shard(tmp_path / "w.tar", src)
    got = list(WebDatasetLoader(str(tmp_path / "w.tar"), on_bad_image="fail"))
    assert [c for _, c, _ in got] == [s.caption for s in src]
    assert np.array_equal(got[1][0], src[1].image) and got[0][2]["json"] == {"index": 0}


def _dataset(root, sizes=(3, 2), complete=True):
    root.mkdir(exist_ok=True)
    samples, entries = [], []
    for i, n in enumerate(sizes):
        chunk = _samples(len(samples), n)
        entries.append(write_shard(root / shard_name(i), chunk))
        samples += chunk
    write_index(root, {"teachers": [{"uri": f"t{d}", "dim": d, "logit_scale": 100.0}
                                    for d in DIMS],
                       "k": K, "syn": N, "dtype": "fp32", "augment": AugmentConfig().to_dict(),
                       "source": {"kind": "synthetic"}, "shards": entries, "complete": complete})
    return samples


def test_dataset_random_access_across_shards(tmp_path):
    src = _dataset(tmp_path / "ds")
    assert read_index(tmp_path / "ds")["schema"] == SCHEMA
    ds = ReinforcedDataset(tmp_path / "ds", verify=True)
    assert (len(ds), ds.dims, ds.k, ds.syn) == (5, [8, 4], K, N)
    assert ds.augment == AugmentConfig()
    for i in (4, 0, 3, 2, 1, -1):
        _assert_same(ds[i], src[i])
    with pytest.raises(IndexError):
        ds[5]
    import pickle

    assert pickle.loads(pickle.dumps(ds))[3].key == src[3].key


def _one_line_error(match, fn, *args):
    with pytest.raises(InputError, match=match) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_incomplete_or_missing_shards(tmp_path):
    _dataset(tmp_path / "ds", complete=False)
    _one_line_error("incomplete.*edgeclip reinforce", ReinforcedDataset, tmp_path / "ds")
    _dataset(tmp_path / "ds2")
    (tmp_path / "ds2" / shard_name(1)).unlink()
    _one_line_error("shard-00001.tar is missing.*edgeclip reinforce", ReinforcedDataset,
                    tmp_path / "ds2")
    _one_line_error("index.json not found", ReinforcedDataset, tmp_path / "nowhere")


@pytest.mark.parametrize("cut", ["mid_member", "between_samples", "mid_header"])
def test_truncated_shard(tmp_path, cut):
    path = tmp_path / "t.tar"
    write_shard(path, _samples(0, 3))
    with tarfile.open(path) as tf:
        members = tf.getmembers()
    data = path.read_bytes()
    end = {"mid_member": members[4].offset_data + 20,       # inside sample 0's npz
           "between_samples": members[6].offset,             # right before sample 1
           "mid_header": members[6].offset + 100}[cut]
    path.write_bytes(data[:end])
    why = "unreadable tar" if cut == "mid_member" else "truncated or corrupt tar"
    _one_line_error(rf"t\.tar: {why}.*edgeclip reinforce", read_shard, path)


def test_corrupt_shard_and_missing_member(tmp_path):
    path = tmp_path / "c.tar"
    write_shard(path, _samples(0, 2))
    with tarfile.open(path) as tf:
        npz = tf.getmember("000001.npz")
    data = bytearray(path.read_bytes())
    data[npz.offset_data:npz.offset_data + 64] = b"\xff" * 64  # garbage in the npz payload
    path.write_bytes(bytes(data))
    _one_line_error(r"c\.tar: sample '000001' is corrupt", read_shard, path)

    data = bytearray(path.read_bytes())
    data[npz.offset + 10] ^= 0x55  # damaged header: tarfile would stop here silently
    path.write_bytes(bytes(data))
    _one_line_error(r"c\.tar: truncated or corrupt tar", read_shard, path)

    _one_line_error(r"not-a-tar\.tar: unreadable tar", read_shard,
                    _write(tmp_path / "not-a-tar.tar", b"hello" * 300))

    # the same shard without sample 0's .npz member
    write_shard(path, _samples(0, 2))
    buf = io.BytesIO()
    with tarfile.open(path) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for m in src:
            if m.name != "000000.npz":
                dst.addfile(m, src.extractfile(m))
    _one_line_error(r"m\.tar: sample '000000' lacks member\(s\) \.npz;", read_shard,
                    _write(tmp_path / "m.tar", buf.getvalue()))


def _write(path, data):
    path.write_bytes(data)
    return path


def test_invalid_samples_are_refused(tmp_path):
    s = _samples(0, 1)[0]
    bad = [ReinforcedSample("a.b", s.image, "c", [], [], s.image_emb[:0], s.text_emb[:1]),
           ReinforcedSample("k", s.image, "c", s.syn_captions, s.param_aug[:1], s.image_emb,
                            s.text_emb),
           ReinforcedSample("k", s.image.astype(np.float32), "c", s.syn_captions, s.param_aug,
                            s.image_emb, s.text_emb)]
    for b in bad:
        with pytest.raises(InputError):
            write_shard(tmp_path / "bad.tar", [b])
    with pytest.raises(InputError, match="duplicate"):
        write_shard(tmp_path / "bad.tar", [s, s])
    assert not (tmp_path / "bad.tar").exists()
