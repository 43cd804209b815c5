"""Recipes (``recipes/*.yaml``) and targets (``targets/*.yaml``) as frozen dataclasses.

A recipe says which teacher, which distillation stages, which data and which quantization;
a target says which backends in which order, their default quantization, and the accuracy
thresholds an artifact must meet. Every problem is found at load time and raised as one
``ConfigError`` naming the file, the key path, what was found and what is allowed.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._schema import build, choice, load_yaml_file
from ..errors import ConfigError
from .names import BACKENDS, DISTILL_METHODS, QUANT_MODES, TOWERS, parse_device_spec, parse_model_uri

__all__ = [
    "CONFIG_VERSION", "Thresholds", "BackendEntry", "BenchConfig", "Budgets", "MixedPrecision", "SELECT_POLICIES", "Target", "DataSource",
    "DataConfig", "PretrainConfig", "check_tokenizer_train", "DistillStage", "QuantizationConfig",
    "ExportConfig", "Recipe",
    "load_target", "load_recipe", "default_recipe", "list_targets", "list_recipes",
    "search_dirs", "parse_model_uri", "DEFAULT_RECIPE",
]

CONFIG_VERSION = 1
DEFAULT_RECIPE = "embedded-default"
_REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout: its recipes/ and targets/

# "fp16" | [fp32, int8-static] | {image: int8-static, text: [fp32, int8-dynamic]}
QuantForm = str | tuple[str, ...] | dict[str, str | tuple[str, ...]]


def _normalize_quant(form: Any, towers: tuple[str, ...] = TOWERS) -> dict[str, tuple[str, ...]]:
    """Expand any QuantForm into ``{tower: (mode, ...)}`` and check every name."""
    if isinstance(form, (str, tuple)):
        form = {t: form for t in towers}
    out: dict[str, tuple[str, ...]] = {}
    for tower, modes in form.items():
        if tower not in TOWERS:
            raise ConfigError(f"unknown tower {tower!r} in quant; allowed: {', '.join(TOWERS)}")
        modes = (modes,) if isinstance(modes, str) else tuple(modes)
        if not modes:
            raise ConfigError(f"quant for tower {tower!r} is an empty list; name at least one mode")
        for m in modes:
            if m not in QUANT_MODES:
                raise ConfigError(f"unknown quantization mode {m!r}; allowed: {', '.join(QUANT_MODES)}")
        out[tower] = modes
    return out


@dataclass(frozen=True)
class Thresholds:
    """Accuracy floors an artifact must meet against the fp32 reference (None: not checked)."""

    cosine_mean: float | None = None
    cosine_min: float | None = None
    psnr_db: float | None = None
    top1_agreement: float | None = None
    r1_agreement: float | None = None
    zero_shot_top1: float | None = None
    # a quantized artifact may be at most this many times slower than its fp32 sibling
    max_latency_ratio_vs_fp32: float | None = None

    def merged(self, override: "Thresholds | None") -> "Thresholds":
        """Values set in ``override`` win over ours."""
        if override is None:
            return self
        changes = {f.name: getattr(override, f.name) for f in dataclasses.fields(self)
                   if getattr(override, f.name) is not None}
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class BackendEntry:
    backend: str = choice(*BACKENDS)
    quant: QuantForm = "fp32"
    options: dict[str, Any] = field(default_factory=dict)
    thresholds: Thresholds | None = None

    def __post_init__(self):
        object.__setattr__(self, "quant", _normalize_quant(self.quant))

    def modes_for(self, tower: str) -> tuple[str, ...]:
        return self.quant.get(tower, ("fp32",))


@dataclass(frozen=True)
class BenchConfig:
    warmup: int = 3
    runs: int = 20      # timed calls per artifact, spread over the rounds (at least one per round)
    threads: int = 2
    rounds: int = 5     # interleaved rounds: their medians' spread is the run's noise band

    def __post_init__(self):
        for name, least in (("warmup", 0), ("runs", 1), ("threads", 1), ("rounds", 1)):
            if int(getattr(self, name)) < least:
                raise ConfigError(f"{name}: must be >= {least}, found {getattr(self, name)}")


SELECT_POLICIES = ("fastest", "smallest")


@dataclass(frozen=True)
class Budgets:
    """Limits every shipped artifact must meet (host p50 latency, file size); None: no limit."""
    max_latency_ms: float | None = None
    max_size_mb: float | None = None

    def __post_init__(self):
        for name in ("max_latency_ms", "max_size_mb"):
            v = getattr(self, name)
            if v is not None and not float(v) > 0:
                raise ConfigError(f"{name}: must be > 0, found {v}")


@dataclass(frozen=True)
class MixedPrecision:
    """When a quantized variant misses the accuracy gates, rebuild it with its most sensitive layers
    kept in float (1, 2, 4, 8 ... of them) until it passes, or until fewer than
    ``min_quantized_fraction`` of the tower's quantizable weights would stay quantized."""
    search: bool = True
    min_quantized_fraction: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.min_quantized_fraction <= 1.0:
            raise ConfigError(f"min_quantized_fraction: a fraction in [0, 1], found {self.min_quantized_fraction}")


