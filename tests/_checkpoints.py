"""Tiny checkpoints written by the libraries users get them from (no download).

Each writer builds a random-init model at a tiny size with its own library and saves it the way
that library does (``save_pretrained``, open_clip's ``save_for_hf``), tokenizer files included,
with preprocessing statistics that differ from CLIP's so a test can tell they were read.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)   # not CLIP's: a loader that ignores them is caught
_COLOURS = [("red", "红色"), ("green", "绿色"), ("blue", "蓝色"), ("yellow", "黄色"), ("purple", "紫色"),
            ("orange", "橙色"), ("white", "白色"), ("black", "黑色")]
_SHAPES = [("circle", "圆形"), ("square", "正方形"), ("triangle", "三角形"), ("star", "星形"),
           ("cross", "十字"), ("heart", "心形"), ("ring", "圆环"), ("diamond", "菱形")]
CAPTIONS = ["a photo of a red circle", "a blue square on a white background", "一张绿色三角形的照片",
            "白色背景上的黄色星形", "coffee!! (hot) & 'fresh'"]


def export_ok(tower, batch: int = 1) -> None:
    """``torch.export`` of ``tower`` runs and gives the eager outputs."""
    ex = tower.example_inputs(batch)
    ep = torch.export.export(tower, ex, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(*ex), tower(*ex), atol=1e-5, rtol=1e-5)


def corpus() -> list[str]:
    """English and Chinese captions of coloured shapes: what the tiny tokenizers are trained on."""
    out = []
    for (ce, cz), (se, sz) in itertools.product(_COLOURS, _SHAPES):
        out += [f"a photo of a {ce} {se}", f"a {ce} {se} on a white background", f"一张{cz}{sz}的照片",
                f"白色背景上的{cz}{sz}"]
    return out


def spread_weights_(model: torch.nn.Module, seed: int, skip: str | None = None) -> torch.nn.Module:
    """Re-draw every weight at unit-gain scale. Libraries initialise at std 0.02, where attention is
    uniform and blocks barely move the residual stream: a converter that drops a mask or a norm
    would still match. At this scale every layer changes the output, so a test can see it.
    ``skip``: a name prefix left at the library's init (a BatchNorm conv trunk, whose running
    statistics would no longer fit the weights and overflow fp16)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "logit_scale" in name or (skip and name.startswith(skip)):
                continue
            if p.ndim == 1:   # biases, norm gains, class tokens
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 if "embed" in name else fan_in ** -0.5))
    return model


def _vision(image_size: int = 32, patch_size: int = 8) -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=image_size, patch_size=patch_size)


def _text(vocab_size: int, positions: int, **extra) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=positions, **extra)


def _save_processor(path: Path, size: int, center_crop: bool = True) -> None:
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                       do_center_crop=center_crop, image_mean=list(MEAN), image_std=list(STD)).save_pretrained(path)


def xlmr_tokenizer(path: Path, context_length: int):
    """A sentencepiece Unigram tokenizer (XLM-R's kind) trained on ``corpus()``, as transformers'
    ``XLMRobertaTokenizer`` reads and saves it (tokenizer.json + tokenizer_config.json)."""
    import sentencepiece as spm
    from transformers import XLMRobertaTokenizer

    raw = path / "spm"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "corpus.txt").write_text("\n".join(corpus()), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(raw / "corpus.txt"), model_prefix=str(raw / "sp"), vocab_size=128,
                                   hard_vocab_limit=False,
                                   model_type="unigram", character_coverage=1.0, pad_id=1, bos_id=0, eos_id=2,
                                   unk_id=3, minloglevel=2)
    (raw / "sp.model").rename(raw / "sentencepiece.bpe.model")
    tok = XLMRobertaTokenizer.from_pretrained(str(raw), model_max_length=context_length)
    tok.save_pretrained(path)
    return tok


def tiny_altclip(path: Path, context_length: int = 32):
    """``AltCLIPModel`` (CLIP ViT + XLM-R text with pre_LN and transformation) via save_pretrained."""
    from transformers import AltCLIPConfig, AltCLIPModel

    tok = xlmr_tokenizer(path, context_length)
    torch.manual_seed(2)
    cfg = AltCLIPConfig(text_config=_text(len(tok), context_length + 2, project_dim=24, pad_token_id=1),
                        vision_config=_vision(), projection_dim=16)
    model = spread_weights_(AltCLIPModel(cfg).eval(), 2)
    model.save_pretrained(path)
    _save_processor(path, 32)
    return model, tok


