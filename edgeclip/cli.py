"""The ``edgeclip`` command: argument parsing, exit codes, one-line errors.

Exit codes: 0 success, 1 a verification threshold failed, 2 bad input or a missing
toolchain, 3 an internal error (a bug: please report it with ``--debug`` output).
Toolchains are never imported here, so ``--help`` and ``list`` stay fast.
"""
from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path

from . import __version__
from .errors import EdgeclipError, exit_code

__all__ = ["main"]


def _cmd_list(args) -> int:
    what = args.what
    if what == "targets":
        from .config import list_targets, load_target
        for name, path in list_targets().items():
            t = load_target(path)
            backends = ", ".join(b.backend for b in t.backends)
            print(f"{name:<16} {t.platform:<8} {backends:<20} {t.description}")
    elif what == "recipes":
        from .config import DEFAULT_RECIPE, list_recipes, load_recipe
        for name, path in list_recipes().items():
            r = load_recipe(path)
            mark = " (default)" if name == DEFAULT_RECIPE else ""
            print(f"{name:<24} {r.teacher:<40} {r.description}{mark}")
    elif what == "models":
        from .models import list_models
        for row in list_models(include_openclip=args.all):
            print(f"{row['uri']:<48} {row['description']}")
    elif what == "backends":
        from .backends import BACKENDS
        for name, b in BACKENDS.items():
            why = b.available()
            state = "available" if why is None else f"missing: {why}"
            print(f"{name:<11} {', '.join(b.formats):<12} {state}")
    elif what == "quant":
        from .backends import BACKENDS
        from .names import QUANT_MODES
        for mode in QUANT_MODES:
            who = [n for n, b in BACKENDS.items() if mode in b.quant_modes]
            print(f"{mode:<13} {', '.join(who) or '-'}")
    return 0


def _cmd_build(args) -> int:
    from .config import default_recipe, list_targets, load_recipe, load_target
    from .labels import resolve_labels
    from .plan import make_plan
    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    labels = resolve_labels(recipe.export, args.labels)  # read and checked once, before any work
    names = list(list_targets()) if args.target == "all" else [args.target]
    plans = []
    for name in names:  # validate every plan before the first build starts
        out = None
        if args.out:
            out = Path(args.out) / load_target(name).name if args.target == "all" else Path(args.out)
        plans.append(make_plan(recipe, load_target(name), out, labels=labels))
    if args.plan:
        print("\n\n".join(p.describe() for p in plans))
        return 0
    from .errors import VerificationFailed
    from .pipeline import run_build
    failed: list[VerificationFailed] = []
    reference = Path(args.reference) if args.reference else None
    for plan in plans:  # targets share the teacher/distill/reference stages through the cache
        try:
            run_build(plan, force=args.force, reference=reference)
        except VerificationFailed as e:
            if len(plans) == 1:
                raise
            print(f"edgeclip: target {plan.target.name}: {e}", file=sys.stderr)
            failed.append(e)
    if failed:
        raise VerificationFailed(f"{len(failed)} of {len(plans)} targets fell short; see above")
    return 0


def _cmd_reference(args) -> int:
    from .config import default_recipe, load_recipe
    from .pipeline import run_reference
    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    res = run_reference(recipe, Path(args.out) if args.out else None, device=args.device)
    info = res["info"]
    c = info["counts"]
    print(f"reference for recipe {recipe.name} (model key {info['model_hash']}): fp32 torch {info['torch']} on "
          f"{info['device']} ({info['device_name']}), {c['images']} images, {c['captions']} captions, "
          f"{c['prompts']} prompts\n  {res['out']}\nreuse it with: edgeclip build --target T --recipe "
          f"{args.recipe or recipe.name} --reference {res['out']}")
    return 0


def _cmd_verify(args) -> int:
    from .errors import ToolchainMissing, VerificationFailed
    from .reverify import failure_line, format_checks, verify_bundle
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


def _cmd_info(args) -> int:
    from .models import describe, format_facts
    facts = describe(args.uri)
    print(json.dumps(facts, indent=2) if args.json else format_facts(facts))
    return 0


def _cmd_predict(args) -> int:
    from .predict import parse_labels_arg, predict
    labels = parse_labels_arg(args.labels) if args.labels else []
    out = predict(Path(args.bundle), args.image, texts=args.text, labels=labels, backend=args.backend)
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    text = out["text_artifact"] or f"none ({out['candidates_from']}: stored label embeddings)"
    print(f"image artifact {out['image_artifact']}, text artifact {text}, logit scale {out['logit_scale']:.4g}")
    for r in out["results"]:
        print(f"\n{r['image']}")
        for i, row in enumerate(r["ranking"][:args.top], 1):
            print(f"  {i:>2}. {row['probability']:6.1%}  {row['text']}")
    return 0


