"""Reinforced datasets in MobileCLIP's layout: WebDataset shards plus ``index.json``.

One sample per key, consecutive tar members (readable by ``WebDatasetLoader`` too)::

    {key}.png        the image, lossless, so replayed augmentations see the teacher's pixels
    {key}.txt        ground-truth caption (UTF-8)
    {key}.syn.json   {"syn_text": [...]}                 synthetic captions (N)
    {key}.paug.json  {"param_aug": [...]}                K dicts from augment.sample_params
    {key}.npz        image_emb [K, sum(dims)], text_emb [1+N, sum(dims)] (row 0: the caption);
                     bf16 is stored as the uint16 bit pattern plus dtype="bf16"
    {key}.json       meta (JSON object)

``index.json`` in the dataset root::

    {"schema": "edgeclip.reinforced/1", "teachers": [{"uri", "dim", "logit_scale"}], "k", "syn",
     "dtype", "augment": AugmentConfig.to_dict(), "source": {...},
     "shards": [{"file": "shard-00000.tar", "samples": n, "sha256": ...}], "complete": bool}

Shards and index are written atomically (temp file + rename) with fixed tar and zip metadata,
so rerunning a shard reproduces its bytes exactly. Only numpy and the standard library.
"""
from __future__ import annotations

import bisect
import io
import json
import os
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_file, sha256_path
from ..errors import ConfigError, InputError
from ._base import BadImage, decode_image
from .augment import AugmentConfig
from .webdataset import split_member_name

__all__ = [
    "SCHEMA", "INDEX_FILE", "DTYPES", "ReinforcedSample", "write_shard", "read_shard",
    "shard_name", "write_index", "read_index", "ReinforcedDataset",
]

SCHEMA = "edgeclip.reinforced/1"
INDEX_FILE = "index.json"
DTYPES = ("fp32", "bf16")
REQUIRED = ("png", "txt", "syn.json", "paug.json", "npz")
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # no dots: WebDataset splits the key at the first
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)          # the earliest zip date; numpy would store "now"


@dataclass
class ReinforcedSample:
    key: str
    image: np.ndarray          # uint8 [H, W, 3]
    caption: str
    syn_captions: list[str]
    param_aug: list[dict]      # K entries from augment.sample_params
    image_emb: np.ndarray      # float32 [K, D]
    text_emb: np.ndarray       # float32 [1+N, D]; row 0 the caption, rows 1.. syn_captions
    meta: dict = field(default_factory=dict)


def shard_name(i: int) -> str:
    return f"shard-{int(i):05d}.tar"


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".replace("\n", " ")


# --- encoding --------------------------------------------------------------------------------

