"""Issue #12, item 6: property-based fuzzing of recipe and target YAML.

Every shipped recipe and target (plus the tiny ones the end-to-end tests use) is mutated at
random — keys dropped or misspelt, values replaced by random scalars, lists and mappings, values
wrapped in more nesting, the YAML text itself cut short, spliced or given a python-object tag —
and run through ``load_recipe``/``load_target`` and ``make_plan(..., check_toolchains=False)``.
The only acceptable outcomes are a plan or an ``EdgeclipError`` whose message is one non-empty
line: anything else would reach the user as a traceback (exit 3 through the CLI).

Derandomized (the same examples on every run and machine), no example database, no deadline;
about 200 examples in a few seconds.
"""
from __future__ import annotations

import copy
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml

from hypothesis import HealthCheck, given, settings  # the `test` extra installs it: no skip
from hypothesis import strategies as st

from edgeclip.config import load_recipe, load_target
from edgeclip.errors import EdgeclipError
from edgeclip.build.plan import make_plan

from _tiny_configs import MINI_TARGET

REPO = Path(__file__).resolve().parents[2]

TINY_RECIPE = """
version: 1
name: tiny
teacher: builtin:tiny-vit
seed: 0
pretrain: {steps: 4, batch_size: 8}
distill:
  - {method: tinyclip, steps: 2, batch_size: 4, options: {image: {width: 32}}}
data:
  train: {source: synthetic, samples: 16}
  eval:
    - {source: synthetic, split: heldout, samples: 12, languages: [en, zh]}
    - {source: digits, samples: 10}
    - {source: folder, path: FOLDER, options: {captions: captions.jsonl}, on_bad_image: fail}
quantization:
  modes: {image: [fp32, int8-static]}
  params: {int8-static: {per_channel: true}}
  keep_float: [ln_final]
  calibration_samples: 4
export: {towers: [image, text], labels: [cat, dog]}
thresholds: {cosine_mean: 0.9}
"""


def _docs(folder: str, extra: str) -> list[dict]:
    docs = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted((REPO / folder).glob("*.yaml"))]
    return docs + [yaml.safe_load(textwrap.dedent(extra))]


RECIPES = _docs("recipes", TINY_RECIPE)
TARGETS = _docs("targets", MINI_TARGET)
RECIPES[-1]["data"]["eval"][-1]["path"] = str(Path(__file__).parent)  # exists: the plan checks option names

# values a config plausibly holds (so mutations also reach the checks behind the type checks)
WORDS = ["fp32", "fp16", "int8-static", "int3", "onnx", "coreml", "tensorrt", "image", "text", "audio",
         "synthetic", "csv", "folder", "webdataset", "digits", "tinyclip", "mobileclip", "nope",
         "builtin:tiny-vit", "builtin:nope", "file:missing.safetensors", "openclip:ViT-B-32", "s3:x",
         "data/missing.csv", "data/{0..3}.tar", "skip", "fail", "en", "zh", "ios", "", " ", "-1", "1e400",
         "~", "null", "yes", "\x00", "a\nb", "{}", "[", "%s {}"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.sampled_from([0, 1, -1, 2]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(WORDS))
KEYS = st.one_of(st.text(max_size=10), st.sampled_from(WORDS), st.integers(-3, 3), st.booleans(), st.none())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)), max_leaves=8)


def _dump(doc, allow_unicode: bool = False) -> str:
    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=allow_unicode)


