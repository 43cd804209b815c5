"""Tokenizers that travel with a model into an app bundle.

Two kinds: ``openclip-bpe`` (open_clip's ``SimpleTokenizer``, the OpenAI CLIP BPE that ships
inside the open_clip package) and ``hf`` (a Hugging Face ``tokenizers`` tokenizer). Each can
``export(dir)`` the files an app needs and be reloaded from them with ``load_tokenizer(dir)``,
giving identical ids. ``encode`` always returns ``int32[B, context_length]`` (the text tower's
input dtype), truncated with the end-of-text token kept last.

Exported files, for both kinds: ``tokenizer.json``, the Hugging Face ``tokenizers`` file with
truncation and padding set to the context length (``tokenizers.Tokenizer.from_file``,
swift-transformers, transformers.js and DJL read it and give the reference ids), and
``tokenizer_config.json`` (special tokens, ``model_max_length`` for transformers; edgeclip's own
description of the framing in its ``edgeclip`` section). openclip-bpe also writes ``vocab.json`` +
``merges.txt`` (Hugging Face's CLIP layout, which ``CLIPTokenizer`` reads); its tokenizer.json
rebuilds open_clip's ftfy cleaning from standard normalizers (``_clip_bpe_json``).
"""
from __future__ import annotations

import gzip
import io
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._io import write_text_atomic
from ..errors import InputError

__all__ = ["Tokenizer", "OpenClipTokenizer", "HFTokenizer", "load_tokenizer", "TOKENIZER_KINDS"]

TOKENIZER_KINDS = ("openclip-bpe", "hf")
_HF_SOT, _HF_EOT = "<|startoftext|>", "<|endoftext|>"  # names HF CLIP's vocab.json uses


class Tokenizer(ABC):
    """``encode(list[str]) -> int32[B, context_length]`` plus what an app needs to do the same."""

    kind: str
    context_length: int
    vocab_size: int
    sot_id: int | None
    eot_id: int
    pad_id: int

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    @abstractmethod
    def export(self, directory: str | Path) -> list[Path]:
        """Write the tokenizer files into ``directory``; returns the paths written."""

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts)

    def test_vectors(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """``[{"text", "ids"}]`` for the bundle: an app checks its tokenizer port against these."""
        ids = self.encode(list(texts))
        return [{"text": t, "ids": row.tolist()} for t, row in zip(texts, ids)]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "context_length": self.context_length, "vocab_size": self.vocab_size,
                "sot_id": self.sot_id, "eot_id": self.eot_id, "pad_id": self.pad_id}

    @staticmethod
    def _check(texts) -> list[str]:
        if isinstance(texts, str):
            return [texts]
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise InputError("tokenizer input must be a list of strings")
        return texts