def _to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> uint16 bfloat16 bit pattern, round to nearest even (as torch rounds)."""
    f = np.ascontiguousarray(x, np.float32)
    b = f.view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(f)
    r[nan] = ((b[nan] >> 16) | 0x40).astype(np.uint16)  # keep NaN a (quiet) NaN
    return r


def _from_bf16_bits(u: np.ndarray) -> np.ndarray:
    return (np.asarray(u, np.uint16).astype(np.uint32) << 16).view(np.float32)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``np.savez`` with a fixed zip timestamp, so equal arrays give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.create_system, info.external_attr = 3, 0o644 << 16
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.asarray(arr), allow_pickle=False)
            zf.writestr(info, npy.getvalue())
    return buf.getvalue()


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG", compress_level=6)  # no tIME chunk: deterministic
    return buf.getvalue()


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _check_sample(s: ReinforcedSample) -> None:
    where = f"reinforced sample {s.key!r}"
    if not isinstance(s.key, str) or not _KEY.match(s.key):
        raise InputError(f"{where}: key must be 1-64 letters, digits, '_' or '-' (no dots)")
    img = np.asarray(s.image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"{where}: image must be uint8 HxWx3, got {img.dtype} {img.shape}")
    ie, te = np.asarray(s.image_emb), np.asarray(s.text_emb)
    if ie.ndim != 2 or te.ndim != 2 or ie.shape[1] != te.shape[1]:
        raise InputError(f"{where}: image_emb [K, D] and text_emb [1+N, D] must share D, got "
                         f"{ie.shape} and {te.shape}")
    if ie.shape[0] != len(s.param_aug) or te.shape[0] != 1 + len(s.syn_captions):
        raise InputError(f"{where}: {len(s.param_aug)} param_aug and {len(s.syn_captions)} "
                         f"syn_captions do not match image_emb {ie.shape} / text_emb {te.shape}")


def _members(s: ReinforcedSample, dtype: str) -> list[tuple[str, bytes]]:
    ie, te = np.asarray(s.image_emb, np.float32), np.asarray(s.text_emb, np.float32)
    if dtype == "bf16":
        arrays = {"image_emb": _to_bf16_bits(ie), "text_emb": _to_bf16_bits(te),
                  "dtype": np.array("bf16")}
    else:
        arrays = {"image_emb": ie, "text_emb": te}
    return [
        ("png", _png_bytes(np.ascontiguousarray(s.image))),
        ("txt", s.caption.encode("utf-8")),
        ("syn.json", _json_bytes({"syn_text": list(s.syn_captions)})),
        ("paug.json", _json_bytes({"param_aug": list(s.param_aug)})),
        ("npz", _npz_bytes(arrays)),
        ("json", _json_bytes(s.meta or {})),
    ]


def write_shard(path: str | os.PathLike, samples, dtype: str = "fp32") -> dict:
    """Write ``samples`` to the tar ``path`` atomically, byte-for-byte reproducibly.
    Returns the index entry ``{"file", "samples", "sha256"}``."""
    if dtype not in DTYPES:
        raise ConfigError(f"unknown reinforced dtype {dtype!r}; known: {', '.join(DTYPES)}")
    path, samples = Path(path), list(samples)
    keys = set()
    with atomic_file(path, fsync=True) as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for s in samples:
            _check_sample(s)
            if s.key in keys:
                raise InputError(f"duplicate reinforced sample key {s.key!r} in {path}")
            keys.add(s.key)
            for ext, data in _members(s, dtype):
                info = tarfile.TarInfo(f"{s.key}.{ext}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tf.addfile(info, io.BytesIO(data))
    return {"file": path.name, "samples": len(samples), "sha256": sha256_path(path)}


# --- decoding --------------------------------------------------------------------------------

def _decode(where: str, files: dict[str, bytes], key: str) -> ReinforcedSample:
    """Member bytes of one sample -> ReinforcedSample; InputError naming ``where``."""
    missing = [e for e in REQUIRED if e not in files]
    if missing:
        raise InputError(f"{where}: sample {key!r} lacks member(s) .{', .'.join(missing)}; "
                         "rerun `edgeclip reinforce` to rewrite the shard")
    try:
        image = decode_image(files["png"], f"{where}:{key}.png")
        syn = json.loads(files["syn.json"])["syn_text"]
        paug = json.loads(files["paug.json"])["param_aug"]
        meta = json.loads(files["json"]) if "json" in files else {}
        with np.load(io.BytesIO(files["npz"]), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        ie, te = arrays["image_emb"], arrays["text_emb"]
        if "dtype" in arrays and str(arrays["dtype"]) == "bf16":
            ie, te = _from_bf16_bits(ie), _from_bf16_bits(te)
        sample = ReinforcedSample(key, image, files["txt"].decode("utf-8"), list(syn), list(paug),
                                  np.asarray(ie, np.float32), np.asarray(te, np.float32), meta)
    except BadImage as e:
        raise InputError(f"{where}: sample {key!r} has a bad image ({_one_line(e)})") from e
    except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as e:
        raise InputError(f"{where}: sample {key!r} is corrupt ({_one_line(e)}); "
                         "rerun `edgeclip reinforce` to rewrite the shard") from e
    try:
        _check_sample(sample)
    except InputError as e:
        raise InputError(f"{where}: {e}") from e
    return sample


def _scan(path: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """Sample keys in order with each member's (data offset, size), from the tar headers."""
    groups: list[tuple[str, dict[str, tuple[int, int]]]] = []
    try:
        with tarfile.open(path, mode="r:") as tf:
            for m in tf:
                parts = split_member_name(m.name) if m.isfile() else None
                if parts is None:
                    continue
                if not groups or groups[-1][0] != parts[0]:
                    groups.append((parts[0], {}))
                groups[-1][1][parts[1]] = (m.offset_data, m.size)
            stop = tf.offset
        with open(path, "rb") as f:
            f.seek(stop)
            tail = f.read(2 * tarfile.BLOCKSIZE)
    except FileNotFoundError as e:
        raise InputError(f"reinforced shard {path} is missing; rerun `edgeclip reinforce` "
                         "(it resumes)") from e
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InputError(f"{path}: unreadable tar ({_one_line(e)}); rerun `edgeclip "
                         "reinforce` to rewrite it") from e
    # tarfile stops quietly at a damaged header or a cut between members; a whole tar ends
    # with two zero blocks exactly where the listing stopped.
    if tail != bytes(2 * tarfile.BLOCKSIZE):
        raise InputError(f"{path}: truncated or corrupt tar (no end-of-archive marker at byte "
                         f"{stop}); rerun `edgeclip reinforce` to rewrite it")
    return groups


