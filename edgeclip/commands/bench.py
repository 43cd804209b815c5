"""``edgeclip bench``: the CI regression gate over a bundle's report, and device timing.

``bench BUNDLE --baseline OLD.json`` compares the bundle's ``report.json`` with a stored one
(exit 1 and a table of what regressed); ``bench BUNDLE --device adb:SERIAL`` first times the
bundle's shipped .pte/.tflite on an Android phone (``verify/device_adb.py``) and gates that report.
"""
from __future__ import annotations

from pathlib import Path

from .._io import format_table
from ..errors import InputError

__all__ = ["bench_device", "main"]


def bench_device(args) -> Path:
    """``bench BUNDLE --device adb:SERIAL``: time the bundle on the phone; the new report's path."""
    from ..bundle import load_manifest
    from ..verify.device_adb import bench_on_device, parse_device
    from ..verify.report import records_table
    serial = parse_device(args.device)
    bundle_dir = Path(args.report)
    if not bundle_dir.is_dir():
        raise InputError(f"--device: {args.report} is not a bundle folder; pass the folder 'edgeclip build' wrote")
    res = bench_on_device(bundle_dir, load_manifest(bundle_dir), serial, binary_dir=args.device_binary_dir,
                          threads=args.threads, out_dir=Path(args.out) if args.out else None)
    cols = ["latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_min_ms", "load_ms", "size_mb"]
    print(format_table([["backend", "tower", "quant", "runner", *cols]] + records_table(res["records"], cols),
                       rule=False))
    print(f"\n{res['machine']['cpu']}, {res['machine']['os']}; report: {res['report']}")
    return res["report"]


def main(args) -> int:
    from ..verify.compare import compare_reports, parse_fraction
    from ..verify.gate import format_shortfalls
    from ..verify.report import read_report

    path = Path(args.report)
    if args.device:
        path = bench_device(args)
    elif args.out or args.threads or args.device_binary_dir:
        raise InputError("--out, --threads and --device-binary-dir apply to --device adb:SERIAL runs only")
    elif path.is_dir():
        path = path / "report.json"
    if not path.exists():
        raise InputError(f"{args.report}: no report.json there; pass a bundle folder built by "
                         "'edgeclip build' or a report.json path")
    new = read_report(path)
    if not args.baseline:
        print(f"{path}: {len(new['results'])} records; pass --baseline OLD.json to gate on regressions")
        return 0
    base = read_report(Path(args.baseline))
    regressions, notes = compare_reports(new, base, parse_fraction(args.max_regression, "--max-regression"),
                                         parse_fraction(args.max_accuracy_drop, "--max-accuracy-drop"))
    for n in notes:
        print(f"note: {n}")
    if regressions:
        print(f"{len(regressions)} regression(s) against {args.baseline} "
              f"(latency > +{args.max_regression}, accuracy < -{args.max_accuracy_drop}):")
        print(format_shortfalls(regressions))
        return 1
    print(f"no regressions against {args.baseline} (latency within +{args.max_regression}, "
          f"accuracy within -{args.max_accuracy_drop})")
    return 0
