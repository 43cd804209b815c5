"""The build plan: recipe × target × installed toolchains, validated before any work starts.

``make_plan`` raises on the first thing that would stop the build (a missing toolchain, a
quantization mode a backend does not offer, a data path that does not exist) so that no
minute of training is spent on a build that cannot finish. ``Plan.describe()`` is what
``edgeclip build --plan`` prints.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..bundle.labels import LabelSet, resolve_labels
from ..config import Recipe, Target
from ..errors import ConfigError, InputError, ToolchainMissing
from .context import default_root

__all__ = ["CALIBRATED", "Plan", "PlannedArtifact", "make_plan"]


CALIBRATED = ("int8-static", "w8a8")  # the quantization modes that calibrate on data


@dataclass(frozen=True)
class PlannedArtifact:
    backend: str
    tower: str
    quant: str
    keep_float: tuple[str, ...] = ()  # op types and module paths left out of ``quant`` (the mixed-precision search's)
    layer_mode: str = "fp32"          # what those module paths get instead: float, or more palettization bits
    layer_modes: tuple[tuple[str, str], ...] = ()  # (module path, mode) where a path gets another mode than layer_mode

    def mode_of(self, layer: str) -> str:
        """The mode the kept-apart module path ``layer`` gets."""
        return dict(self.layer_modes).get(layer, self.layer_mode)

    @property
    def variant(self) -> str:
        """``quant``, or for a mixed variant the op types and the number of layers kept apart per
        mode: ``int8-static+float3`` (3 layers float), ``int8-static+add+float1`` (every add and 1
        layer), ``pal4+pal8x2`` (2 layers at 8 bits), ``pal4+pal6x3+pal8x1``."""
        from ..quantize.overrides import OP_TYPES
        types = [x for x in self.keep_float if x in OP_TYPES]
        modes = Counter(self.mode_of(x) for x in self.keep_float if x not in OP_TYPES)
        return self.quant + "".join(f"+{t}" for t in types) + "".join(
            f"+{'float' if m == 'fp32' else m + 'x'}{modes[m]}" for m in sorted(modes))


@dataclass
class Plan:
    recipe: Recipe
    target: Target
    out_dir: Path
    towers: tuple[str, ...]
    artifacts: list[PlannedArtifact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    labels: LabelSet | None = None   # --labels FILE / recipe export.labels: bundled with embeddings

    def stages(self) -> list[str]:
        s = [f"load teacher      {self.recipe.teacher}"]
        pt = self.recipe.pretrain
        if pt:
            tok = ""
            if pt.tokenizer:
                from ..models.bpe_train import DEFAULT_VOCAB
                tok = f", own BPE tokenizer (vocab <= {pt.tokenizer['train'].get('vocab_size', DEFAULT_VOCAB)})"
            s.append(f"pretrain teacher  CLIP loss on {_describe_source(self.recipe.data.train)} "
                     f"({pt.steps} steps, batch {pt.batch_size}){tok}")
        if self.recipe.distill:
            for i, st in enumerate(self.recipe.distill, 1):
                from ..distill import METHODS
                what = METHODS.get(st.method).describe(st)
                name = f" {st.name}" if st.name else ""
                s.append(f"distill {i}/{len(self.recipe.distill)}       {st.method}{name}: {what} "
                         f"({st.steps} steps, batch {st.batch_size})")
        else:
            s.append("distill           none: the recipe has no distillation stage, the teacher "
                     "itself is compiled")
        evals = ", ".join(_describe_source(d) for d in self.recipe.data.eval) or "none"
        s.append(f"reference         fp32 torch (cuda if present, else cpu) on {evals}")
        from .stages.twin import twin_steps
        twin = f" -> {' + '.join(self.target.devices)} (emulated)" if self.target.devices else ""
        for a in self.artifacts:
            arm = twin if twin_steps(self.target, a.backend) else ""
            s.append(f"{a.backend:<10} {a.tower:<5} quantize {a.quant} -> export -> verify{arm} -> bench")
        if self.target.devices:
            from ..verify.arm64 import kit_status
            s.append(f"rank              by instructions per inference on {self.target.devices[0]} (ARM64 twin, "
                     f"{'ready' if kit_status() is None else 'set up on first use'}); host ms reported beside")
        if self.labels:
            ls = self.labels
            s.append(f"labels            {len(ls.labels)} from {ls.source}, {len(ls.templates)} prompt template(s) "
                     "-> labels/label_embeddings.npy")
        s.append(f"bundle            {self.out_dir} (+ {self.out_dir.name}.zip beside it)")
        return s

    def describe(self) -> str:
        lines = [f"plan: recipe {self.recipe.name} ({self.recipe.source}) for target "
                 f"{self.target.name} ({self.target.source})"]
        lines += [f"  {i:>2}. {s}" for i, s in enumerate(self.stages(), 1)]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _describe_source(d) -> str:
    n = f"{d.samples} " if d.samples else ""
    extra = f" {d.split}" if d.source == "synthetic" else ""
    path = f" {d.path}" if d.path else ""
    return f"{n}{d.source}{extra}{path}"


def make_plan(recipe: Recipe, target: Target, out_dir: Path | None = None,
              check_toolchains: bool = True, labels_file: str | Path | None = None,
              labels: LabelSet | None = None) -> Plan:
    """``labels_file`` (``--labels``) or an already resolved ``labels`` override the recipe's."""
    from ..backends import BACKENDS  # registry only; toolchains stay unimported

    out_dir = Path(out_dir) if out_dir else default_root(recipe.name) / target.name
    towers = recipe.export.towers or target.towers
    labels = labels or resolve_labels(recipe.export, labels_file)
    if "zero-shot-head" in towers and labels is None:
        where = "recipe export.towers" if recipe.export.towers else f"target {target.name}"
        raise ConfigError(f"{where} asks for the zero-shot-head tower, which needs a label set; pass "
                          "--labels labels.txt (one label per line) or set export.labels in the recipe")
    if target.in_graph_preprocess and not {"image", "zero-shot-head"} & set(towers):
        raise ConfigError(f"target {target.name} sets in_graph_preprocess, which changes only image inputs, "
                          f"but builds no image tower ({', '.join(towers)}); drop the key or add the image tower")
    plan = Plan(recipe=recipe, target=target, out_dir=out_dir, towers=towers, labels=labels)
    if not recipe.distill:
        plan.notes.append("no distillation stage: the teacher is compiled as it is")
    from ..distill import METHODS
    for i, st in enumerate(recipe.distill, 1):
        try:
            METHODS.get(st.method).check(st, recipe)
        except ConfigError as e:
            raise ConfigError(f"distill stage {i} ({st.method}): {e}") from None
        except (TypeError, ValueError, AttributeError, KeyError) as e:  # an options value of the wrong type
            raise ConfigError(f"distill stage {i} ({st.method}): invalid options ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]}); check each option's type and value in the "
                              "recipe's distill section") from e

    if target.devices and check_toolchains:
        _check_twin(target)
    for entry in target.backends:
        backend = BACKENDS.get(entry.backend)
        if check_toolchains:
            why = backend.available()
            if why:
                raise ToolchainMissing(f"target {target.name} needs backend {entry.backend}: {why}")
        for tower in towers:
            modes = recipe.quantization.modes.get(tower) if recipe.quantization.modes else None
            modes = modes or entry.modes_for(tower)
            for mode in modes:
                if mode not in backend.quant_modes:
                    raise ConfigError(
                        f"backend {entry.backend} cannot build quantization {mode!r} for the "
                        f"{tower} tower; it offers: {', '.join(backend.quant_modes)}")
                plan.artifacts.append(PlannedArtifact(entry.backend, tower, mode))

    from ..quantize.methods import make_method
    for mode in dict.fromkeys(a.quant for a in plan.artifacts):  # a mistyped parameter fails now
        try:
            make_method(mode, recipe.quantization.params.get(mode))
        except ConfigError as e:
            raise ConfigError(f"recipe quantization.params: {e}") from None
    for source in [*recipe.data.eval, *([recipe.data.train] if recipe.data.train else [])]:
        if source.path and not any(c in source.path for c in "*{") and not _exists(source.path):
            raise InputError(f"data path {source.path!r} ({source.source}) does not exist; "
                             "fix the path in the recipe's data section")
    _check_model_files(recipe)
    _check_data_options(recipe)
    if any(a.quant in CALIBRATED for a in plan.artifacts):
        from .calibration import check_calibration_source
        check_calibration_source(recipe)  # too few readable pairs fails now, not after training
    return plan


