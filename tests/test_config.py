"""Recipe and target validation: every error case from a bad YAML file, message asserted."""
from __future__ import annotations

import textwrap

import pytest

from edgeclip.config import (
    DEFAULT_RECIPE, Thresholds, default_recipe, list_recipes, list_targets, load_recipe,
    load_target,
)
from edgeclip.errors import ConfigError

GOOD_TARGET = """
version: 1
name: t
platform: android
backends:
  - backend: litert
    quant: {image: [fp32, int8-static], text: int8-dynamic}
thresholds: {cosine_mean: 0.98}
"""

GOOD_RECIPE = """
version: 1
name: r
teacher: builtin:teacher-vit
distill:
  - method: tinyclip
    student: builtin:tiny-vit
    steps: 5
data:
  train: {source: synthetic, samples: 64}
quantization:
  modes: {image: int8-static}
  params: {pal4: {granularity: per_grouped_channel}}
"""


def _write(tmp_path, text, name="x.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_shipped_targets_and_default_recipe_load():
    names = set(list_targets())
    assert {"ios", "ios-executorch", "android", "web"} <= names
    for name in names:
        t = load_target(name)
        assert t.name == name and t.backends
    assert DEFAULT_RECIPE in list_recipes()
    r = default_recipe()
    assert r.teacher.startswith("builtin:")
    for name in list_recipes():
        load_recipe(name)


def test_good_files_normalize(tmp_path):
    t = load_target(_write(tmp_path, GOOD_TARGET))
    assert t.backends[0].modes_for("image") == ("fp32", "int8-static")
    assert t.backends[0].modes_for("text") == ("int8-dynamic",)
    assert t.thresholds.cosine_mean == 0.98
    r = load_recipe(_write(tmp_path, GOOD_RECIPE, "r.yaml"))
    assert r.distill[0].method == "tinyclip" and r.distill[0].steps == 5
    assert r.quantization.modes["image"] == ("int8-static",)


def test_thresholds_merge_override_wins():
    base = Thresholds(cosine_mean=0.99, psnr_db=30.0)
    merged = base.merged(Thresholds(cosine_mean=0.9))
    assert merged.cosine_mean == 0.9 and merged.psnr_db == 30.0


@pytest.mark.parametrize("text, fragments", [
    # misspelt key: names the key, suggests, lists valid keys
    (GOOD_TARGET + "threshold: {}\n", ["threshold", "did you mean 'thresholds'", "valid keys:", "backends"]),
    # nested misspelt key gets its key path
    (GOOD_TARGET.replace("backend: litert", "backend: litert\n    qaunt: fp32"),
     ["backends[0].qaunt", "valid keys: backend, quant, options, thresholds"]),
    # wrong type
    (GOOD_TARGET + "batch_size: two\n", ["batch_size", "expected an integer", "'two'"]),
    (GOOD_TARGET.replace("cosine_mean: 0.98", "cosine_mean: high"), ["thresholds.cosine_mean", "expected a number"]),
    (GOOD_TARGET + "in_graph_preprocess: 1\n", ["in_graph_preprocess", "expected true/false"]),
    # unknown backend
    (GOOD_TARGET.replace("backend: litert", "backend: tensorrt"), ["backends[0].backend", "'tensorrt'", "coreml, executorch, litert, onnx"]),
    # unknown quant mode
    (GOOD_TARGET.replace("int8-dynamic", "int3"), ["backends[0]", "'int3'", "int8-dynamic"]),
    # unknown tower in quant
    (GOOD_TARGET.replace("text: int8-dynamic", "audio: fp32"), ["unknown tower 'audio'"]),
    # unknown platform
    (GOOD_TARGET.replace("platform: android", "platform: symbian"), ["platform", "'symbian'", "ios, android"]),
    # missing required key
    (GOOD_TARGET.replace("name: t\n", ""), ["missing required key 'name'"]),
    # future version
    (GOOD_TARGET.replace("version: 1", "version: 7"), ["version 7", "upgrade edgeclip"]),
    (GOOD_TARGET.replace("version: 1", "version: 0"), ["version: 0", "set version: 1"]),
    # a top level that is not a mapping
    ("- a\n- b\n", ["top level must be a mapping", "a list"]),
    ("", ["empty"]),
    # duplicate keys
    (GOOD_TARGET + "name: again\n", ["duplicate key 'name'", "line 9"]),
])
def test_bad_target_messages(tmp_path, text, fragments):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_target(p)
    msg = str(e.value)
    assert str(p) in msg or "x.yaml" in msg
    for frag in fragments:
        assert frag in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("text, fragments", [
    (GOOD_RECIPE.replace("teacher: builtin:teacher-vit", "teacher: s3:bucket/model"),
     ["model URI 's3:bucket/model'", "openclip, hf, file, builtin"]),
    (GOOD_RECIPE.replace("method: tinyclip", "method: tinyclipp"),
     ["distill[0].method", "'tinyclipp'", "tinyclip, mobileclip, dcclip"]),
    (GOOD_RECIPE.replace("steps: 5", "stepz: 5"), ["distill[0].stepz", "did you mean 'steps'"]),
    (GOOD_RECIPE.replace("steps: 5", "steps: 0"), ["distill[0]", "steps: must be >= 1"]),
    (GOOD_RECIPE.replace("source: synthetic", "source: imagenet"), ["data.train.source", "'imagenet'", "synthetic"]),
    (GOOD_RECIPE.replace("{source: synthetic, samples: 64}", "{source: csv}"), ["data.train", "needs a 'path'"]),
    (GOOD_RECIPE.replace("pal4:", "pal5:"), ["quantization", "'pal5'", "pal4"]),
    (GOOD_RECIPE.replace("  train: {source: synthetic, samples: 64}\n", "  eval: []\n"),
     ["data.train", "need training data"]),
    (GOOD_RECIPE.replace("distill:", "pretrain: {steps: -1}\ndistill:"), ["pretrain", "steps: must be >= 1"]),
])
def test_bad_recipe_messages(tmp_path, text, fragments):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_recipe(p)
    for frag in fragments:
        assert frag in str(e.value), str(e.value)


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    p = _write(tmp_path, "version: 1\nname: t\nbackends: [\n  - {backend: onnx\n")
    with pytest.raises(ConfigError) as e:
        load_target(p)
    assert "YAML syntax error at line" in str(e.value) and "column" in str(e.value)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_target(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"unknown target 'iso'; known: .*ios"):
        load_target("iso")


def test_yaml_is_loaded_safely(tmp_path):
    p = _write(tmp_path, "!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_target(p)
