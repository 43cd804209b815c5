"""``edgeclip verify BUNDLE``: re-run the accuracy checks on a bundle that was already built.

Only the bundle is used: ``load_manifest`` first checks the schema and the sha256 of every file
(a missing or modified file is a one-line input error), then each shipped artifact runs in its
own runtime (CoreML off macOS: the MIL interpreter, labelled emulated) over the reference inputs
stored in ``reference/``, with the same code as the build's verify stage, and is gated on the
thresholds the build recorded for it in the manifest.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .._io import format_table
from ..errors import InputError

__all__ = ["ArtifactCheck", "verify_bundle", "format_checks", "failure_line", "main"]

_ORDER = ("cosine_mean", "cosine_min", "psnr_db", "top1_agreement", "r1_agreement", "r5_agreement")


@dataclass
class ArtifactCheck:
    entry: dict
    runner: str | None
    emulated: bool
    metrics: dict
    thresholds: dict
    shortfalls: list = field(default_factory=list)
    why: str | None = None

    @property
    def name(self) -> str:
        a = self.entry
        return f"{a['backend']}/{a['tower']}/{a['quant']}"


def _thresholds(d: dict):
    from ..config import Thresholds
    known = {f.name for f in dataclasses.fields(Thresholds)}
    return Thresholds(**{k: v for k, v in d.items() if k in known})


def verify_bundle(bundle_dir: Path, threads: int | None = None) -> list[ArtifactCheck]:
    """``bundle_dir``: a bundle folder or its ``.zip`` (extracted safely, every sha256 checked)."""
    from ..bundle import artifact_from_entry, load_manifest, open_bundle
    from ..verify.gate import check_accuracy
    from ..verify.reference import Reference
    from ..verify.report import metric_records
    from ..verify.run import check_artifact

    bundle_dir = open_bundle(Path(bundle_dir))
    manifest = load_manifest(bundle_dir)  # schema + every file's sha256
    ref_block = manifest.get("reference")
    if not ref_block:
        raise InputError(f"{bundle_dir}: the bundle carries no reference outputs (built by an older edgeclip); "
                         "rebuild it with `edgeclip build` to get its reference/ folder")
    unlisted = [f for f in ref_block["files"] if f not in manifest["files"]]
    if unlisted:
        raise InputError(f"{bundle_dir}: {', '.join(unlisted)} not covered by the manifest's sha256 list; "
                         "rebuild the bundle")
    ref = Reference.load(bundle_dir / Path(ref_block["files"][0]).parent)
    shipped = [a for a in manifest["artifacts"] if a["shipped"]]
    if not shipped:
        raise InputError(f"{bundle_dir}: the manifest lists no shipped artifact; rebuild the bundle")
    threads = threads or manifest.get("bench", {}).get("threads", 2)
    out = []
    for a in shipped:
        if "thresholds" not in a:
            raise InputError(f"{bundle_dir}: {a['file']} has no recorded thresholds (built by an older "
                             "edgeclip); rebuild the bundle")
        head = None
        if a["tower"] == "zero-shot-head":  # checked against the bundle's own label matrix
            from ..bundle.labels import load_bundle_labels
            head = (load_bundle_labels(bundle_dir, manifest)[2], manifest["model"]["logit_scale"])
        res = check_artifact(artifact_from_entry(bundle_dir, a), ref, threads, head=head)
        chk = ArtifactCheck(entry=a, runner=res["runner"], emulated=res["emulated"], metrics=res["metrics"],
                            thresholds=a["thresholds"], why=res.get("why"))
        if chk.runner is not None:
            base = dict(model=manifest["model"]["recipe"], target=manifest["target"]["name"],
                        backend=a["backend"], tower=a["tower"], quant=a["quant"], runner=chk.runner,
                        emulated=chk.emulated)
            records = metric_records(base, chk.metrics)
            chk.shortfalls = check_accuracy(records, {chk.name: _thresholds(a["thresholds"])})
        out.append(chk)
    return out


def _flat(metrics: dict) -> dict[str, float]:
    """Scalar metrics, with each zero-shot group's as ``zero_shot_top1[GROUP]`` / ``top1_agreement[GROUP]``."""
    out = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) or v is None}
    for name, g in (metrics.get("zero_shot_groups") or {}).items():
        out[f"top1_agreement[{name}]"] = g["agreement"]
        if g.get("top1") is not None:
            out[f"zero_shot_top1[{name}]"] = g["top1"]
    return out


def _fmt(v) -> str:
    return "missing" if v is None else f"{v:.4f}"


def format_checks(checks: list[ArtifactCheck]) -> str:
    """One table per artifact: metric, value now, value at build time, threshold, result."""
    blocks = []
    for c in checks:
        runner = (c.runner or "none") + (" (emulated)" if c.emulated else "")
        head = f"{c.name}  {c.entry['file']}  runner {runner}"
        if c.runner is None:
            blocks.append(f"{head}\n  not run: {c.why}")
            continue
        failed = {s.metric for s in c.shortfalls}
        flat, built_all = _flat(c.metrics), _flat(c.entry.get("metrics", {}))
        names = [m for m in _ORDER if m in flat or m in c.thresholds]
        names += [m for m in flat if m not in names]
        rows = [["metric", "value", "at build", "threshold", "result"]]
        for m in names:
            # per group, only zero-shot accuracy is gated (the whole-set agreement is)
            limit = c.thresholds.get(m) if "[" not in m else (
                c.thresholds.get("zero_shot_top1") if m.startswith("zero_shot_top1[") else None)
            result = "FAIL" if m in failed else ("pass" if limit is not None and m in flat else "-")
            built = built_all.get(m)
            rows.append([m, _fmt(flat.get(m)), "-" if built is None else f"{built:.4f}",
                         "-" if limit is None else f">= {limit:g}", result])
        blocks.append("\n".join([head, format_table(rows, indent="  ")]))
    return "\n\n".join(blocks)


def failure_line(checks: list[ArtifactCheck]) -> str:
    short = [s for c in checks for s in c.shortfalls]
    parts = [f"{s.artifact} {s.metric} {_fmt(s.value)} (needs {s.op} {s.limit:g})" for s in short]
    return f"{len(short)} metric(s) fell short: " + "; ".join(parts)


def main(args) -> int:
    """``edgeclip verify BUNDLE [--threads N]``: exit 1 naming each shortfall."""
    from ..errors import ToolchainMissing, VerificationFailed
    checks = verify_bundle(Path(args.bundle), threads=args.threads)
    print(format_checks(checks))
    if any(c.shortfalls for c in checks):
        raise VerificationFailed(failure_line(checks))
    not_run = [c for c in checks if c.runner is None]
    if not_run:
        raise ToolchainMissing(f"{len(checks) - len(not_run)} artifact(s) pass; could not run "
                               + "; ".join(f"{c.name} ({c.why})" for c in not_run))
    print(f"\nall {len(checks)} shipped artifact(s) pass their thresholds against the bundle's reference")
    return 0