def _cmd_inspect(args) -> int:
    from .predict import inspect_text
    if args.json:
        from .bundle import load_manifest, open_bundle
        print(json.dumps(load_manifest(open_bundle(Path(args.bundle)), where=args.bundle), indent=2, ensure_ascii=False))
    else:
        print(inspect_text(Path(args.bundle)))
    return 0


def _cmd_pretrain(args) -> int:
    from .config import default_recipe, load_recipe
    from .teacher import format_scores, run_pretrain
    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    res = run_pretrain(recipe, Path(args.out) if args.out else None, force=args.force)
    how = "found cached" if res["cached"] else f"trained in {res['seconds']:.0f} s"
    print(f"teacher {recipe.teacher} ({recipe.name}): {how}\n  {res['model']}\n")
    print(format_scores(res["scores"]))
    return 0


def _bench_device(args) -> Path:
    """``bench BUNDLE --device adb:SERIAL``: time the bundle on the phone; the new report's path."""
    from .errors import InputError
    from .verify.device_adb import bench_on_device, parse_device
    from .verify.report import records_table
    serial = parse_device(args.device)
    if not Path(args.report).is_dir():
        raise InputError(f"--device: {args.report} is not a bundle folder; pass the folder 'edgeclip build' wrote")
    res = bench_on_device(Path(args.report), serial, binary_dir=args.device_binary_dir, threads=args.threads,
                          out_dir=Path(args.out) if args.out else None)
    cols = ["latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_min_ms", "load_ms", "size_mb"]
    rows = [["backend", "tower", "quant", "runner", *cols]] + records_table(res["records"], cols)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows))
    print(f"\n{res['machine']['cpu']}, {res['machine']['os']}; report: {res['report']}")
    return res["report"]


def _cmd_reinforce(args) -> int:
    from .config import default_recipe, load_recipe
    from .reinforce_cmd import run_reinforce
    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    res = run_reinforce(recipe, Path(args.out) if args.out else None, args.stage)
    ix = res["index"]
    teachers = ", ".join(f"{t['uri']} ({t['dim']})" for t in ix["teachers"])
    print(f"reinforced {ix['samples']} samples in {len(ix['shards'])} shards ({res['seconds']:.0f} s): "
          f"{ix['k']} augmentations, {ix['syn']} synthetic captions, {ix['dtype']}; teachers {teachers}\n"
          f"  {res['out']}\n  train from it with options.reinforced: {res['out']}")
    return 0