@dataclass(frozen=True)
class Target:
    name: str
    platform: str = choice("ios", "android", "web", "linux", "macos")
    backends: tuple[BackendEntry, ...] = ()
    version: int = CONFIG_VERSION
    description: str = ""
    towers: tuple[str, ...] = choice(*TOWERS, default=("image", "text"))
    in_graph_preprocess: bool = False
    batch_size: int = 1
    thresholds: Thresholds = field(default_factory=Thresholds)
    bench: BenchConfig = field(default_factory=BenchConfig)
    # per (backend, tower) the variant that ships: the fastest that passed (ties within the noise
    # go to the smaller), or the smallest; budgets exclude what exceeds them
    select: str = choice(*SELECT_POLICIES, default="fastest")
    budgets: Budgets = field(default_factory=Budgets)
    mixed_precision: MixedPrecision = field(default_factory=MixedPrecision)
    # emulated phone cores every .pte/.tflite/.onnx artifact also runs on (the ARM64 twin,
    # verify/arm64): ARM accuracy is gated like the host's, and the first core's instruction count
    # per inference, not host milliseconds, ranks the variants and gates CI
    devices: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self):
        if not self.backends:
            raise ConfigError("backends: a target needs at least one backend entry")
        for d in self.devices:
            parse_device_spec(d)
        if len({parse_device_spec(d) for d in self.devices}) < len(self.devices):
            raise ConfigError(f"devices: each core once, found {list(self.devices)}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, found {self.batch_size}")


@dataclass(frozen=True)
class DataSource:
    source: str = choice("synthetic", "digits", "photos", "csv", "folder", "webdataset")
    path: str | None = None
    samples: int | None = None
    split: str = choice("train", "heldout", default="train")
    image_size: int | None = None
    languages: tuple[str, ...] = choice("en", "zh", default=("en",))
    on_bad_image: str = choice("skip", "fail", default="skip")
    options: dict[str, Any] = field(default_factory=dict)
    # parallel captions (DC-CLIP) from a CSV/TSV: the column of each language, default caption_<lang>
    captions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.captions:
            if self.source != "csv":
                raise ConfigError(f"captions: names parallel-caption columns of a csv source, not {self.source!r}; "
                                  "drop it or use source: csv")
        if self.source in ("csv", "folder", "webdataset") and not self.path:
            raise ConfigError(f"source {self.source!r} needs a 'path' (the file, folder or shard pattern)")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"samples: must be >= 1, found {self.samples}")


def _default_eval() -> tuple[DataSource, ...]:
    return (DataSource(source="synthetic", split="heldout", samples=96, languages=("en", "zh")),
            DataSource(source="digits", samples=60), DataSource(source="photos"))


@dataclass(frozen=True)
class DataConfig:
    train: DataSource | None = None
    eval: tuple[DataSource, ...] = field(default_factory=_default_eval)


@dataclass(frozen=True)
class DistillStage:
    method: str = choice(*DISTILL_METHODS)
    name: str | None = None
    student: str | None = None   # model URI of the student's architecture; None: previous stage's
    steps: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 10
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.student is not None:
            parse_model_uri(self.student)
        for k in ("steps", "batch_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k}: must be >= 1, found {getattr(self, k)}")


TOKENIZER_TRAIN_KEYS = ("vocab_size", "min_frequency", "context_length")


def check_tokenizer_train(value: Any, where: str) -> None:
    """``{train: {vocab_size: N, min_frequency: M, context_length: L}}`` (each optional): a byte-level
    BPE trained on the recipe's captions (``models/bpe_train.py``); anything else is an error."""
    ok = isinstance(value, dict) and set(value) == {"train"} and isinstance(value["train"], dict) \
        and set(value["train"]) <= set(TOKENIZER_TRAIN_KEYS)
    if not ok:
        raise ConfigError(f"{where}: {{train: {{vocab_size: N}}}} (keys: {', '.join(TOKENIZER_TRAIN_KEYS)}), "
                          f"found {value!r}")
    for k, v in value["train"].items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{where}: train.{k} must be a positive integer, found {v!r}")