class OpenClipTokenizer(Tokenizer):
    """open_clip's ``SimpleTokenizer`` (lower-cased, ftfy-cleaned BPE, vocab 49408)."""

    kind = "openclip-bpe"

    def __init__(self, context_length: int = 77, merges: Sequence[str] | None = None):
        from open_clip.tokenizer import SimpleTokenizer, default_bpe

        if merges is None:
            self._tok = SimpleTokenizer(default_bpe(), context_length=context_length)
        else:  # SimpleTokenizer reads gzip'ed merges with a header line; it accepts a file object
            blob = gzip.compress(("#version: 0.2\n" + "\n".join(merges) + "\n").encode("utf-8"))
            self._tok = SimpleTokenizer(io.BytesIO(blob), context_length=context_length)
        self.context_length = int(context_length)
        self.vocab_size = self._tok.vocab_size
        self.sot_id = self._tok.sot_token_id
        self.eot_id = self._tok.eot_token_id
        self.pad_id = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ids = self._tok(self._check(texts), context_length=self.context_length)
        return ids.numpy().astype(np.int32)

    def merges(self) -> list[str]:
        return [" ".join(pair) for pair, _ in sorted(self._tok.bpe_ranks.items(), key=lambda kv: kv[1])]

    def hf_backend(self):
        """This tokenizer as a Hugging Face ``tokenizers.Tokenizer`` (what tokenizer.json holds)."""
        from ._clip_bpe_json import clip_bpe_backend

        return clip_bpe_backend(self._hf_vocab(), list(self._tok.bpe_ranks), sot=(_HF_SOT, self.sot_id),
                                eot=(_HF_EOT, self.eot_id), context_length=self.context_length,
                                pad_id=self.pad_id)

    def _hf_vocab(self) -> dict[str, int]:
        names = {"<start_of_text>": _HF_SOT, "<end_of_text>": _HF_EOT}
        return {names.get(tok, tok): i for tok, i in self._tok.encoder.items()}

    def export(self, directory: str | Path) -> list[Path]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {**self.describe(), "type": self.kind, "sot_token": _HF_SOT, "eot_token": _HF_EOT,
                "clean": "ftfy.fix_text, html.unescape twice, collapse whitespace, lower-case "
                         "(tokenizer.json rebuilds it from standard normalizers; see edgeclip.models._clip_bpe_json)",
                "files": {"vocab": "vocab.json", "merges": "merges.txt"}}
        paths = [d / "vocab.json", d / "merges.txt"]
        write_text_atomic(paths[0], json.dumps(self._hf_vocab(), ensure_ascii=False))
        write_text_atomic(paths[1], "#version: 0.2\n" + "\n".join(self.merges()) + "\n")
        # no pad_token: open_clip pads with id 0, which is "!", and a declared pad token becomes
        # special to transformers (it splits "!!!"); tokenizer.json's own padding pads with 0
        specials = {"bos_token": _HF_SOT, "eos_token": _HF_EOT, "unk_token": _HF_EOT}
        return paths + _write_hf_files(d, self.hf_backend(), meta, specials, self.context_length)

    @classmethod
    def from_dir(cls, directory: str | Path) -> "OpenClipTokenizer":
        d = Path(directory)
        desc = _edgeclip_meta(d) or json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
        lines = (d / desc["files"]["merges"]).read_text(encoding="utf-8").split("\n")
        merges = [ln for ln in lines[1:] if ln]
        tok = cls(desc["context_length"], merges=merges)
        if tok.vocab_size != desc["vocab_size"]:
            raise InputError(f"{d}: merges.txt gives vocab {tok.vocab_size}, the tokenizer files say "
                             f"{desc['vocab_size']}; re-export the tokenizer")
        return tok


def _write_hf_files(d: Path, backend, meta: dict, specials: dict, context_length: int,
                    tokenizer_class: str = "PreTrainedTokenizerFast") -> list[Path]:
    """tokenizer.json (the ``tokenizers`` file) and tokenizer_config.json (transformers' reader
    needs it; edgeclip's own description of the framing sits in its ``edgeclip`` section)."""
    cfg = {"tokenizer_class": tokenizer_class, "model_max_length": int(context_length),
           **specials, "edgeclip": meta}
    paths = [d / "tokenizer.json", d / "tokenizer_config.json"]
    write_text_atomic(paths[0], backend.to_str(pretty=False))
    write_text_atomic(paths[1], json.dumps(cfg, indent=2, ensure_ascii=False))
    return paths


