"""open_clip checkpoints (save_for_hf's files: a ViT with patch size 4, a MobileCLIP2-layout model)
built for android, web and ios and verified against every gate (see _checkpoint_builds.py)."""
from __future__ import annotations

import pytest

from _checkpoint_builds import build_everywhere


@pytest.mark.slow
@pytest.mark.toolchain
@pytest.mark.parametrize("kind", ["openclip-vit-p4", "openclip-mobileclip2"])
def test_library_checkpoint_builds_and_verifies_on_every_target(tmp_path, capsys, kind):
    build_everywhere(kind, tmp_path, capsys)