def _cmd_bench(args) -> int:
    from .errors import InputError
    from .verify.compare import compare_reports, parse_fraction
    from .verify.gate import format_shortfalls
    from .verify.report import read_report

    path = Path(args.report)
    if args.device:
        path = _bench_device(args)
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeclip",
        description="Compile CLIP-style image-text models into verified on-device artifacts.")
    p.add_argument("--version", action="version", version=f"edgeclip {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ls = sub.add_parser("list", help="list targets, recipes, models, quantization modes or backends")
    ls.add_argument("what", choices=["targets", "recipes", "models", "quant", "backends"])
    ls.add_argument("--all", action="store_true", help="models: include open_clip's pretrained tags")
    ls.set_defaults(func=_cmd_list)

    b = sub.add_parser("build", help="distil, quantize, export, verify and bundle for a target")
    b.add_argument("--target", required=True, help="target name (edgeclip list targets), a .yaml path, or 'all'")
    b.add_argument("--recipe", help="recipe name or .yaml path (default: the embedded default recipe)")
    b.add_argument("--out", help="output folder (default: build/<recipe>/<target>)")
    b.add_argument("--plan", action="store_true", help="validate and print the stages, run nothing")
    b.add_argument("--force", metavar="STAGE", help="rerun from this stage on")
    b.add_argument("--reference", metavar="DIR",
                   help="use the reference 'edgeclip reference' stored in DIR (checked against this model)")
    b.add_argument("--labels", metavar="FILE",
                   help="label set (one label per line, UTF-8) bundled with its text embeddings; also enables "
                        "a zero-shot-head tower (overrides the recipe's export.labels/labels_file)")
    b.set_defaults(func=_cmd_build)

    rf = sub.add_parser("reference", help="compute a recipe's fp32 reference outputs once (cuda when present)")
    rf.add_argument("--recipe", help="recipe name or .yaml path (default: the embedded default recipe)")
    rf.add_argument("--out", help="folder for reference.npz + reference.json (default: build/<recipe>/reference); "
                    "its parent's .cache is shared with builds")
    rf.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="where the fp32 model runs (default auto: cuda when present, else cpu)")
    rf.set_defaults(func=_cmd_reference)

    v = sub.add_parser("verify", help="re-run the accuracy checks of a built bundle (exit 1 on a shortfall)")
    v.add_argument("bundle", help="bundle folder (build/<recipe>/<target>) or its .zip")
    v.add_argument("--threads", type=int, help="runtime threads (default: the target's bench threads)")
    v.set_defaults(func=_cmd_verify)

    pr = sub.add_parser("predict", help="rank labels or texts for images with a built bundle")
    pr.add_argument("bundle", help="bundle folder (build/<recipe>/<target>) or its .zip")
    pr.add_argument("--image", nargs="+", required=True, help="image file(s)")
    pr.add_argument("--labels", help="labels, comma-separated ('cat,dog') or a file with one per line, put through "
                    "the bundle's prompt templates (default: the bundle's own label set and stored embeddings)")
    pr.add_argument("--text", nargs="+", help="texts to rank, used as given (instead of or besides --labels)")
    pr.add_argument("--backend", help="use this backend's artifacts (default: the first that runs here)")
    pr.add_argument("--top", type=int, default=5)
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=_cmd_predict)

    ins = sub.add_parser("inspect", help="print a bundle's manifest, sizes and metrics")
    ins.add_argument("bundle", help="bundle folder or its .zip")
    ins.add_argument("--json", action="store_true")
    ins.set_defaults(func=_cmd_inspect)

    pt = sub.add_parser("pretrain", help="train a recipe's builtin teacher once (builds reuse it) and score it")
    pt.add_argument("--recipe", help="recipe name or .yaml path (default: the embedded default recipe)")
    pt.add_argument("--out", help="root folder (default: build/<recipe>); builds under it reuse the teacher")
    pt.add_argument("--force", action="store_true", help="train again even if a cached teacher exists")
    pt.set_defaults(func=_cmd_pretrain)

    rf = sub.add_parser("reinforce", help="write a recipe's MobileCLIP reinforced dataset (torchrun-ready)")
    rf.add_argument("--recipe", help="recipe name or .yaml path with a mobileclip stage")
    rf.add_argument("--out", help="output folder (default: build/<recipe>/reinforced); a rerun resumes")
    rf.add_argument("--stage", type=int, help="which distill stage (1-based) when several are mobileclip")
    rf.set_defaults(func=_cmd_reinforce)

    be = sub.add_parser("bench", help="gate a build's report against a stored baseline (CI); time it on a device")
    be.add_argument("report", help="bundle folder (its report.json) or a report.json path")
    be.add_argument("--baseline", help="an earlier report.json to compare with")
    be.add_argument("--max-regression", default="10%", help="allowed p50 latency growth (default 10%%)")
    be.add_argument("--max-accuracy-drop", default="0.005",
                    help="allowed absolute drop of cosine/agreement/accuracy metrics (default 0.005)")
    be.add_argument("--device", metavar="adb:SERIAL",
                    help="time the bundle's .pte/.tflite on an Android device with executor_runner / benchmark_model")
    be.add_argument("--device-binary-dir", metavar="DIR",
                    help="where those binaries are on the device "
                         "(default $EDGECLIP_DEVICE_BINARY_DIR or /data/local/tmp)")
    be.add_argument("--threads", type=int, help="--device: runtime threads (default: the target's bench threads)")
    be.add_argument("--out", help="--device: report folder (default BUNDLE/device-adb-SERIAL)")
    be.set_defaults(func=_cmd_bench)

    i = sub.add_parser("info", help="parameters, FLOPs and preprocessing of a model URI")
    i.add_argument("uri", help="openclip:NAME[/TAG] | hf:ID | file:PATH | builtin:NAME")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)
    return p


# OSError numbers that describe the machine (full disk, no permission, read-only mount), not a bug
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgeclipError as e:
        if args.debug:
            raise
        msg = " ".join(str(e).split("\n"))
        print(f"edgeclip: error: {msg}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        print("edgeclip: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line unless --debug
        if args.debug:
            raise
        if isinstance(e, OSError) and e.errno in _ENVIRONMENT_ERRNOS:  # the machine's, not a bug
            where = f"{e.filename}: " if e.filename else ""
            print(f"edgeclip: error: {where}{e.strerror}; free disk space or fix the permissions of the "
                  "output folder (--out) and of its parent, where the stage cache lives", file=sys.stderr)
            return 2
        detail = " ".join(str(e).split())
        print(f"edgeclip: internal error: {type(e).__name__}: {detail} (rerun with --debug for the "
              "traceback and report it)", file=sys.stderr)
        return exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
