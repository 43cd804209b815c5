"""Issue #12, item 4: untrusted files never run code.

Checkpoints load through safetensors or ``torch.load(weights_only=True)``: a ``.pt``/``.bin``
whose pickle would call ``os.system`` is refused with one clear line (exit 2) and the command
never runs (its marker file never appears). Recipe and target YAML are read with a SafeLoader:
python-object tags are refused, and never executed.

Covered elsewhere: ``tests/test_config.py::test_yaml_is_loaded_safely`` (a python tag in a target
at ``load_target`` level); ``tests/distill/test_distill_trainer.py`` (training state files load
with ``weights_only=True``); bundle-zip path traversal (zip slip) is
``tests/test_bundle_inputs.py::test_zip_slip_entries_are_refused_and_nothing_is_written``.
"""
from __future__ import annotations

import json
import os
import pickle
import textwrap

import pytest
import torch

from edgeclip.cli import main
from edgeclip.errors import InputError

from _reliability import MINI_FAST, lookalikes, one_error_line, run_cli


class _RunsCode:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil(tmp_path):
    """Checkpoints whose pickles would run code: a torch.save'd state dict (.pt), a wrapper dict
    as training scripts save (.bin), a plain pickle (.ckpt); each with a valid config beside it."""
    marker = tmp_path / "PWNED"
    cfg = json.dumps({"arch": "builtin:tiny-vit"})
    paths = {}
    torch.save({"image.encoder.proj.weight": _RunsCode(marker)}, tmp_path / "evil.pt")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": _RunsCode(marker)}, tmp_path / "evil.bin")
    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump({"w": _RunsCode(marker)}, f, protocol=2)
    for name in ("evil.pt", "evil.bin", "evil.ckpt"):
        (tmp_path / name).with_suffix(".json").write_text(cfg)
        paths[name] = tmp_path / name
    return paths, marker


def test_pickle_checkpoint_is_refused_through_the_cli(evil, tmp_path):
    paths, marker = evil
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(textwrap.dedent(f"""
        version: 1
        name: evil
        teacher: file:{paths['evil.pt']}
        data:
          eval: [{{source: synthetic, split: heldout, samples: 4}}]
    """))
    target = tmp_path / "target.yaml"
    target.write_text(MINI_FAST)
    out = tmp_path / "build" / "out"
    res = run_cli("build", "--target", str(target), "--recipe", str(recipe), "--out", str(out))
    assert res.returncode == 2, res.stderr
    line = one_error_line(res.stderr)
    assert "evil.pt" in line and "refused" in line and "would run code" in line
    assert "system" in line            # names what it would have called
    assert "safetensors" in line       # and what to do instead
    assert not marker.exists(), "the pickle ran code"
    assert lookalikes(tmp_path, out) == []


@pytest.mark.parametrize("name", ["evil.pt", "evil.bin", "evil.ckpt"])
def test_pickle_checkpoint_is_refused_by_load_model(evil, name):
    from edgeclip.models import load_model
    paths, marker = evil
    with pytest.raises(InputError) as e:
        load_model(f"file:{paths[name]}")
    msg = str(e.value)
    assert "refused" in msg and "\n" not in msg and name in msg
    assert not marker.exists(), "the pickle ran code"


def test_info_on_a_pickle_checkpoint_is_exit_2(evil, capsys):
    paths, marker = evil
    assert main(["info", f"file:{paths['evil.pt']}"]) == 2
    assert "refused" in one_error_line(capsys.readouterr().err)
    assert not marker.exists()


@pytest.mark.parametrize("doc", [
    "!!python/object/apply:os.system ['touch {marker}']\n",
    "version: 1\nname: x\nteacher: builtin:tiny-vit\nseed: !!python/object/apply:os.system ['touch {marker}']\n",
    "version: 1\nname: !!python/name:os.system\nteacher: builtin:tiny-vit\n",
    "version: 1\nname: x\nteacher: builtin:tiny-vit\ndescription: !!python/object/new:os.system ['touch {marker}']\n",
])
def test_yaml_python_tags_are_refused_and_never_run(doc, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(doc.format(marker=marker))
    target = tmp_path / "target.yaml"
    target.write_text(MINI_FAST)
    out = tmp_path / "out"
    rc = main(["build", "--target", str(target), "--recipe", str(recipe), "--out", str(out)])
    assert rc == 2
    line = one_error_line(capsys.readouterr().err)
    assert "recipe.yaml" in line and "YAML" in line and "python" in line
    assert not marker.exists(), "the YAML ran code"
    assert not out.exists()


def test_the_fixture_pickle_really_runs_code(evil):
    """Control: unpickled unsafely, the fixture's file does run its command, so the marker checks
    above can fail."""
    paths, marker = evil
    torch.load(paths["evil.pt"], weights_only=False)
    assert marker.exists()
