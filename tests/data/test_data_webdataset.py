"""WebDataset shards written here with tarfile; brace and glob shard patterns."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from edgeclip.data import WebDatasetLoader, expand_braces, expand_shards, open_dataset
from edgeclip.data.webdataset import split_member_name
from edgeclip.errors import InputError


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    img = np.full((6, 8, 3), value, np.uint8)
    img[0, 0] = (255 - value, 0, value)  # not flat, so a decode mix-up would show
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _write_shard(path, samples, mode="w"):
    """samples: list of (key, {ext: bytes})."""
    with tarfile.open(path, mode) as tf:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def _key(shard: int, k: int) -> str:
    return f"{shard:03d}{k:06d}"


@pytest.fixture
def shards(tmp_path):
    """3 shards x 4 samples; shard 1 holds a corrupt image, a sample without caption and one
    whose caption is only in its .json."""
    paths = []
    for s in range(3):
        samples = []
        for k in range(4):
            key = _key(s, k)
            members = {"png" if k % 2 else "jpg": _png(10 * s + k) if k % 2 else _jpeg(10 * s + k),
                       "txt": f"caption {s}-{k}".encode(),
                       "json": json.dumps({"uid": key, "w": 8}).encode()}
            samples.append((key, members))
        if s == 1:
            samples[1][1]["png"] = b"\x89PNG\r\n\x1a\n broken"
            del samples[2][1]["txt"]
            del samples[3][1]["txt"]
            samples[3][1]["json"] = json.dumps({"caption": "from json"}).encode()
        paths.append(_write_shard(tmp_path / f"shard-{s:06d}.tar", samples))
    return tmp_path, paths


def test_brace_expansion():
    assert expand_braces("shard-{000000..000002}.tar") == [
        "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert expand_braces("{a,b}-{8..10}") == ["a-8", "a-9", "a-10", "b-8", "b-9", "b-10"]
    assert expand_braces("x{3..1}") == ["x3", "x2", "x1"]
    assert expand_braces("lit{x}-{1,2}") == ["lit{x}-1", "lit{x}-2"]
    assert len(expand_braces("s-{00000..09999}.tar")) == 10000


def test_expand_shards_globs_joins_and_reports_missing(shards):
    root, paths = shards
    assert expand_shards(str(root / "shard-{000000..000002}.tar")) == [str(p) for p in paths]
    assert expand_shards(str(root / "shard-*.tar")) == [str(p) for p in paths]
    joined = f"{root}/shard-000002.tar::{root}/shard-00000[01].tar"
    assert expand_shards(joined) == [str(paths[2]), str(paths[0]), str(paths[1])]
    with pytest.raises(InputError, match=r"2 of 5 shards not found, first: .*shard-000003\.tar"):
        expand_shards(str(root / "shard-{000000..000004}.tar"))
    with pytest.raises(InputError, match="remote"):
        expand_shards("s3://bucket/shard-{0..3}.tar")


def test_member_names_split_like_webdataset():
    assert split_member_name("000123.jpg") == ("000123", "jpg")
    assert split_member_name("./dir/000123.seg.PNG") == ("./dir/000123", "seg.png")
    assert split_member_name("dir.v2/abc.txt") == ("dir.v2/abc", "txt")
    assert split_member_name("README") is None


def test_reads_samples_in_order_and_skips_bad_ones(shards):
    root, _ = shards
    loader = WebDatasetLoader(str(root / "shard-{000000..000002}.tar"))
    items = list(loader)
    keys = [m["key"] for _, _, m in items]
    assert keys == [_key(s, k) for s in range(3) for k in range(4) if (s, k) not in ((1, 1), (1, 2))]
    by_key = {m["key"]: (img, cap, m) for img, cap, m in items}
    img, cap, meta = by_key[_key(0, 1)]
    assert cap == "caption 0-1" and meta["json"] == {"uid": _key(0, 1), "w": 8}
    assert img.shape == (6, 8, 3) and img.flags.c_contiguous
    assert img[1, 1].tolist() == [1, 1, 1] and img[0, 0].tolist() == [254, 0, 1]  # PNG exact
    assert abs(int(by_key[_key(2, 2)][0].mean()) - 22) <= 2  # JPEG of value 22
    assert by_key[_key(1, 3)][1] == "from json"
    assert meta["members"] == ["json", "png", "txt"] and meta["shard"].endswith("shard-000000.tar")
    assert loader.stats.yielded == 10 and loader.stats.skipped == 2
    assert any(f"{_key(1, 1)}.png" in b and "cannot decode" in b for b in loader.stats.bad)
    assert any(_key(1, 2) in b and "no .txt" in b for b in loader.stats.bad)


def test_fail_policy_names_shard_and_key(shards):
    root, paths = shards
    with pytest.raises(InputError, match=rf"shard-000001\.tar:{_key(1, 1)}\.png"):
        list(WebDatasetLoader([str(paths[1])], on_bad_image="fail"))


def test_truncated_and_gzipped_shards(shards, tmp_path):
    root, paths = shards
    with tarfile.open(paths[0]) as tf:
        m = tf.getmembers()[6]  # the image of sample 2 (3 members per sample)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(paths[0].read_bytes()[: m.offset_data + m.size // 2])
    loader = WebDatasetLoader([str(cut), str(paths[2])])
    keys = [m["key"] for _, _, m in loader]
    # Samples before the damage survive, the damaged one is lost, the next shard is read.
    assert keys == [_key(0, 0), _key(0, 1)] + [_key(2, k) for k in range(4)]
    assert loader.stats.skipped == 1 and "cut.tar" in loader.stats.bad[0]
    with pytest.raises(InputError, match=r"bad shard .*cut\.tar: unreadable tar"):
        list(WebDatasetLoader([str(cut)], on_bad_image="fail"))

    gz = _write_shard(tmp_path / "z.tar.gz", [("k1", {"png": _png(5), "txt": b"zipped"})], "w:gz")
    (img, cap, _), = list(open_dataset(str(gz)))
    assert cap == "zipped" and img[2, 2].tolist() == [5, 5, 5]


@pytest.mark.parametrize("world", [2, 4])  # 3 shards: split by shard (2), by sample (4)
def test_ranks_partition_samples_disjointly(shards, world):
    root, _ = shards
    pattern = str(root / "shard-*.tar")
    parts = [[m["key"] for _, _, m in WebDatasetLoader(pattern, rank=r, world_size=world)]
             for r in range(world)]
    flat = [k for p in parts for k in p]
    assert len(flat) == len(set(flat)) == 10 and all(parts)


def test_keep_extra_members_round_trip(tmp_path):
    emb = np.arange(6, dtype=np.float32).reshape(2, 3)
    buf = io.BytesIO()
    np.save(buf, emb)
    path = _write_shard(tmp_path / "r.tar", [("a", {"png": _png(1), "txt": b"t", "npy": buf.getvalue()})])
    (_, _, meta), = list(WebDatasetLoader(str(path), keep_extra=True))
    assert set(meta["extra"]) == {"npy"}
    assert np.array_equal(np.load(io.BytesIO(meta["extra"]["npy"])), emb)
