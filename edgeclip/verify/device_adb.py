"""On-device latency over adb: ``edgeclip bench BUNDLE --device adb:SERIAL``.

Each shipped ``.pte`` / ``.tflite`` artifact is pushed to the phone and timed by the runtime's
own benchmark binary, which must already be on the device (we never build or download one):

- ExecuTorch: ``executor_runner`` (examples/portable/executor_runner, built with
  ``-DEXECUTORCH_BUILD_EXECUTOR_RUNNER=ON``; XNNPACK is linked in when ``EXECUTORCH_BUILD_XNNPACK``
  is on). From executorch 1.3 on it logs ``Model loaded in X ms.`` and ``Iteration i of N: X ms``
  per execution; it runs on all-ones inputs.
- LiteRT: ``benchmark_model`` (tflite/tools/benchmark) with ``--graph=``; it logs
  ``count=.. min=.. avg=.. p5=.. median=.. p95=..`` per phase and ``Inference timings in us: Init: ..``.

Binaries are looked up in ``--device-binary-dir`` (else ``$EDGECLIP_DEVICE_BINARY_DIR``, else
``/data/local/tmp``); ``adb`` is ``$EDGECLIP_ADB`` or the one on PATH. Whatever is missing (adb,
the device, a binary) is said in one line with how to provide it. Timings become report records
with ``runner = "adb:SERIAL/<binary>"``.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportError, InputError, ToolchainMissing

__all__ = ["BINARIES", "DeviceTiming", "parse_device", "parse_executor_runner", "parse_benchmark_model",
           "Adb", "bench_on_device"]

BINARIES = {".pte": "executor_runner", ".tflite": "benchmark_model"}
DEFAULT_BINARY_DIR = "/data/local/tmp"
WORK_DIR = "/data/local/tmp/edgeclip"
_HOW_TO_GET = {
    "executor_runner": "build it for Android from executorch (cmake with the Android NDK toolchain, "
                       "-DEXECUTORCH_BUILD_EXECUTOR_RUNNER=ON -DEXECUTORCH_BUILD_XNNPACK=ON "
                       "-DEXECUTORCH_PAL_DEFAULT=posix)",
    "benchmark_model": "download LiteRT's android_aarch64 benchmark_model or build it with "
                       "bazel build -c opt --config=android_arm64 //tflite/tools/benchmark:benchmark_model",
}


@dataclass(frozen=True)
class DeviceTiming:
    runs: int
    p50_ms: float
    min_ms: float
    p90_ms: float | None = None
    p95_ms: float | None = None
    load_ms: float | None = None
    peak_rss_mb: float | None = None


def parse_device(text: str) -> str:
    """``adb:SERIAL`` -> SERIAL."""
    kind, _, serial = str(text).partition(":")
    if kind != "adb" or not serial:
        raise InputError(f"--device {text!r}: write adb:SERIAL (a serial from `adb devices`)")
    return serial


# --- output parsers: pure functions over the binaries' text (stdout, stderr or logcat) ---------

_ET_ITER = re.compile(r"Iteration (\d+) of (\d+): ([0-9.]+) ms")
_ET_LOAD = re.compile(r"Model loaded in ([0-9.]+) ms")
_ET_TOTAL = re.compile(r"Model executed successfully (\d+) time\(s\) in ([0-9.]+) ms")


def _last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else "no output"


def parse_executor_runner(text: str, warmup: int = 0) -> DeviceTiming:
    """Per-iteration times of ``executor_runner``; the first ``warmup`` iterations are dropped."""
    iters = {int(i): float(ms) for i, _n, ms in _ET_ITER.findall(text)}
    if not iters:
        if _ET_TOTAL.search(text):
            raise ToolchainMissing("this executor_runner prints only a total time, not each iteration "
                                   "(built from executorch < 1.3); rebuild it from executorch >= 1.3")
        raise ExportError(f"executor_runner printed no timing; its last line: {_last_line(text)}")
    times = np.array([iters[k] for k in sorted(iters)][warmup:])
    if not len(times):
        raise ExportError(f"executor_runner ran {len(iters)} iteration(s), all of them warmup")
    load = _ET_LOAD.search(text)
    return DeviceTiming(runs=len(times), p50_ms=float(np.percentile(times, 50)), min_ms=float(times.min()),
                        p90_ms=float(np.percentile(times, 90)), p95_ms=float(np.percentile(times, 95)),
                        load_ms=float(load.group(1)) if load else None)


_TFL_KV = re.compile(r"\b(count|first|curr|min|max|avg|std|p5|median|p95)=([-0-9.e+]+)")
_TFL_INIT = re.compile(r"Inference timings in us: Init: ([0-9.e+]+)")
_TFL_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: ([0-9.e+]+)")


def parse_benchmark_model(text: str) -> DeviceTiming:
    """The last ``count=...`` line (the measured runs, after warmup) of LiteRT's benchmark_model."""
    stats = [dict(_TFL_KV.findall(line)) for line in text.splitlines() if "count=" in line]
    if not stats or "Inference timings in us" not in text:
        raise ExportError(f"benchmark_model printed no timing; its last line: {_last_line(text)}")
    s = {k: float(v) for k, v in stats[-1].items()}
    if "median" in s:
        p50, low, p95 = s["median"], s["min"], s.get("p95")
    elif "curr" in s and "min" not in s:  # every run took the same time: count=N curr=X(all same)
        p50 = low = p95 = s["curr"]
    else:
        raise ToolchainMissing("this benchmark_model prints no median (an old TensorFlow build); use a "
                               "LiteRT benchmark_model, which prints p5/median/p95")
    init, peak = _TFL_INIT.search(text), _TFL_PEAK.search(text)
    return DeviceTiming(runs=int(s["count"]), p50_ms=p50 / 1e3, min_ms=low / 1e3,
                        p95_ms=None if p95 is None else p95 / 1e3,
                        load_ms=float(init.group(1)) / 1e3 if init else None,
                        peak_rss_mb=float(peak.group(1)) if peak else None)


