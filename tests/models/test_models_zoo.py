"""load_model URI schemes, builtins, save_model / file: round trips and their error messages."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from edgeclip.errors import ConfigError, InputError
from edgeclip.models import MODELS, build_builtin, list_models, load_model, reparameterize, save_model
from edgeclip.config.names import TEACHER_SCHEMES


def _same_outputs(a, b, atol=1e-6):
    for ta, tb in ((a.image, b.image), (a.text, b.text)):
        ex = ta.example_inputs(2)
        with torch.no_grad():
            torch.testing.assert_close(tb(*ex), ta(*ex), atol=atol, rtol=atol)


def test_registry_and_list_models():
    assert {"tiny-vit", "tiny-mci", "teacher-vit"} <= set(MODELS.names())
    rows = list_models()
    assert [r["uri"] for r in rows] == [f"builtin:{n}" for n in MODELS.names()]
    assert all(r["description"] for r in rows)


@pytest.mark.parametrize("name", MODELS.names())
def test_builtin_is_deterministic_from_seed(builtin_models, name):
    first = builtin_models(name)
    assert first.facts.weights == "random-init" and first.config["arch"] == f"builtin:{name}"
    again = build_builtin(name, seed=0)
    other = build_builtin(name, seed=1)
    sd0, sd1, sd2 = first.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    assert not all(torch.equal(sd0[k], sd2[k]) for k in sd0)


def test_teacher_is_larger_than_students(builtin_models):
    teacher, student = builtin_models("teacher-vit"), builtin_models("tiny-vit")
    assert teacher.facts.flops_image > 2 * student.facts.flops_image
    assert teacher.facts.embed_dim == 128 and student.facts.embed_dim == 64


def test_uri_errors():
    with pytest.raises(ConfigError) as e:
        load_model("s3://bucket/model")
    assert all(s in str(e.value) for s in TEACHER_SCHEMES)
    with pytest.raises(ConfigError, match="tiny-vit"):
        load_model("builtin:nope")


def test_save_load_roundtrip_is_atomic_and_hashed(tiny_vit, tmp_path):
    path = save_model(tiny_vit, tmp_path / "student")
    assert path.name == "student.safetensors" and (tmp_path / "student.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.json", "student.safetensors"]
    back = load_model(f"file:{path}")
    assert back.facts.weights == "file:sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert back.config["arch"] == "builtin:tiny-vit"
    assert back.facts.flops_image == tiny_vit.facts.flops_image
    _same_outputs(tiny_vit, back, atol=0)


def test_custom_student_and_reparameterized_mci_roundtrip(tmp_path):
    student = build_builtin("tiny-vit", seed=3, image={"width": 32, "layers": 2, "heads": 2}, embed_dim=32)
    assert student.facts.embed_dim == 32 and student.image.encoder.spec.width == 32
    back = load_model(f"file:{save_model(student, tmp_path / 's.safetensors')}")
    _same_outputs(student, back, atol=0)

    mci = reparameterize(build_builtin("tiny-mci"))
    assert mci.config["image"]["reparameterized"] is True
    back = load_model(f"file:{save_model(mci, tmp_path / 'mci')}")
    _same_outputs(mci, back, atol=0)


def test_pt_checkpoint_with_config_json(tiny_vit, tmp_path):
    torch.save(tiny_vit.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "config.json").write_text(json.dumps({"arch": "builtin:tiny-vit"}))
    back = load_model(f"file:{tmp_path / 'weights.pt'}")
    _same_outputs(tiny_vit, back, atol=0)


def test_shape_mismatch_names_the_first_key_and_both_shapes(tiny_vit, tmp_path):
    path = save_model(tiny_vit, tmp_path / "m")
    (tmp_path / "m.json").write_text(json.dumps({"arch": "builtin:tiny-vit", "image": {"width": 48}}))
    with pytest.raises(InputError) as e:
        load_model(f"file:{path}")
    msg = str(e.value)
    assert "class_embedding" in msg and "(64,)" in msg and "(48,)" in msg


def test_file_errors(tiny_vit, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_model(f"file:{tmp_path / 'missing.safetensors'}")
    torch.save(tiny_vit.state_dict(), tmp_path / "lonely.pt")
    with pytest.raises(InputError, match="no model config"):
        load_model(f"file:{tmp_path / 'lonely.pt'}")
    (tmp_path / "lonely.json").write_text(json.dumps({"arch": "builtin:tiny-mci"}))
    with pytest.raises(InputError, match="checkpoint"):
        load_model(f"file:{tmp_path / 'lonely.pt'}")
    (tmp_path / "lonely.json").write_text(json.dumps({"arch": "builtin:tiny-vit", "image": {"colour": 1}}))
    with pytest.raises(ConfigError, match="colour"):
        load_model(f"file:{tmp_path / 'lonely.pt'}")


def test_hf_offline_failure_says_how_to_use_a_local_copy():
    with pytest.raises(InputError) as e:
        load_model("hf:wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M")
    assert "hf:DIR" in str(e.value) and "file:PATH" in str(e.value)
