"""Hugging Face checkpoints (save_pretrained's folders: a CLIPModel, an AltCLIPModel with its
sentencepiece tokenizer, a ChineseCLIPModel with its WordPiece tokenizer) built for android, web and ios and verified against every gate (see _checkpoint_builds.py)."""
from __future__ import annotations

import pytest

from _checkpoint_builds import build_everywhere


@pytest.mark.slow
@pytest.mark.toolchain
@pytest.mark.parametrize("kind", ["hf-clip", "hf-altclip", "hf-chinese-clip"])
def test_library_checkpoint_builds_and_verifies_on_every_target(tmp_path, capsys, kind):
    build_everywhere(kind, tmp_path, capsys)
