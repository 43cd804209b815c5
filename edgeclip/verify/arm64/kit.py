"""The ARM64 twin's kit: an aarch64 userland and the runtimes' own aarch64 builds, run under
qemu-user, with a TCG plugin that counts guest instructions.

``setup_kit()`` builds it once under ``<user cache>/arm64-twin/<KIT_VERSION>-<pins>/`` from the
distribution's packages and the package index only (nothing else is downloaded):

- ``root/``: Debian bookworm arm64 ``--variant=minbase`` with python3, libstdc++ and libgomp:
  ``debootstrap --foreign`` fetches the packages, and each one is unpacked with ``dpkg-deb -x``
  (binfmt_misc is not available in containers, so debootstrap's second stage cannot run);
- ``site/``: numpy and onnxruntime at the host's own versions, and ai-edge-litert 1.4.0, LiteRT's
  newest release with an aarch64 Linux wheel (older than the host's 2.3: reports name it);
  aarch64 wheels installed without emulation;
- ``bin/et_runner``: a small C++ runner cross-compiled against the runtime libraries in
  executorch's own aarch64 wheel, at the host's executorch version (its Python bindings need an
  aarch64 torch, which the index has only as a CUDA build);
- ``count.so``: the instruction-counting plugin; ``cores/<core>/``: per core a view of ``root/``
  whose ``proc/cpuinfo`` is that core's (``cores.cpuinfo``) and whose ``sys`` shows one CPU.

Everything is built in a temporary folder and renamed into place, so a killed setup leaves
nothing that looks ready.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from ..._io import stable_hash, user_cache_dir, write_json_atomic
from ...errors import ExportError, ToolchainMissing
from .cores import CORES, cpuinfo

__all__ = ["KIT_VERSION", "LITERT_ARM", "HOST_TOOLS", "APT_PACKAGES", "kit_dir", "kit_status", "missing_host_tools",
           "setup_kit", "ready_kit", "core_view", "Kit"]

KIT_VERSION = 1          # bump when what the kit holds or how it is built changes
# LiteRT's newest release with an aarch64 Linux wheel (the host's 2.3 has none). Not tflite-runtime
# 2.14, the other aarch64 interpreter on the index: it computes litert-torch 0.10's dynamic-range
# int8 artifacts wrong on x86 as well (cosine -0.01 against the host LiteRT's 0.9999, measured)
LITERT_ARM = "1.4.0"
SUITE = "bookworm"
HOST_TOOLS = {"qemu-aarch64": "qemu-user", "debootstrap": "debootstrap", "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
              "gcc": "gcc", "dpkg-deb": "dpkg"}
APT_PACKAGES = "qemu-user debootstrap g++-aarch64-linux-gnu"
_PLATFORMS = ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64", "manylinux_2_17_aarch64")
_HERE = Path(__file__).resolve().parent


def _pins() -> dict[str, str]:
    """The runtime versions the kit mirrors: the host's own (outputs are compared with them)."""
    from importlib.metadata import PackageNotFoundError, version
    out = {"ai-edge-litert (arm64)": LITERT_ARM}
    for dist in ("numpy", "onnxruntime", "executorch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = ""
    return out


def kit_dir() -> Path:
    pins = _pins()
    return user_cache_dir() / "arm64-twin" / f"v{KIT_VERSION}-{stable_hash(pins, SUITE)[:10]}"


class Kit:
    """A ready kit's paths."""

    def __init__(self, root: Path):
        self.dir = Path(root)
        self.info = json.loads((self.dir / "kit.json").read_text())

    def core_root(self, core: str) -> Path:
        return self.dir / "cores" / core

    @staticmethod
    def python(root: Path) -> Path:
        """The guest's interpreter as a host path: qemu-user loads the program it is given as is
        (only the files that program opens are looked up under ``-L``)."""
        return Path(root) / "usr" / "bin" / "python3.11"

    @property
    def site(self) -> Path:
        return self.dir / "site"

    @property
    def et_runner(self) -> Path:
        return self.dir / "bin" / "et_runner"

    @property
    def plugin(self) -> Path:
        return self.dir / "count.so"


def missing_host_tools() -> list[str]:
    return [tool for tool in HOST_TOOLS if shutil.which(tool) is None]


def kit_status() -> str | None:
    """None when the twin is ready; else one line saying what is missing and the command that fixes it."""
    missing = missing_host_tools()
    if (kit_dir() / "kit.json").exists():  # built: running it needs qemu alone
        missing = [t for t in missing if t == "qemu-aarch64"]
    if missing:
        pkgs = " ".join(dict.fromkeys(HOST_TOOLS[t] for t in missing))
        return (f"the ARM64 twin needs {', '.join(missing)}: install them with `apt-get install -y {pkgs}`, "
                "then run `edgeclip device setup arm64`")
    if not (kit_dir() / "kit.json").exists():
        return "the ARM64 twin is not set up here: run `edgeclip device setup arm64` (under a minute, ~400 MB)"
    return None


def ready_kit(setup_if_missing: bool = False, log: Callable[[str], None] | None = None) -> Kit:
    """The ready kit; ``setup_if_missing`` builds it first where the host tools allow, else the
    status line is raised as ToolchainMissing."""
    why = kit_status()
    if why and setup_if_missing and not missing_host_tools():
        return setup_kit(log=log)
    if why:
        raise ToolchainMissing(why)
    return Kit(kit_dir())


def _run(cmd: list[str], what: str, cwd: Path | None = None, env: dict | None = None) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=1800)
    except subprocess.TimeoutExpired as e:
        raise ExportError(f"{what}: `{' '.join(cmd[:3])} ...` ran past 30 minutes") from e
    if r.returncode != 0:
        tail = (r.stderr.strip() or r.stdout.strip() or "no output").splitlines()[-1]
        raise ExportError(f"{what} failed (exit {r.returncode}): {tail}")
    return r.stdout