# --- adb --------------------------------------------------------------------------------------

class Adb:
    """``adb -s SERIAL ...``; construction fails in one line when adb itself is missing."""

    def __init__(self, serial: str, timeout_s: float = 900):
        env = os.environ.get("EDGECLIP_ADB")
        if env and not (Path(env).is_file() and os.access(env, os.X_OK)):
            raise ToolchainMissing(f"EDGECLIP_ADB={env} is not an executable file; point it at adb or unset it")
        path = env or shutil.which("adb")
        if not path:
            raise ToolchainMissing("adb not found on PATH; install Android SDK platform-tools "
                                   "(https://developer.android.com/tools/releases/platform-tools) and put adb "
                                   "on PATH, or set EDGECLIP_ADB=/path/to/adb")
        self.adb, self.serial, self.timeout_s = path, serial, timeout_s

    def _run(self, args: list[str], device: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.adb, *(["-s", self.serial] if device else []), *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired as e:
            raise ExportError(f"`{shlex.join(cmd)}` ran past {self.timeout_s:.0f} s") from e

    def devices(self) -> dict[str, str]:
        r = self._run(["devices"], device=False)
        if r.returncode != 0:
            raise ToolchainMissing(f"`{self.adb} devices` failed: {_last_line(r.stderr + r.stdout)}")
        out = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
                out[parts[0]] = parts[1]
        return out

    def check_device(self) -> None:
        listed = self.devices()
        state = listed.get(self.serial)
        if state is None:
            others = ", ".join(f"{s} ({st})" for s, st in listed.items()) or "none"
            raise InputError(f"device {self.serial} is not listed by `adb devices` (listed: {others}); connect "
                             "it with USB debugging on, or pass --device adb:<a listed serial>")
        if state != "device":
            raise InputError(f"device {self.serial} is '{state}' in `adb devices`; unlock it and accept the "
                             "USB-debugging prompt (unauthorized) or reconnect it (offline)")

    def shell(self, command: str) -> tuple[int, str]:
        r = self._run(["shell", command])
        return r.returncode, r.stdout + r.stderr

    def has_executable(self, path: str) -> bool:
        _rc, out = self.shell(f"[ -x {shlex.quote(path)} ] && echo present || echo missing")
        return out.strip().endswith("present")

    def push(self, local: Path, remote: str) -> None:
        r = self._run(["push", str(local), remote])
        if r.returncode != 0:
            raise ExportError(f"adb push {local} to {self.serial}:{remote} failed: {_last_line(r.stderr + r.stdout)}")

    def describe(self) -> dict:
        keys = ("ro.product.manufacturer", "ro.product.model", "ro.soc.model", "ro.board.platform",
                "ro.build.version.release", "ro.product.cpu.abi")
        _rc, out = self.shell("; ".join(f"getprop {k}" for k in keys) + "; nproc")
        vals = (out.splitlines() + [""] * (len(keys) + 1))[:len(keys) + 1]
        p = dict(zip(keys, (v.strip() for v in vals)))
        soc = p["ro.soc.model"] or p["ro.board.platform"]
        return {"device": f"adb:{self.serial}", "cpu": f"{p['ro.product.manufacturer']} {p['ro.product.model']} "
                f"({soc})".strip(), "cores": vals[-1].strip() or None,
                "os": f"Android {p['ro.build.version.release']} ({p['ro.product.cpu.abi']})",
                "torch": "n/a (on device)",
                **{k: v for k, v in p.items()}}


def _command(binary: str, remote: str, warmup: int, runs: int, threads: int) -> str:
    if binary == "executor_runner":
        return f"--model_path={shlex.quote(remote)} --num_executions={warmup + runs} --cpu_threads={threads}"
    return f"--graph={shlex.quote(remote)} --num_threads={threads} --warmup_runs={warmup} --num_runs={runs}"


def _timing(adb: Adb, binary: str, path: str, remote: str, a: dict, warmup: int, runs: int,
            threads: int) -> DeviceTiming:
    if binary == "executor_runner":
        adb.shell("logcat -c")  # builds with the android PAL log to logcat (tag ExecuTorch), not stdout
    cmd = f"{shlex.quote(path)} {_command(binary, remote, warmup, runs, threads)}"
    rc, out = adb.shell(cmd)
    if rc != 0:
        raise ExportError(f"{binary} failed on {adb.serial} for {a['file']}: {_last_line(out)}; run "
                          f"`adb -s {adb.serial} shell {cmd}` to see all of it")
    if binary == "executor_runner":
        if not _ET_ITER.search(out):
            out += "\n" + adb.shell("logcat -d -s ExecuTorch")[1]
        return parse_executor_runner(out, warmup)
    return parse_benchmark_model(out)


def bench_on_device(bundle_dir: Path, manifest: dict, serial: str, binary_dir: str | None = None,
                    threads: int | None = None, out_dir: Path | None = None) -> dict:
    """Time every shipped .pte/.tflite of the bundle (its checked ``manifest``) on the device;
    write report.{json,md,png}."""
    from .report import Record, write_report

    bundle_dir = Path(bundle_dir)
    arts = [a for a in manifest["artifacts"] if a["shipped"] and Path(a["file"]).suffix in BINARIES]
    if not arts:
        have = sorted({Path(a["file"]).suffix for a in manifest["artifacts"] if a["shipped"]})
        raise InputError(f"{bundle_dir}: no shipped .pte or .tflite artifact (it has {', '.join(have) or 'none'}); "
                         "--device adb: times ExecuTorch and LiteRT artifacts, e.g. of --target android")
    adb = Adb(serial)
    adb.check_device()
    bdir = (binary_dir or os.environ.get("EDGECLIP_DEVICE_BINARY_DIR") or DEFAULT_BINARY_DIR).rstrip("/")
    needed = sorted({BINARIES[Path(a["file"]).suffix] for a in arts})
    missing = [b for b in needed if not adb.has_executable(f"{bdir}/{b}")]
    if missing:
        how = "; ".join(f"{b}: {_HOW_TO_GET[b]}" for b in missing)
        raise ToolchainMissing(f"{' and '.join(missing)} not found (or not executable) on {serial} in {bdir}: "
                               f"{how}; then `adb -s {serial} push <binary> {bdir}/` and `adb -s {serial} shell "
                               f"chmod +x {bdir}/<binary>`, or pass --device-binary-dir (or set "
                               "EDGECLIP_DEVICE_BINARY_DIR) to the folder that holds it")
    bench = manifest.get("bench", {})
    warmup, runs = int(bench.get("warmup", 3)), int(bench.get("runs", 20))
    threads = int(threads or bench.get("threads", 2))
    machine = adb.describe()
    adb.shell(f"mkdir -p {WORK_DIR}")
    records = []
    for a in arts:
        binary = BINARIES[Path(a["file"]).suffix]
        remote = f"{WORK_DIR}/{Path(a['file']).name}"
        adb.push(bundle_dir / a["file"], remote)
        try:
            t = _timing(adb, binary, f"{bdir}/{binary}", remote, a, warmup, runs, threads)
        finally:
            adb.shell(f"rm -f {shlex.quote(remote)}")
        base = dict(model=manifest["model"]["recipe"], target=manifest["target"]["name"], backend=a["backend"],
                    tower=a["tower"], quant=a["quant"], runner=f"adb:{serial}/{binary}", emulated=False)
        for metric, v in (("latency_p50_ms", t.p50_ms), ("latency_p90_ms", t.p90_ms), ("latency_p95_ms", t.p95_ms),
                          ("latency_min_ms", t.min_ms), ("load_ms", t.load_ms), ("peak_rss_mb", t.peak_rss_mb),
                          ("size_mb", a["size_bytes"] / 1e6)):
            if v is not None:
                records.append(Record(**base, metric=metric, value=v))
    out = Path(out_dir) if out_dir else bundle_dir / f"device-adb-{re.sub(r'[^A-Za-z0-9_.-]', '_', serial)}"
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, records, machine=machine,
                 extra={"device": {"serial": serial, "binary_dir": bdir, "warmup": warmup, "runs": runs,
                                   "threads": threads}})
    return {"records": records, "report": out / "report.json", "machine": machine}