def _read_members(f, members: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    out = {}
    for ext, (off, size) in members.items():
        f.seek(off)
        out[ext] = f.read(size)
    return out


def read_shard(path: str | os.PathLike) -> list[ReinforcedSample]:
    """Every sample of one shard, embeddings as float32."""
    path = Path(path)
    groups = _scan(path)
    with open(path, "rb") as f:
        return [_decode(str(path), _read_members(f, m), key) for key, m in groups]


# --- index and dataset -----------------------------------------------------------------------

def write_index(root: str | os.PathLike, index: dict) -> Path:
    """Write ``root/index.json`` atomically (``schema`` filled in if absent)."""
    index = {"schema": SCHEMA, **index}
    if index["schema"] != SCHEMA or not isinstance(index.get("shards"), list):
        raise ConfigError(f"a reinforced index needs schema {SCHEMA!r} and a shards list")
    path = Path(root) / INDEX_FILE
    with atomic_file(path, fsync=True) as f:
        f.write(json.dumps(index, indent=1, ensure_ascii=False).encode("utf-8"))
    return path


def read_index(root: str | os.PathLike) -> dict:
    path = Path(root) / INDEX_FILE
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise InputError(f"{path} not found: not a reinforced dataset; create it with "
                         "`edgeclip reinforce`") from e
    except (ValueError, OSError) as e:
        raise InputError(f"{path}: unreadable index ({_one_line(e)}); rerun "
                         "`edgeclip reinforce` (it resumes)") from e
    if not isinstance(index, dict) or index.get("schema") != SCHEMA:
        got = index.get("schema") if isinstance(index, dict) else type(index).__name__
        raise InputError(f"{path}: schema {got!r} is not {SCHEMA!r}")
    return index


class ReinforcedDataset:
    """Map-style view of every sample in a complete reinforced dataset.

    Opening reads each shard's tar headers once (offsets of every member); ``ds[i]`` then
    seeks to and reads only sample ``i``'s members. ``verify=True`` also checks each shard's
    sha256 against the index. Picklable, so it works with DataLoader workers."""

    def __init__(self, root: str | os.PathLike, verify: bool = False):
        self.root = Path(root)
        self.index = read_index(self.root)
        shards = self.index["shards"]
        if not self.index.get("complete"):
            raise InputError(f"{self.root / INDEX_FILE} is incomplete ({len(shards)} shard(s) "
                             "written so far); rerun `edgeclip reinforce` (it resumes)")
        self._files: list[Path] = []
        self._groups: list[list[tuple[str, dict]]] = []
        self._starts: list[int] = []
        total = 0
        for entry in shards:
            path = self.root / entry["file"]
            if not path.is_file():
                raise InputError(f"reinforced shard {path} is missing; rerun `edgeclip "
                                 "reinforce` (it resumes)")
            if verify and sha256_path(path) != entry.get("sha256"):
                raise InputError(f"{path}: sha256 differs from {INDEX_FILE}; the shard changed "
                                 "or is damaged; rerun `edgeclip reinforce` to rewrite it")
            groups = _scan(path)
            if len(groups) != entry["samples"]:
                raise InputError(f"{path}: {len(groups)} samples, {INDEX_FILE} says "
                                 f"{entry['samples']}; rerun `edgeclip reinforce` to rewrite it")
            self._files.append(path)
            self._groups.append(groups)
            self._starts.append(total)
            total += len(groups)
        self._len = total

    @property
    def dims(self) -> list[int]:
        return [int(t["dim"]) for t in self.index.get("teachers", [])]

    @property
    def augment(self) -> AugmentConfig:
        """The config the stored params were drawn with (replay with the same one)."""
        return AugmentConfig.from_dict(self.index.get("augment") or {})

    @property
    def k(self) -> int:
        return int(self.index["k"])

    @property
    def syn(self) -> int:
        return int(self.index["syn"])

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> ReinforcedSample:
        i = int(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"index {i} out of range for {self._len} samples")
        s = bisect.bisect_right(self._starts, i) - 1
        key, members = self._groups[s][i - self._starts[s]]
        with open(self._files[s], "rb") as f:  # per call: safe across forked workers
            sample = _decode(str(self._files[s]), _read_members(f, members), key)
        if self.dims and sample.image_emb.shape[1] != sum(self.dims):
            raise InputError(f"{self._files[s]}: sample {key!r} has embedding width "
                             f"{sample.image_emb.shape[1]}, teachers in {INDEX_FILE} sum to "
                             f"{sum(self.dims)}")
        return sample