def _mirror() -> str:
    """The distribution's own Debian mirror, as apt here is configured (deb822 or one-line lists)."""
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if "://" in w)
    return "http://deb.debian.org/debian"


def _userland(tmp: Path) -> None:
    root = tmp / "root"
    _run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
          "--include=python3,libstdc++6,libgomp1", SUITE, str(root), _mirror()], "debootstrap (arm64 userland)")
    for deb in sorted((root / "var/cache/apt/archives").glob("*.deb")):
        # through tar: `dpkg-deb -x` would replace the merged-usr links (lib -> usr/lib) with folders
        _run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -x --keep-directory-symlink -C "$2"', "sh", str(deb),
              str(root)], f"unpacking {deb.name}")
        deb.unlink()
    shutil.rmtree(root / "debootstrap", ignore_errors=True)


def _pip(args: list[str], what: str) -> None:
    plat = [x for p in _PLATFORMS for x in ("--platform", p)]
    _run([sys.executable, "-m", "pip", *args, *plat, "--python-version", "3.11", "--only-binary=:all:", "--no-deps",
          "--disable-pip-version-check", "-q"], what)


def _wheels(tmp: Path, pins: dict) -> None:
    reqs = [f"numpy=={pins['numpy']}", f"ai-edge-litert=={LITERT_ARM}"]
    reqs += [f"onnxruntime=={pins['onnxruntime']}"] if pins["onnxruntime"] else []
    _pip(["install", "--target", str(tmp / "site"), *reqs], "aarch64 wheels (numpy, onnxruntime, ai-edge-litert)")


def _executorch(tmp: Path, pins: dict) -> None:
    if not pins["executorch"]:
        return
    import zipfile
    dl = tmp / "dl"
    _pip(["download", "-d", str(dl), f"executorch=={pins['executorch']}"], "executorch's aarch64 wheel")
    et = tmp / "et"
    with zipfile.ZipFile(next(dl.glob("executorch-*.whl"))) as z:
        for name in z.namelist():  # the runtime's libraries and headers; not the Python bindings
            if name.startswith(("executorch/lib/", "executorch/include/")):
                z.extract(name, et)
    shutil.rmtree(dl)
    lib = et / "executorch" / "lib"
    (tmp / "bin").mkdir()
    inc = et / "executorch" / "include"
    # C10_USING_CUSTOM_GENERATED_MACROS: the headers' c10 copy expects a cmake-generated file the wheel lacks
    _run(["aarch64-linux-gnu-g++", "-O2", "-std=c++17", "-DC10_USING_CUSTOM_GENERATED_MACROS", str(_HERE / "et_runner.cpp"),
          "-o", str(tmp / "bin" / "et_runner"), "-I", str(inc), "-I", str(inc / "executorch/runtime/core/portable_type/c10"),
          "-L", str(lib), "-Wl,--no-as-needed",
          *[f"-l{n}" for n in _et_libs(lib)],
          "-Wl,-rpath,$ORIGIN/../et/executorch/lib"], "compiling the ExecuTorch runner for aarch64")


