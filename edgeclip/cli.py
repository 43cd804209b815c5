"""The ``edgeclip`` command: argument parsing, exit codes, one-line errors.

A thin parser: each verb is one call, into ``edgeclip.build`` (build, reference) or into the
verb's module ``edgeclip.commands.<verb>`` (pretrain, distill, reinforce, verify, predict, inspect, bench).

Exit codes: 0 success, 1 a verification threshold failed, 2 bad input or a missing
toolchain, 3 an internal error (a bug: please report it with ``--debug`` output).
Toolchains are never imported here, so ``--help`` and ``list`` stay fast.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys

from . import __version__
from .errors import EdgeclipError, exit_code

__all__ = ["main"]


def _cmd_list(args) -> int:
    from .commands import list
    return list.main(args)


def _cmd_build(args) -> int:
    from .commands import build
    return build.main(args)


def _cmd_reference(args) -> int:
    from .commands import reference
    return reference.main(args)


def _cmd_info(args) -> int:
    from .commands import info
    return info.main(args)


def _cmd_verify(args) -> int:
    from .commands import verify
    return verify.main(args)


def _cmd_predict(args) -> int:
    from .commands import predict
    return predict.main(args)


def _cmd_inspect(args) -> int:
    from .commands import inspect
    return inspect.main(args)


def _cmd_pretrain(args) -> int:
    from .commands import pretrain
    return pretrain.main(args)


def _cmd_distill(args) -> int:
    from .commands import distill
    return distill.main(args)


def _cmd_reinforce(args) -> int:
    from .commands import reinforce
    return reinforce.main(args)


def _cmd_device(args) -> int:
    from .commands import device
    return device.main(args)


def _cmd_bench(args) -> int:
    from .commands import bench
    return bench.main(args)


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
    b.add_argument("--host-only", action="store_true",
                   help="ignore the target's emulated ARM devices: verify and rank on this machine's CPU alone "
                        "(android otherwise needs the ARM64 twin: edgeclip device setup arm64)")
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

    ds = sub.add_parser("distill", help="train a recipe's distillation stages (torchrun-ready); builds reuse them")
    ds.add_argument("--recipe", help="recipe name or .yaml path with distill stages (default: the embedded default)")
    ds.add_argument("--stage", type=int, metavar="K", help="train stages 1..K only (default: all)")
    ds.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: cuda (one GPU per rank, bf16 autocast) when present, else cpu")
    ds.add_argument("--out", help="root folder (default: build/<recipe>); builds with --out ROOT/<target> reuse it")
    ds.set_defaults(func=_cmd_distill)

    rf = sub.add_parser("reinforce", help="write a recipe's MobileCLIP reinforced dataset (torchrun-ready)")
    rf.add_argument("--recipe", help="recipe name or .yaml path with a mobileclip stage")
    rf.add_argument("--out", help="output folder (default: build/<recipe>/reinforced); a rerun resumes")
    rf.add_argument("--stage", type=int, help="which distill stage (1-based) when several are mobileclip")
    rf.set_defaults(func=_cmd_reinforce)

    be = sub.add_parser("bench", help="gate a build's report against a stored baseline (CI); re-time it here or on a device")
    be.add_argument("report", help="bundle folder (its report.json) or a report.json path")
    be.add_argument("--baseline", help="an earlier report.json to compare with")
    be.add_argument("--max-regression", default="10%", help="allowed p50 latency growth (default 10%%)")
    be.add_argument("--gate", choices=["auto", "instructions", "ms"], default="auto",
                    help="what cost is gated: instructions per inference on the emulated ARM cores (android's, "
                         "deterministic), host ms, or auto (instructions where both reports have them; default)")
    be.add_argument("--max-instruction-regression", default="1%",
                    help="allowed growth of instructions per inference on an emulated core (default 1%%)")
    be.add_argument("--max-accuracy-drop", default="0.005",
                    help="allowed absolute drop of cosine/agreement/accuracy metrics (default 0.005)")
    be.add_argument("--device", metavar="adb:SERIAL",
                    help="time the bundle's .pte/.tflite on an Android device with executor_runner / benchmark_model")
    be.add_argument("--device-binary-dir", metavar="DIR",
                    help="where those binaries are on the device "
                         "(default $EDGECLIP_DEVICE_BINARY_DIR or /data/local/tmp)")
    be.add_argument("--repeat", type=int, metavar="K",
                    help="re-time the bundle's shipped artifacts on this machine K times (interleaved rounds, "
                         "beside the machine's yardstick) and gate the median")
    be.add_argument("--summary", metavar="FILE",
                    help="append the comparison as Markdown to FILE (in CI: $GITHUB_STEP_SUMMARY)")
    be.add_argument("--threads", type=int,
                    help="--repeat/--device: runtime threads (default: the target's bench threads)")
    be.add_argument("--out", help="--repeat/--device: report folder "
                                  "(default BUNDLE/bench-host or BUNDLE/device-adb-SERIAL)")
    be.set_defaults(func=_cmd_bench)

    dv = sub.add_parser("device", help="set up or check the ARM64 twin that android artifacts are judged on")
    dv.add_argument("action", choices=["setup", "status"])
    dv.add_argument("kind", choices=["arm64"], help="the twin: arm64 (emulated phone cores under qemu-user)")
    dv.set_defaults(func=_cmd_device)

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
    except BrokenPipeError:  # `edgeclip list models | head`: the reader left; nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
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
