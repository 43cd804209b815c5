"""Compare a report with a stored baseline: the CI gate behind ``edgeclip bench --baseline``.

Latency. When both reports come from the same kind of machine (``machine.machine_differences``:
CPU model, cores, bench threads, runtime versions) their p50 milliseconds are compared as they
are. When they do not, milliseconds would gate on the hardware, so each p50 is first normalized
by its own run's large-GEMM peak (p50 x GFLOP/s: the work that machine's peak does in that time;
the tower's FLOPs cancel, so a change that adds FLOPs still shows) and the output says so. An
artifact regresses when its p50 grew by more than ``max_regression`` *and* by more than the noise
band (the larger of the two runs' own ``latency_spread``), so a noisy run cannot fail a change
that did nothing, and a quiet one catches a small real regression.

Instructions. Where both reports carry instructions per inference on emulated ARM cores (the
ARM64 twin: android builds), those are what is gated by default (``gate="auto"``): the same
artifact on the same core gives the same count on any machine under any load, so there is no
noise band and no normalization, and the bound is tight (``max_instruction_regression``, 1%).
Host milliseconds are then reported by ``bench`` but not gated unless asked (``gate="ms"``).

Accuracy regresses when a higher-is-better metric fell by more than ``max_accuracy_drop``
(absolute). Artifacts match on (model, target, backend, tower, quant); ones present on only
one side are listed, not failed, since a recipe edit may add or drop artifacts on purpose.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .._io import format_table, markdown_table
from .gate import Shortfall
from .machine import machine_differences

__all__ = ["GATES", "ACCURACY_METRICS", "Comparison", "LatencyRow", "compare_reports", "parse_fraction"]

ACCURACY_METRICS = ("cosine_mean", "cosine_min", "top1_agreement", "r1_agreement", "zero_shot_top1")
# SIMD features an int8 kernel's speed hangs on: normalized int8 latencies across hosts that
# differ in them say little (int8 wins 1.2x over fp32 on an AVX2 host, 6x with VNNI/AMX)
_INT8_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


def parse_fraction(text: str, what: str) -> float:
    """'10%' or '0.1' -> 0.1; a one-line error naming the flag otherwise."""
    from ..errors import InputError

    s = str(text).strip()
    try:
        v = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise InputError(f"{what}: {text!r} is not a number; write e.g. 10% or 0.1") from None
    if not 0 <= v < 10:
        raise InputError(f"{what}: {text!r} is out of range; write e.g. 10% or 0.1")
    return v


def _key(r: dict) -> tuple:
    return (r["model"], r["target"], r["backend"], r["tower"], r["quant"])


def _metric(r: dict) -> str:
    """The metric's name, with the evaluation group of a per-group record (zero_shot_top1[digits])
    and the device of an emulated core's (cosine_mean@arm64:cortex-a76)."""
    return r["metric"] + (f"[{r['group']}]" if r.get("group") else "") + (f"@{r['device']}" if r.get("device") else "")


def _values(results: list[dict], metric: str) -> dict[tuple, float]:
    return {_key(r): r["value"] for r in results if r["metric"] == metric and not r.get("group")
            and not r.get("device") and r["value"] is not None}


@dataclass(frozen=True)
class LatencyRow:
    artifact: str
    baseline: float
    new: float
    noise: float        # the noise band, a fraction: the larger of the two runs' spreads
    regressed: bool

    @property
    def change(self) -> float:
        return self.new / self.baseline - 1.0 if self.baseline else 0.0