def _edgeclip_meta(d: Path) -> dict:
    cfg = d / "tokenizer_config.json"
    return (json.loads(cfg.read_text(encoding="utf-8")).get("edgeclip") or {}) if cfg.is_file() else {}


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizers.Tokenizer`` framed to a fixed context length."""

    kind = "hf"

    def __init__(self, backend, context_length: int, *, eot_id: int, pad_id: int,
                 sot_id: int | None = None, special_tokens: dict[str, str] | None = None,
                 tokenizer_class: str = "PreTrainedTokenizerFast"):
        from tokenizers import Tokenizer as _Backend

        self._backend = _Backend.from_str(backend.to_str())  # own copy: we change its framing
        self._backend.enable_truncation(max_length=int(context_length))
        self._backend.enable_padding(length=int(context_length), pad_id=int(pad_id),
                                     pad_token=self._backend.id_to_token(int(pad_id)) or "[PAD]")
        self.context_length = int(context_length)
        self.vocab_size = self._backend.get_vocab_size(with_added_tokens=True)
        self.sot_id, self.eot_id, self.pad_id = sot_id, int(eot_id), int(pad_id)
        self.special_tokens = dict(special_tokens or {})
        self.tokenizer_class = tokenizer_class

    @classmethod
    def from_transformers(cls, tok, context_length: int | None = None) -> "HFTokenizer":
        """Wrap a transformers fast tokenizer (``AutoTokenizer.from_pretrained(...)``)."""
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None:
            raise InputError(f"{type(tok).__name__} has no fast (tokenizers) backend; "
                             "save the tokenizer with a tokenizer.json")
        if backend.get_vocab_size(with_added_tokens=True) <= len(set(tok.all_special_ids)) + 1:
            # transformers 5 builds a tokenizer of its special tokens alone when a folder has no
            # tokenizer files
            raise InputError(f"{type(tok).__name__} has a vocabulary of "
                             f"{backend.get_vocab_size(with_added_tokens=True)} tokens: its files are missing")
        length = context_length or tok.model_max_length
        if not length or length > 100_000:
            raise InputError(f"{type(tok).__name__} has no usable model_max_length; pass context_length")
        eot = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        if eot is None:
            raise InputError(f"{type(tok).__name__} has no eos/sep token to pool the text tower on")
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        specials = {k: str(getattr(tok, k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")
                    if getattr(tok, k, None) is not None}
        sot = tok.bos_token_id if tok.bos_token_id is not None else getattr(tok, "cls_token_id", None)  # BERT: [CLS]
        return cls(backend, length, eot_id=eot, pad_id=pad, sot_id=sot,
                   special_tokens=specials, tokenizer_class=type(tok).__name__)

    @classmethod
    def from_pretrained(cls, name_or_dir: str, context_length: int | None = None) -> "HFTokenizer":
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(name_or_dir)
        except Exception as e:  # offline, missing files, unknown repo: all end here
            raise InputError(
                f"could not load a tokenizer for {name_or_dir!r} ({type(e).__name__}); download the repo "
                "where there is network and pass its local folder (hf:/path/to/folder)") from e
        return cls.from_transformers(tok, context_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        enc = self._backend.encode_batch(self._check(texts))
        return np.asarray([e.ids for e in enc], dtype=np.int32).reshape(len(enc), self.context_length)

    def decode(self, ids) -> list[str]:
        """Text of each row of ``ids`` (``encode``'s output), special tokens and padding dropped."""
        rows = np.atleast_2d(np.asarray(ids)).tolist()
        return self._backend.decode_batch(rows, skip_special_tokens=True)

    def export(self, directory: str | Path) -> list[Path]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"type": self.kind, **self.describe()}
        return _write_hf_files(d, self._backend, meta, self.special_tokens, self.context_length,
                               self.tokenizer_class)

    @classmethod
    def from_dir(cls, directory: str | Path) -> "HFTokenizer":
        from tokenizers import Tokenizer as _Backend

        d = Path(directory)
        cfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        meta = cfg.get("edgeclip") or {}
        if not meta:
            raise InputError(f"{d}/tokenizer_config.json has no 'edgeclip' section; "
                             "load it with HFTokenizer.from_pretrained instead")
        specials = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if k in cfg}
        return cls(_Backend.from_file(str(d / "tokenizer.json")), meta["context_length"],
                   eot_id=meta["eot_id"], pad_id=meta["pad_id"], sot_id=meta.get("sot_id"),
                   special_tokens=specials, tokenizer_class=cfg.get("tokenizer_class", "PreTrainedTokenizerFast"))


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Reload a tokenizer from the files ``Tokenizer.export`` wrote."""
    d = Path(directory)
    path = d / "tokenizer.json"
    if not path.is_file():
        raise InputError(f"{d} has no tokenizer.json; export one with Tokenizer.export(dir)")
    kind = _edgeclip_meta(d).get("type")
    if kind is None:  # older bundles kept edgeclip's openclip-bpe descriptor in tokenizer.json itself
        head = json.loads(path.read_text(encoding="utf-8"))
        kind = head.get("type") or ("hf" if "model" in head else None)
    if kind == OpenClipTokenizer.kind:
        return OpenClipTokenizer.from_dir(d)
    if kind == HFTokenizer.kind:
        return HFTokenizer.from_dir(d)
    raise InputError(f"{path} is neither an openclip-bpe descriptor nor a Hugging Face tokenizer file")