def _paths(node, prefix=()):
    """Every location in a parsed YAML tree, as a tuple of keys/indices (() is the root)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _tweak(v):
    if isinstance(v, bool):
        return st.just(not v)
    if isinstance(v, int):
        return st.sampled_from([0, -1, 1, 3, v + 1, -v, 2 ** 63, 10 ** 12])
    if isinstance(v, float):
        return st.sampled_from([0.0, -1.0, 1.0, 1e-9, 1e300, v * 10, float("nan"), float("inf")])
    if isinstance(v, str):
        return st.one_of(st.sampled_from(WORDS), st.just(v + "x"), st.just(v.upper()), st.just(v[:-1]))
    if isinstance(v, list):
        return st.sampled_from([[], v * 2, v[::-1], v[:1], [*v, v[0]] if v else [None]])
    if isinstance(v, dict):
        return st.sampled_from([{}, dict(list(v.items())[:1]), {**v, "extra": 1}])
    return VALUES


def _at(doc, path):
    for k in path:
        doc = doc[k]
    return doc


def _mutate(doc, data) -> object:
    """Apply 1-4 random structural mutations to a deep copy of ``doc``."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = list(_paths(doc))
        leaves = [p for p in paths if p and not isinstance(_at(doc, p), (dict, list))] or paths
        # mostly values (the checks behind the type checks), sometimes structure
        path = data.draw(st.sampled_from(leaves) if data.draw(st.integers(0, 3), label="leaf") else
                         st.sampled_from(paths), label="path")
        op = data.draw(st.sampled_from(["tweak"] * 6 + ["replace"] * 2 + ["retype", "words", "drop", "drop",
                                                                         "rename", "wrap"]), label="op")
        if not path:  # the root itself
            if op in ("replace", "retype"):
                doc = data.draw(VALUES, label="root")
            elif op == "wrap":
                doc = [doc]
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        if op == "drop":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            new = data.draw(st.one_of(KEYS, st.sampled_from([f"{key}s", str(key)[:-1], str(key).upper()])), label="key")
            value = parent.pop(key)
            parent[new] = value
        elif op == "wrap":
            parent[key] = data.draw(st.sampled_from([[parent[key]], {"value": parent[key]}, [[parent[key]]]]),
                                    label="wrapped")
        elif op == "tweak":  # same type, another value: reaches the checks behind the type checks
            parent[key] = data.draw(_tweak(parent[key]), label="tweak")
        elif op == "words":
            parent[key] = data.draw(st.one_of(st.sampled_from(WORDS), st.lists(st.sampled_from(WORDS), max_size=3)),
                                    label="word")
        elif op == "retype":
            v = parent[key]
            parent[key] = str(v) if not isinstance(v, str) else data.draw(st.sampled_from([1, 1.5, True, None, []]))
        else:
            parent[key] = data.draw(VALUES, label="value")
    return doc


def _text(doc, data) -> str:
    """The mutated tree as YAML; sometimes the text itself is damaged too."""
    text = _dump(doc, allow_unicode=data.draw(st.booleans(), label="unicode"))
    damage = data.draw(st.sampled_from(["none"] * 7 + ["cut", "splice", "tag"]), label="damage")
    if damage == "cut":
        text = text[: data.draw(st.integers(0, len(text)), label="cut")]
    elif damage == "splice":
        at = data.draw(st.integers(0, len(text)), label="at")
        text = text[:at] + data.draw(st.sampled_from(["\t", ":", "- ", "{", "]", "&a ", "*a", "\n  x: 1\n", "\x00",
                                                      "!!binary AA==", "? "]), label="insert") + text[at:]
    elif damage == "tag":
        text = "!!python/object/apply:os.system ['touch PWNED']\n" + text
    return text


def _check(thunk) -> None:
    try:
        thunk()
    except EdgeclipError as e:
        msg = str(e)
        assert msg.strip(), f"{type(e).__name__} with an empty message"
        assert "\n" not in msg, f"{type(e).__name__} message spans lines: {msg!r}"


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="edgeclip-fuzz-") as d:
        yield Path(d)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_recipe_and_target_give_a_plan_or_an_edgeclip_error(scratch, data):
    recipe_doc = data.draw(st.sampled_from(RECIPES), label="recipe")
    target_doc = data.draw(st.sampled_from(TARGETS), label="target")
    which = data.draw(st.sampled_from(["recipe", "target", "both"]), label="which")
    r_text = _text(_mutate(recipe_doc, data), data) if which != "target" else _dump(recipe_doc)
    t_text = _text(_mutate(target_doc, data), data) if which != "recipe" else _dump(target_doc)
    rp, tp = scratch / "recipe.yaml", scratch / "target.yaml"
    rp.write_text(r_text, encoding="utf-8")
    tp.write_text(t_text, encoding="utf-8")
    out = {}

    def plan():
        out["recipe"], out["target"] = load_recipe(rp), load_target(tp)
        out["plan"] = make_plan(out["recipe"], out["target"], scratch / "out", check_toolchains=False)
        out["plan"].describe()  # what `build --plan` prints must not fail either

    _check(plan)
    assert not (scratch / "out").exists(), "planning wrote output"
    assert not (scratch / "PWNED").exists() and not Path("PWNED").exists()


def test_unmutated_documents_plan():
    """The fuzz starts from valid files: every base recipe/target pair plans (else the fuzz
    would only ever test the first error)."""
    with tempfile.TemporaryDirectory() as d:
        for i, (r, t) in enumerate([(RECIPES[-1], TARGETS[-1]), (RECIPES[0], TARGETS[0])]):
            rp, tp = Path(d) / f"r{i}.yaml", Path(d) / f"t{i}.yaml"
            rp.write_text(yaml.safe_dump(r))
            tp.write_text(yaml.safe_dump(t))
            plan = make_plan(load_recipe(rp), load_target(tp), Path(d) / "out", check_toolchains=False)
            assert plan.artifacts
