"""Backend test cases: tower cases on real pixels/captions and a session export cache.

Kept out of conftest.py: several test folders have a conftest, so ``from conftest import``
would pick whichever was imported first.

Every (backend, tower kind, quant) export happens once per session, also across pytest-xdist
workers (test_backends_matrix.py and test_backends_executorch.py need the same ExecuTorch exports,
20-60 s each, and loadfile puts them on either worker); the tests that need it share the artifact
and its measured cosine against torch eager.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from _backends_towers import make_tower, tiny_tokenize

EVAL_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
               "immunohistochemistry", "camera", "coins")
CALIB_IMAGES = ("retina", "colorwheel", "clock", "text")
EVAL_CAPTIONS = (
    "a photo of an astronaut", "a cat lying on a couch", "a cup of coffee on a saucer",
    "a rocket on the launch pad", "galaxies in deep space",
    "a stained tissue sample under a microscope", "a man holding a camera", "a pile of old coins",
)
CALIB_CAPTIONS = ("a diagram of the retina", "a color wheel", "a clock on the wall", "a page of printed text")


def _photos(names):
    import skimage.data

    return [getattr(skimage.data, n)() for n in names]


def _models_available() -> bool:
    try:
        from edgeclip.models import load_model

        load_model("builtin:tiny-vit")
        return True
    except Exception:
        return False


HAVE_MODELS = _models_available()
LOCAL_KINDS = ("vit", "conv", "text")
# the default teacher's image tower (outline CNN with max+mean pool, bag of colours) is what the
# default build ships: every backend converts it here, not only in a full android build
BUILTIN_KINDS = ("builtin-vit-image", "builtin-vit-text", "builtin-mci-image",
                 "builtin-factored-image") if HAVE_MODELS else ()
_BUILTIN_IMAGE = {"vit": "builtin:tiny-vit", "mci": "builtin:tiny-mci", "factored": "builtin:teacher-factored"}


@dataclass
class Case:
    kind: str
    tower: torch.nn.Module
    tower_name: str                      # "image" | "text"
    example: tuple                       # numpy, batch 1 (a real sample, possibly strided)
    calibration: list                    # list of tuples of numpy arrays
    inputs: list                         # eval samples, each a tuple of numpy arrays
    reference: list = field(default_factory=list)  # torch eager outputs for ``inputs``


def _image_inputs(kind):
    from edgeclip.quantize import preprocess_image

    if kind.startswith("builtin"):
        from edgeclip.models import load_model, preprocess_images, reparameterize

        m = load_model(_BUILTIN_IMAGE[kind.split("-")[1]])
        tower = reparameterize(m.image) if "mci" in kind else m.image
        f = m.facts

        def prep(imgs):
            return [(preprocess_images(im, f.image_size, f.mean, f.std, f.resize_mode).numpy(),) for im in imgs]
    else:
        tower = make_tower(kind)

        def prep(imgs):
            return [(preprocess_image(im, tower.image_size)[None],) for im in imgs]
    return tower.eval(), prep(_photos(EVAL_IMAGES)), prep(_photos(CALIB_IMAGES))


def _text_inputs(kind):
    if kind.startswith("builtin"):
        from edgeclip.models import load_model

        m = load_model("builtin:tiny-vit")
        tower, tok = m.text, m.tokenizer
    else:
        tower = make_tower("text")

        def tok(caps):
            return tiny_tokenize(caps, tower.vocab_size, tower.context_length)
    return (tower.eval(), [(row[None],) for row in tok(list(EVAL_CAPTIONS))],
            [(row[None],) for row in tok(list(CALIB_CAPTIONS))])


@lru_cache(maxsize=None)
def get_case(kind: str) -> Case:
    is_text = kind.endswith("text")
    tower, inputs, calibration = (_text_inputs if is_text else _image_inputs)(kind)
    x0 = inputs[0][0]
    # real samples handed over as numpy views with odd strides (ANCHORS.md pitfall): images
    # in Fortran order, token rows as ``row[None]`` (stride 0 on the batch axis)
    example = (x0 if is_text else np.asfortranarray(x0),)
    assert not example[0].flags.c_contiguous or 0 in example[0].strides
    with torch.no_grad():
        ref = [tower(*(torch.from_numpy(np.ascontiguousarray(a)) for a in s)).numpy() for s in inputs]
    return Case(kind, tower, "text" if is_text else "image", example, calibration, inputs, ref)


def cosines(outputs, reference) -> np.ndarray:
    out = []
    for y, r in zip(outputs, reference):
        y, r = np.asarray(y, np.float64).ravel(), np.asarray(r, np.float64).ravel()
        out.append(float(y @ r / (np.linalg.norm(y) * np.linalg.norm(r) + 1e-12)))
    return np.asarray(out)


@dataclass
class Result:
    artifact: object
    runner: object
    cos: np.ndarray | None    # per eval sample, None where no runtime here


class ExportCache:
    """(backend, kind, quant, options) -> Result, exported and measured once per session.

    ``shared``: a folder every worker of this session sees; an export is made there once, under
    a file lock, and the other workers load its ``artifact.json``. Runners and cosines stay
    per process."""

    def __init__(self, root, shared=None):
        self.root, self.shared = root, shared
        self._done: dict = {}
        self.numbers: list[dict] = []

    def _export(self, b, case, spec, key):
        if self.shared is None:
            return b.export(case.tower, case.example, spec, self.root / key[0] / str(len(self._done)))
        from filelock import FileLock

        from edgeclip._io import write_json_atomic
        from edgeclip.backends.base import Artifact
        folder = self.shared / hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
        with FileLock(str(folder) + ".lock"):
            desc = folder / "artifact.json"
            if desc.exists():
                return Artifact.from_dict(json.loads(desc.read_text()))
            art = b.export(case.tower, case.example, spec, folder / "out")
            write_json_atomic(desc, art.to_dict())  # a worker killed mid-write leaves no half a file
            return art

    def get(self, backend: str, kind: str, quant: str, **options) -> Result:
        from edgeclip.backends import BACKENDS, ExportSpec

        key = (backend, kind, quant, json.dumps(options, sort_keys=True))
        if key in self._done:
            return self._done[key]
        case, b = get_case(kind), BACKENDS.get(backend)
        spec = ExportSpec(tower=case.tower_name, quant=quant, calibration=case.calibration,
                          options=options, name=f"{kind}-{quant}",
                          input_names=("input_ids",) if case.tower_name == "text" else ("pixel_values",),
                          metadata={"author": "edgeclip tests", "license": "Apache-2.0",
                                    "preprocessing": json.dumps({"size": 32})})
        art = self._export(b, case, spec, key)
        runner = b.runner(art, threads=2)
        cos = cosines([runner(*s) for s in case.inputs], case.reference) if runner else None
        res = Result(art, runner, cos)
        self._done[key] = res
        self.numbers.append({"backend": backend, "kind": kind, "quant": quant, "options": options,
                             "cos_min": None if cos is None else float(cos.min()),
                             "cos_mean": None if cos is None else float(cos.mean()),
                             "delegated_fraction": art.delegated_fraction,
                             "size_bytes": art.size_bytes})
        return res