@dataclass
class Comparison:
    basis: str                                   # "ms" or "normalized"
    differences: list[str]                       # how the machines differ ([] for "ms")
    rows: list[LatencyRow] = field(default_factory=list)
    regressions: list[Shortfall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def basis_line(self) -> str:
        if self.basis == "instructions":
            return ("instructions per inference compared on the emulated ARM cores (deterministic on any machine: no "
                    "noise band, no normalization); host milliseconds are not gated (--gate ms gates them)")
        if self.basis == "ms":
            return "latency compared in milliseconds: both reports come from the same kind of machine"
        return ("latency compared normalized by each run's large-GEMM peak (p50 ms x GFLOP/s), since the "
                "machines differ (" + "; ".join(self.differences) + ")")

    def _cells(self) -> list[list[str]]:
        unit, scale = {"ms": ("ms", 1.0), "instructions": ("M instructions", 1e-6)}.get(self.basis,
                                                                                        ("ms x GFLOP/s / 1e3", 1.0))
        head = ["artifact", f"baseline ({unit})", f"new ({unit})", "change", "noise band", "result"]
        body = [[r.artifact, f"{r.baseline * scale:.6g}", f"{r.new * scale:.6g}", f"{100 * r.change:+.2f}%",
                 f"{100 * r.noise:.1f}%", "REGRESSED" if r.regressed else "ok"] for r in self.rows]
        return [head] + body

    def table(self) -> str:
        return format_table(self._cells())

    def markdown(self, title: str = "edgeclip latency gate") -> str:
        cells = self._cells()
        out = [f"### {title}", "", self.basis_line(), "", *markdown_table(cells)]
        if self.regressions:
            out += ["", f"**{len(self.regressions)} regression(s):** " +
                    ", ".join(f"{s.artifact} {s.metric}" for s in self.regressions)]
        out += [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"


def _normalizer(report: dict) -> float | None:
    y = (report.get("machine") or {}).get("yardstick") or {}
    peak = y.get("gemm_peak_gflops")
    return float(peak) / 1e3 if peak else None


def _basis(new: dict, base: dict, new_name: str, base_name: str) -> tuple[str, list[str]]:
    from ..errors import InputError
    diffs = machine_differences(new.get("machine") or {}, base.get("machine") or {})
    if not diffs:
        return "ms", []
    lacking = [name for name, rep in ((new_name, new), (base_name, base)) if _normalizer(rep) is None]
    if lacking:
        raise InputError(f"the report and the baseline come from different machines ({'; '.join(diffs)}), and "
                         f"{' and '.join(lacking)} records no machine yardstick to normalize by; rebuild it with "
                         "this edgeclip (or compare on the machine the baseline came from)")
    return "normalized", diffs


def _latency_rows(new: dict, base: dict, basis: str, max_regression: float) -> list[LatencyRow]:
    n, b = _values(new["results"], "latency_p50_ms"), _values(base["results"], "latency_p50_ms")
    sn, sb = _values(new["results"], "latency_spread"), _values(base["results"], "latency_spread")
    fn, fb = (1.0, 1.0) if basis == "ms" else (_normalizer(new), _normalizer(base))
    rows = []
    for k in sorted(n.keys() & b.keys()):
        nv, bv = n[k] * fn, b[k] * fb
        noise = max(sn.get(k, 0.0), sb.get(k, 0.0))
        change = nv / bv - 1.0 if bv else 0.0
        rows.append(LatencyRow("/".join(k[2:]), bv, nv, noise, change > max_regression and change > noise))
    return rows


def _counts(results: list[dict]) -> dict[tuple, float]:
    """``{(artifact key, device): instructions per inference}``."""
    return {(_key(r), r["device"]): r["value"] for r in results
            if r["metric"] == "instructions_per_inference" and r.get("device") and r["value"] is not None}


def _count_rows(new: dict, base: dict, max_increase: float) -> list[LatencyRow]:
    n, b = _counts(new["results"]), _counts(base["results"])
    rows = []
    for k in sorted(n.keys() & b.keys()):
        change = n[k] / b[k] - 1.0 if b[k] else 0.0
        rows.append(LatencyRow(f"{'/'.join(k[0][2:])}@{k[1]}", b[k], n[k], 0.0, change > max_increase))
    return rows


def _accuracy_drops(new: list[dict], base: list[dict], max_drop: float) -> list[Shortfall]:
    old = {(_key(r), _metric(r)): r["value"] for r in base
           if r["metric"] in ACCURACY_METRICS and r["value"] is not None}
    out = []
    for r in new:
        k = (_key(r), _metric(r))
        if k not in old or r["value"] is None:
            continue
        limit = old[k] - max_drop
        if r["value"] < limit:
            out.append(Shortfall("/".join(_key(r)[2:]), _metric(r), r["value"], limit, ">="))
    return out


GATES = ("auto", "instructions", "ms")


def compare_reports(new: dict, baseline: dict, max_regression: float = 0.10, max_accuracy_drop: float = 0.005,
                    names: tuple[str, str] = ("the report", "the baseline"), gate: str = "auto",
                    max_instruction_regression: float = 0.01) -> Comparison:
    """Gate ``new`` against ``baseline``; ``names`` say which is which in error messages; ``gate``:
    what cost is gated (``auto``: instruction counts where both reports have them, else ms)."""
    from ..errors import InputError

    n, b = new["results"], baseline["results"]
    if not {_key(r) for r in n} & {_key(r) for r in b}:
        raise InputError("the report and the baseline share no artifact (model, target, backend, tower, "
                         "quant); compare builds of the same recipe and target")
    counted = _counts(n).keys() & _counts(b).keys()
    if gate == "instructions" and not counted:
        raise InputError("--gate instructions: the report and the baseline share no instruction count (emulated "
                         "ARM cores); build both with a target that sets devices (android), or use --gate ms")
    if gate == "instructions" or (gate == "auto" and counted):
        cmp = Comparison(basis="instructions", differences=[])
        cmp.rows = _count_rows(new, baseline, max_instruction_regression)
        cmp.regressions = [Shortfall(r.artifact, "instructions_per_inference", r.new,
                                     r.baseline * (1 + max_instruction_regression), "<=") for r in cmp.rows if r.regressed]
    else:
        basis, diffs = _basis(new, baseline, *names)
        cmp = Comparison(basis=basis, differences=diffs)
        cmp.rows = _latency_rows(new, baseline, basis, max_regression)
        unit = "latency_p50_ms" if basis == "ms" else "latency_p50_ms x GFLOP/s"
        cmp.regressions = [Shortfall(r.artifact, unit, r.new, r.baseline * (1 + max(max_regression, r.noise)), "<=")
                           for r in cmp.rows if r.regressed]
    cmp.regressions += _accuracy_drops(n, b, max_accuracy_drop)
    if cmp.basis != "instructions" and gate == "auto" and (_counts(n) or _counts(b)):
        which = names[0] if not _counts(n) else names[1]
        cmp.notes.append(f"{which} has no instruction counts on emulated ARM cores (a --host-only build, or an "
                         "older edgeclip): gated on host milliseconds instead")
    new_keys, base_keys = {_key(r) for r in n}, {_key(r) for r in b}
    cmp.notes = [f"only in the new report: {'/'.join(k[2:])}" for k in sorted(new_keys - base_keys)]
    cmp.notes += [f"only in the baseline: {'/'.join(k[2:])}" for k in sorted(base_keys - new_keys)]
    untimed = sorted(set(_values(b, "latency_p50_ms")) & new_keys - set(_values(n, "latency_p50_ms")))
    if untimed and cmp.basis != "instructions":
        cmp.notes.append("no latency in the new report for " + ", ".join("/".join(k[2:]) for k in untimed)
                         + " (not timed in this run)")
    flags = [set((r.get("machine") or {}).get("cpu_flags") or ()) & _INT8_FLAGS for r in (new, baseline)]
    if cmp.basis == "normalized" and flags[0] != flags[1] and any(q.startswith(("int8", "w8a8", "8da4w")) for *_, q in new_keys):
        cmp.notes.append(f"the machines differ in int8 SIMD support ({sorted(flags[1]) or 'none'} -> "
                         f"{sorted(flags[0]) or 'none'}): normalized int8 latencies compare coarsely across them")
    noisy = [r.artifact for r in cmp.rows if r.noise > max_regression]
    if noisy:
        cmp.notes.append(f"noise band wider than --max-regression for {', '.join(noisy)}: the gate there only "
                         "catches regressions beyond the noise; rerun with --repeat K on a quieter machine")
    return cmp