def _check_twin(target: Target) -> None:
    """A target judged on emulated ARM cores needs the twin: ready, or buildable here on first use
    (the host tools are installed); else one line naming both ways out."""
    from ..verify.arm64 import kit_status, missing_host_tools
    why = kit_status()
    if why and missing_host_tools():
        raise ToolchainMissing(f"target {target.name} judges its artifacts on {', '.join(target.devices)}: {why}; "
                               "or pass --host-only to verify and rank them on this machine's CPU alone")


def _check_data_options(recipe: Recipe) -> None:
    """Options of a user dataset are its loader's keyword arguments: an unknown one fails now
    (it was a TypeError deep in the reference or distill stage)."""
    import inspect
    import os

    from ..data import CsvLoader, FolderLoader, WebDatasetLoader
    sources = [(f"data.eval[{i}]", s) for i, s in enumerate(recipe.data.eval)]
    sources += [("data.train", recipe.data.train)] if recipe.data.train else []
    for where, s in sources:
        if s.source not in ("csv", "folder", "webdataset") or not s.options:
            continue
        path = str(s.path)  # the loader open_dataset will pick for this path
        cls = (FolderLoader if os.path.isdir(path) else CsvLoader if path.lower().endswith((".csv", ".tsv"))
               else WebDatasetLoader)
        valid = [k for k in list(inspect.signature(cls.__init__).parameters)[2:]
                 if k not in ("on_bad_image", "rank", "world_size")]
        bad = sorted(repr(k) for k in s.options if k not in valid)
        if bad:
            raise ConfigError(f"{where}.options: unknown {', '.join(bad)} for {s.path!r} (read by "
                              f"{cls.__name__}); valid options: {', '.join(valid) or 'none'}")


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):  # a NUL byte, a name too long: not a usable path either
        return False


def _check_model_files(recipe: Recipe) -> None:
    """A ``file:`` teacher or student that is not there fails now, not after minutes of work."""
    from ..config import parse_model_uri
    uris = [("teacher", recipe.teacher)]
    uris += [(f"distill stage {i} student", st.student) for i, st in enumerate(recipe.distill, 1) if st.student]
    for what, uri in uris:
        scheme, rest = parse_model_uri(uri)
        if scheme == "file":
            try:
                ok = Path(rest).expanduser().is_file()
            except (OSError, ValueError, RuntimeError):  # RuntimeError: ~user that does not exist
                ok = False
            if not ok:
                raise InputError(f"{what} checkpoint {rest!r} does not exist or is not a file; fix the "
                                 "file: path in the recipe (a .safetensors or .pt file with its .json config)")