@dataclass(frozen=True)
class PretrainConfig:
    """Train the teacher from scratch with the CLIP loss on ``data.train`` before anything else:
    how the offline default teacher (a builtin architecture) gets meaningful weights."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    languages: tuple[str, ...] | None = choice("en", "zh", default=None)  # None: data.train's
    prompt_loss: float = 0.0   # weight of the label prompt loss (distill/prompt_loss.py); synthetic data only
    # {train: {vocab_size: N}}: the teacher gets a BPE trained on its own training captions (one
    # token per CJK character) in place of its architecture's tokenizer; None keeps that one
    tokenizer: dict[str, Any] | None = None

    def __post_init__(self):
        for k in ("steps", "batch_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k}: must be >= 1, found {getattr(self, k)}")
        if self.prompt_loss < 0:
            raise ConfigError(f"prompt_loss: must be >= 0 (0: the CLIP loss alone), found {self.prompt_loss}")
        if self.tokenizer is not None:
            check_tokenizer_train(self.tokenizer, "tokenizer")


@dataclass(frozen=True)
class QuantizationConfig:
    modes: QuantForm | None = None          # replaces each backend's default modes
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-mode options
    keep_float: tuple[str, ...] = ()        # op names / types kept in float
    calibration_samples: int = 32
    # what static quantization calibrates on (any data source; its samples default to
    # calibration_samples); None: the recipe's data.train, else the embedded world's train scenes
    calibration: DataSource | None = None

    def __post_init__(self):
        if self.modes is not None:
            object.__setattr__(self, "modes", _normalize_quant(self.modes))
        for mode in self.params:
            if mode not in QUANT_MODES:
                raise ConfigError(f"params: unknown quantization mode {mode!r}; allowed: {', '.join(QUANT_MODES)}")
        if self.calibration_samples < 1:
            raise ConfigError(f"calibration_samples: must be >= 1, found {self.calibration_samples}")
        c = self.calibration
        if c is not None and c.source == "synthetic" and c.split == "heldout":
            raise ConfigError("calibration: the embedded world's heldout split is evaluation data; calibrate on "
                              "split: train (the default) or on your own data")


@dataclass(frozen=True)
class ExportConfig:
    """``labels`` / ``labels_file`` (one label per line, UTF-8): the bundle's label set
    (``edgeclip build --labels FILE`` overrides both); ``templates``: the prompts whose text
    embeddings are averaged per label (default ``edgeclip.bundle.labels.DEFAULT_TEMPLATES``)."""

    towers: tuple[str, ...] | None = choice(*TOWERS, default=None)
    labels: tuple[str, ...] = ()
    labels_file: str | None = None
    templates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    name: str
    teacher: str
    version: int = CONFIG_VERSION
    description: str = ""
    seed: int = 0
    pretrain: PretrainConfig | None = None
    distill: tuple[DistillStage, ...] = ()
    data: DataConfig = field(default_factory=DataConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    source: str = ""

    def __post_init__(self):
        scheme, _ = parse_model_uri(self.teacher)
        if self.pretrain and self.pretrain.tokenizer and scheme != "builtin":
            raise ConfigError(f"pretrain.tokenizer: a trained tokenizer resizes the text tower of a builtin "
                              f"architecture; teacher {self.teacher} is not one (drop pretrain.tokenizer, "
                              "or pretrain a builtin:NAME teacher)")
        if (self.distill or self.pretrain) and self.data.train is None:
            raise ConfigError("data.train: pretraining and distillation need training data; add "
                              "data.train (e.g. {source: synthetic, samples: 2000})")


# ---------------------------------------------------------------- loading by name or path

def search_dirs(kind: str) -> list[Path]:
    """Where ``kind`` ('targets' or 'recipes') files are found, first match wins."""
    dirs = [Path.cwd() / kind]
    extra = os.environ.get("EDGECLIP_PATH")
    if extra:
        dirs += [Path(p) / kind for p in extra.split(os.pathsep) if p]
    dirs.append(_REPO_ROOT / kind)
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen:
            seen.add(r)
            out.append(d)
    return out


def _known(kind: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in reversed(search_dirs(kind)):  # earlier dirs override later ones
        if d.is_dir():
            for p in sorted(d.glob("*.yaml")):
                found[p.stem] = p
    return dict(sorted(found.items()))


def list_targets() -> dict[str, Path]:
    return _known("targets")


def list_recipes() -> dict[str, Path]:
    return _known("recipes")


def _resolve(kind: str, name_or_path: str | os.PathLike) -> Path:
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or os.sep in s or "/" in s:
        return Path(s)
    known = _known(kind)
    if s not in known:
        raise ConfigError(f"unknown {kind[:-1]} {s!r}; known: {', '.join(known) or '(none)'} "
                          f"(or pass a path to a .yaml file)")
    return known[s]


def _load(cls, kind: str, name_or_path):
    path = _resolve(kind, name_or_path)
    data = load_yaml_file(path)
    version = data.get("version", CONFIG_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"{path}: version: expected an integer, found {version!r}")
    if version > CONFIG_VERSION:
        raise ConfigError(f"{path}: version: this file is version {version}, this edgeclip reads "
                          f"version {CONFIG_VERSION}; upgrade edgeclip (pip install -U edgeclip)")
    if version < 1:
        raise ConfigError(f"{path}: version: {version} is not a released format; set version: 1")
    if "source" in data:
        raise ConfigError(f"{path}: source: is set by edgeclip, remove it from the file")
    obj = build(cls, data, path)
    return dataclasses.replace(obj, source=str(path))


def load_target(name_or_path: str | os.PathLike) -> Target:
    return _load(Target, "targets", name_or_path)


def load_recipe(name_or_path: str | os.PathLike) -> Recipe:
    return _load(Recipe, "recipes", name_or_path)


def default_recipe() -> Recipe:
    """The embedded default: offline teacher, synthetic world, real-pixel evaluation."""
    return load_recipe(DEFAULT_RECIPE)
