"""``edgeclip bench``: the CI regression gate over a bundle's report, and re-timing.

``bench BUNDLE --baseline OLD.json`` compares the bundle's ``report.json`` with a stored one (exit 1
and a table of what regressed; ``verify.compare`` says how machines and noise are handled).
``bench BUNDLE --repeat K`` first re-times the bundle's shipped artifacts on this machine, K times
in interleaved rounds beside the machine's yardstick, and gates the median; ``bench BUNDLE --device
adb:SERIAL`` times the shipped .pte/.tflite on an Android phone (``verify/device_adb.py``) instead.
``--summary FILE`` appends the comparison as Markdown (a CI job summary: ``$GITHUB_STEP_SUMMARY``).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

from .._io import format_table
from ..errors import InputError

__all__ = ["bench_device", "bench_host", "main"]

_COLS = ["latency_p50_ms", "latency_p90_ms", "latency_spread", "latency_p50_roofline", "size_mb"]


def bench_device(args) -> Path:
    """``bench BUNDLE --device adb:SERIAL``: time the bundle on the phone; the new report's path."""
    from ..bundle import load_manifest
    from ..verify.device_adb import bench_on_device, parse_device
    from ..verify.report import records_table
    serial = parse_device(args.device)
    bundle_dir = _bundle_dir(args, "--device")
    res = bench_on_device(bundle_dir, load_manifest(bundle_dir), serial, binary_dir=args.device_binary_dir,
                          threads=args.threads, out_dir=Path(args.out) if args.out else None)
    cols = ["latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_min_ms", "load_ms", "size_mb"]
    print(format_table([["backend", "tower", "quant", "runner", *cols]] + records_table(res["records"], cols),
                       rule=False))
    print(f"\n{res['machine']['cpu']}, {res['machine']['os']}; report: {res['report']}")
    return res["report"]


def _bundle_dir(args, flag: str) -> Path:
    bundle_dir = Path(args.report)
    if not bundle_dir.is_dir():
        raise InputError(f"{flag}: {args.report} is not a bundle folder; pass the folder 'edgeclip build' wrote")
    return bundle_dir


def _timing_input(art, ref):
    """One call's inputs, from the bundle's reference (the artifact's fixed batch, its input form)."""
    from ..verify.run import batch_of, image_inputs
    n = batch_of(art)
    rows = image_inputs(art, ref) if art.tower in ("image", "zero-shot-head") else ref.caption_ids
    return (rows[:n].astype(art.input_dtypes[0]),)


def bench_host(args) -> Path:
    """``bench BUNDLE --repeat K``: re-time the shipped artifacts here; the new report's path."""
    from ..bundle import artifact_from_entry, load_manifest
    from ..verify.reference import Reference
    from ..verify.report import Record, latency_records, machine_info, records_table, write_report
    from ..verify.rounds import median_timing, time_in_rounds
    from ..backends import BACKENDS

    if args.repeat < 1:
        raise InputError(f"--repeat: must be >= 1, found {args.repeat}")
    bundle_dir = _bundle_dir(args, "--repeat")
    manifest = load_manifest(bundle_dir)  # schema + every file's sha256
    ref_block = manifest.get("reference") or {}
    if not ref_block.get("files"):
        raise InputError(f"{bundle_dir}: the bundle carries no reference inputs to time with; rebuild it")
    ref = Reference.load(bundle_dir / Path(ref_block["files"][0]).parent)
    entries, arts, skipped = [], [], []
    for a in (a for a in manifest["artifacts"] if a["shipped"]):
        art = artifact_from_entry(bundle_dir, a)
        why = BACKENDS.get(art.backend).why_no_runner(art)  # CoreML off macOS: nothing to time here
        if why:
            skipped.append(f"{a['backend']}/{a['tower']}/{a['quant']} ({why})")
            continue
        entries.append(a)
        arts.append(art)
    if not arts:
        raise InputError(f"{bundle_dir}: no shipped artifact runs on this machine ({'; '.join(skipped)}); "
                         "time it where its runtime runs")
    bench = manifest.get("bench", {})
    warmup, runs, rounds = int(bench.get("warmup", 3)), int(bench.get("runs", 20)), int(bench.get("rounds", 5))
    threads = int(args.threads or bench.get("threads", 2))
    repeats = []
    for i in range(args.repeat):
        print(f"[{i + 1}/{args.repeat}] timing {len(arts)} artifact(s) in {rounds} interleaved rounds "
              f"({threads} threads)", file=sys.stderr, flush=True)
        repeats.append(time_in_rounds([a.to_dict() for a in arts], [_timing_input(a, ref) for a in arts],
                                      warmup, runs, rounds, threads))
    yard = dict(repeats[0]["yardstick"])
    yard.update(gemm_peak_gflops=statistics.median(r["yardstick"]["gemm_peak_gflops"] for r in repeats),
                memory_bandwidth_gbs=statistics.median(r["yardstick"]["memory_bandwidth_gbs"] for r in repeats),
                repeats=args.repeat)
    records = []
    for i, (a, art) in enumerate(zip(entries, arts)):
        t = median_timing([r["timings"][i] for r in repeats])
        g = _gflop(manifest, "text" if a["tower"] == "text" else "image")  # a zero-shot head: its image tower's
        roof = g / yard["gemm_peak_gflops"] * 1e3 if g else None
        base = dict(model=manifest["model"]["recipe"], target=manifest["target"]["name"], backend=a["backend"],
                    tower=a["tower"], quant=a["quant"], runner=a.get("runtime") or art.backend, emulated=False)
        records += latency_records(base, {**t, "gflop": g, "p50_roofline": t["p50_ms"] / roof if roof else None})
        records.append(Record(**base, metric="size_mb", value=a["size_bytes"] / 1e6))
    records += _accuracy_records(bundle_dir, entries)
    out = Path(args.out) if args.out else bundle_dir / "bench-host"
    out.mkdir(parents=True, exist_ok=True)
    machine = {**machine_info(), "bench_threads": threads, "yardstick": yard}
    write_report(out, records, machine=machine,
                 extra={"bench": {"warmup": warmup, "runs": runs, "rounds": rounds, "threads": threads,
                                  "repeat": args.repeat, "skipped": skipped,
                                  "accuracy": "copied from the bundle's report.json (the build's verify stage)"}})
    print(format_table([["backend", "tower", "quant", "runner", *_COLS]] + records_table(records, _COLS), rule=False))
    print(f"\n{machine['cpu']} ({machine['cores']} cores), GEMM peak {yard['gemm_peak_gflops']:.0f} GFLOP/s; "
          f"median of {args.repeat} timing(s); report: {out / 'report.json'}")
    for s in skipped:
        print(f"note: not timed here: {s}")
    return out / "report.json"