# the runtime, XNNPACK's delegate and its threadpool, and the kernels of ops left outside the
# delegate (their registrations run when the library loads: hence --no-as-needed)
_ET_LIBS = ("executorch", "executorch_backend_xnnpack", "executorch_threadpool", "executorch_kernels_optimized",
            "executorch_kernels_quantized")


def _et_libs(lib: Path) -> list[str]:
    missing = [n for n in _ET_LIBS if not (lib / f"lib{n}.so").exists()]
    if missing:
        raise ExportError(f"executorch's aarch64 wheel lacks {', '.join(missing)} in executorch/lib; the twin "
                          "needs an executorch release that ships its runtime libraries (1.5.1 does)")
    return list(_ET_LIBS)


def _plugin(tmp: Path) -> None:
    _run(["gcc", "-shared", "-fPIC", "-O2", str(_HERE / "count_insns.c"), "-o", str(tmp / "count.so")],
         "compiling the instruction-counting plugin")


def _precompile(tmp: Path) -> None:
    """Byte-compile the guest's Python once, here (the same 3.11 bytecode): the twin never writes
    .pyc files, and compiling on every run would cost ~20 M guest instructions of noise."""
    for folder in (tmp / "root/usr/lib/python3", tmp / "root/usr/lib/python3.11", tmp / "site"):
        if folder.exists():
            _run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(folder)], "byte-compiling the guest's Python")


def core_view(kit_root: Path, view: Path, info: str) -> None:
    """A root for one core: links to the kit's ``root/`` but for ``proc`` (its own ``cpuinfo``) and
    ``sys`` (one online CPU: the runtimes size their thread pools from it, and the count must not
    depend on the host's cores); ``dev``, ``tmp`` and ``run`` stay the host's."""
    root = kit_root / "root"
    (view / "proc").mkdir(parents=True)
    for entry in root.iterdir():
        if entry.name not in ("proc", "dev", "sys", "tmp", "run"):
            os.symlink(os.path.relpath(entry, view), view / entry.name)
    (view / "proc" / "cpuinfo").write_text(info)
    cpus = view / "sys/devices/system/cpu"
    cpus.mkdir(parents=True)
    for name in ("possible", "present", "online"):
        (cpus / name).write_text("0\n")


def _cores(tmp: Path) -> None:
    for name, core in CORES.items():
        core_view(tmp, tmp / "cores" / name, cpuinfo(core, cpus=1))


def setup_kit(log: Callable[[str], None] | None = None) -> Kit:
    """Build the kit (or return it when ready); ``log`` gets one line per step."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    missing = missing_host_tools()
    if missing:
        raise ToolchainMissing(kit_status())
    final = kit_dir()
    if (final / "kit.json").exists():
        return Kit(final)
    pins = _pins()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    steps = [("arm64 userland (debootstrap + dpkg-deb)", lambda: _userland(tmp)),
             ("aarch64 numpy, onnxruntime, ai-edge-litert", lambda: _wheels(tmp, pins)),
             ("ExecuTorch runtime and runner", lambda: _executorch(tmp, pins)),
             ("instruction-counting plugin", lambda: _plugin(tmp)),
             ("byte-compiling the guest's Python", lambda: _precompile(tmp)),
             (f"core views ({', '.join(CORES)})", lambda: _cores(tmp))]
    t0 = time.perf_counter()
    try:
        for i, (what, step) in enumerate(steps, 1):
            t = time.perf_counter()
            step()
            log(f"[{i}/{len(steps)}] arm64 twin: {what} {time.perf_counter() - t:6.1f}s")
        write_json_atomic(tmp / "kit.json", {"version": KIT_VERSION, "suite": SUITE, "pins": pins,
                                             "seconds": round(time.perf_counter() - t0, 1)})
        # a parallel setup may have won the race: keep its kit, drop ours
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "kit.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"arm64 twin ready in {time.perf_counter() - t0:.0f}s: {final}")
    return Kit(final)