def tiny_chinese_clip(path: Path, context_length: int = 32):
    """``ChineseCLIPModel`` (CLIP ViT + BERT text, WordPiece tokenizer) via save_pretrained."""
    from transformers import BertTokenizer, ChineseCLIPConfig, ChineseCLIPModel

    words = sorted({w for c in corpus() for w in c.replace("的", " ").split() if w.isascii()})
    chars = sorted({ch for c in corpus() for ch in c if not ch.isascii() and not ch.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "!", "(", ")", "&", "'"] + words + chars
    raw = path / "wordpiece"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizer.from_pretrained(str(raw), model_max_length=context_length)
    tok.save_pretrained(path)
    torch.manual_seed(3)
    cfg = ChineseCLIPConfig(text_config=_text(len(tok), 64, pad_token_id=0), vision_config=_vision(),
                            projection_dim=16)
    model = spread_weights_(ChineseCLIPModel(cfg).eval(), 3)
    model.save_pretrained(path)
    _save_processor(path, 32, center_crop=False)
    return model, tok


def tiny_hf_clip(path: Path, eos_token_id: int = 49407, with_tokenizer: bool = True):
    """``CLIPModel`` (TinyCLIP's released format) via save_pretrained, CLIP's BPE tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(1)
    cfg = CLIPConfig(text_config=_text(49408, 16, eos_token_id=eos_token_id), vision_config=_vision(),
                     projection_dim=16)
    model = spread_weights_(CLIPModel(cfg).eval(), 1)
    model.save_pretrained(path)
    if with_tokenizer:
        _clip_tokenizer(path / "bpe", 16).save_pretrained(path)
    return model


OPENCLIP_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}
OPENCLIP_CONFIGS = {
    # a ViT with a non-default patch size (4; open_clip's ViTs use 14, 16 or 32)
    "edgeclip-test-vit-p4": {"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 4, "width": 32,
                                                             "layers": 2, "head_width": 16},
                             "text_cfg": OPENCLIP_TEXT},
    # MobileCLIP2-S0's layout (timm fastvit_mci0 trunk, bidirectional text) at a tiny image size
    "edgeclip-test-mobileclip2": {"embed_dim": 16, "custom_text": True,
                                  "vision_cfg": {"timm_model_name": "fastvit_mci0", "timm_model_pretrained": False,
                                                 "timm_pool": "avg", "timm_proj": None, "image_size": 64},
                                  "text_cfg": dict(OPENCLIP_TEXT, no_causal_mask=True)},
}


def register_openclip_configs(tmp_path: Path) -> None:
    """Make OPENCLIP_CONFIGS known to open_clip by name (as a user's model config folder would)."""
    import open_clip

    d = tmp_path / "openclip-configs"
    d.mkdir(parents=True, exist_ok=True)
    for name, cfg in OPENCLIP_CONFIGS.items():
        (d / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d)


def openclip_saved(path: Path, name: str, seed: int = 4):
    """open_clip model ``name`` (random init) written by open_clip's own ``save_for_hf``: the Hub
    layout (open_clip_model.safetensors, open_clip_pytorch_model.bin, open_clip_config.json, tokenizer),
    with MEAN/STD as its preprocessing."""
    import open_clip
    from open_clip.push_to_hf_hub import save_for_hf

    torch.manual_seed(seed)
    model = spread_weights_(open_clip.create_model(name).eval(), seed, skip="visual.trunk")
    open_clip.model.set_model_preprocess_cfg(model, dict(open_clip.get_model_preprocess_cfg(model),
                                                         mean=MEAN, std=STD))
    # the Hub repos of CLIP-BPE models carry Hugging Face CLIPTokenizer files (open_clip's own
    # SimpleTokenizer cannot save_pretrained)
    save_for_hf(model, _clip_tokenizer(path / "bpe", OPENCLIP_TEXT["context_length"]), OPENCLIP_CONFIGS[name],
                str(path))
    return model


def _clip_tokenizer(path: Path, context_length: int):
    from transformers import CLIPTokenizer

    from edgeclip.models import OpenClipTokenizer

    OpenClipTokenizer(context_length).export(path)
    return CLIPTokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"),
                         model_max_length=context_length)