def _accuracy_records(bundle_dir: Path, entries: list[dict]) -> list:
    """The shipped artifacts' accuracy records and instruction counts on emulated cores from the
    build's report: re-timing changes neither, and one report then gates them together."""
    from ..verify.compare import ACCURACY_METRICS
    from ..verify.report import Record, read_report
    path = bundle_dir / "report.json"
    if not path.exists():
        return []
    shipped = {(a["backend"], a["tower"], a["quant"]) for a in entries}
    return [Record(**r) for r in read_report(path)["results"]
            if (r["metric"] in ACCURACY_METRICS or r["metric"] == "instructions_per_inference")
            and (r["backend"], r["tower"], r["quant"]) in shipped]


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:  # appended: a CI job summary collects every step's
        f.write(text)


def _latency_markdown(report: dict, path: Path) -> str:
    """A report's latency table for ``--summary`` when there is no baseline to gate on."""
    from ..verify.report import Record, records_table
    cols = ["latency_p50_ms", "latency_p90_ms", "latency_spread", "size_mb"]
    rows = records_table([Record(**r) for r in report["results"]], cols)
    m = report.get("machine") or {}
    out = [f"### edgeclip latency ({path})", "", f"{m.get('cpu') or '?'}; no baseline given", "",
           "| backend | tower | quant | runner | " + " | ".join(cols) + " |", "|" + "---|" * (4 + len(cols))]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _gflop(manifest: dict, tower: str) -> float | None:
    f = ((manifest.get("model") or {}).get("flops") or {}).get(tower)
    return f / 1e9 if f else None


def main(args) -> int:
    from ..verify.compare import compare_reports, parse_fraction
    from ..verify.gate import format_shortfalls
    from ..verify.report import read_report

    path = Path(args.report)
    max_reg = parse_fraction(args.max_regression, "--max-regression")  # bad flags fail before any timing
    max_drop = parse_fraction(args.max_accuracy_drop, "--max-accuracy-drop")
    max_instr = parse_fraction(args.max_instruction_regression, "--max-instruction-regression")
    if args.device and args.repeat:
        raise InputError("--repeat re-times on this machine; --device adb:SERIAL times on the phone: pass one")
    if args.device:
        path = bench_device(args)
    elif args.repeat is not None:
        path = bench_host(args)
    elif args.out or args.threads or args.device_binary_dir:
        raise InputError("--out and --threads apply to --repeat K or --device adb:SERIAL runs, "
                         "--device-binary-dir to --device only")
    elif path.is_dir():
        path = path / "report.json"
    if not path.exists():
        raise InputError(f"{args.report}: no report.json there; pass a bundle folder built by "
                         "'edgeclip build' or a report.json path")
    new = read_report(path)
    if not args.baseline:
        if args.summary:
            _append(args.summary, _latency_markdown(new, path))
        print(f"{path}: {len(new['results'])} records; pass --baseline OLD.json to gate on regressions")
        return 0
    base = read_report(Path(args.baseline))
    cmp = compare_reports(new, base, max_reg, max_drop, names=(str(path), str(args.baseline)), gate=args.gate,
                          max_instruction_regression=max_instr)
    print(cmp.basis_line())
    if cmp.rows:
        print(cmp.table())
    for n in cmp.notes:
        print(f"note: {n}")
    if args.summary:
        _append(args.summary, cmp.markdown())
    cost = (f"instructions > +{args.max_instruction_regression}" if cmp.basis == "instructions"
            else f"latency > +{args.max_regression} and beyond the noise band")
    if cmp.regressions:
        print(f"{len(cmp.regressions)} regression(s) against {args.baseline} ({cost}, "
              f"accuracy < -{args.max_accuracy_drop}):")
        print(format_shortfalls(cmp.regressions))
        return 1
    within = (f"instructions within +{args.max_instruction_regression}" if cmp.basis == "instructions"
              else f"latency within +{args.max_regression} or the noise band")
    print(f"no regressions against {args.baseline} ({within}, accuracy within -{args.max_accuracy_drop})")
    return 0
