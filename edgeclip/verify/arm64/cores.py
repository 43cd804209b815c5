"""The ARM cores the twin can stand in for, and what each one tells its guest.

A core model is qemu's ``-cpu`` name plus the ``/proc/cpuinfo`` a phone with that core shows:
qemu-user lets the guest read the host's x86 ``/proc/cpuinfo``, and ARM runtimes pick kernels
from it (XNNPACK through pytorch/cpuinfo reads MIDR and the feature list; ONNX Runtime crashes on
an x86 one). So the twin writes one whose MIDR and features match the ``-cpu`` model. A
mismatch (dot-product features on a core without them) makes XNNPACK pick kernels the core
cannot run (SIGILL), which is why ``cpuinfo(core, features=...)`` can be overridden in tests.

Never ``-cpu max``: its SVE/SME paths gave wrong int8 results (cosine 0.63-0.70 against x86).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...config.names import ARM64_CORES, parse_device_spec

__all__ = ["Core", "CORES", "DEFAULT_CORE", "core_of", "cpuinfo"]

_V82_DOTPROD = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
                "dcpop asimddp")
_V80 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"


@dataclass(frozen=True)
class Core:
    name: str          # qemu's -cpu name, and the name targets use (arm64:cortex-a76)
    part: int          # MIDR part number
    variant: int
    revision: int
    features: str      # the Features line of /proc/cpuinfo
    phone: str         # where such cores are found, for reports
    qemu: str = ""     # qemu's -cpu model when it is not ``name`` (see cortex-a55)

    @property
    def qemu_cpu(self) -> str:
        return self.qemu or self.name

    @property
    def dotprod(self) -> bool:
        return "asimddp" in self.features.split()


CORES = {c.name: c for c in (
    Core("cortex-a76", 0xD0B, 4, 1, _V82_DOTPROD, "big core of 2019-2021 phones (Snapdragon 855-888, Kirin 990)"),
    # qemu 7.2 (Debian 12's) has no cortex-a55 model: the A55 runs the A76's instruction set
    # (Armv8.2 with dot product, fp16), so the twin executes on the cortex-a76 model and shows the
    # guest the A55's MIDR, from which XNNPACK picks its A55-tuned kernels
    Core("cortex-a55", 0xD05, 1, 0, _V82_DOTPROD, "little core of most phones since 2018", qemu="cortex-a76"),
    Core("cortex-a53", 0xD03, 0, 4, _V80, "low-end phones and old little cores (no dot product)"),
    Core("cortex-a72", 0xD08, 0, 3, _V80, "2016 big core (no dot product)"),
)}
DEFAULT_CORE = ARM64_CORES[0]  # the dot-product phone core


def core_of(spec: str) -> Core:
    """``arm64:cortex-a76`` -> its Core (ConfigError for anything else)."""
    return CORES[parse_device_spec(spec)[1]]


def cpuinfo(core: Core, cpus: int = 4, features: str | None = None, part: int | None = None) -> str:
    """An arm64 ``/proc/cpuinfo`` for ``cpus`` cores of model ``core`` (``features``/``part``
    override what it claims: a test plants a mismatch with them)."""
    feats = core.features if features is None else features
    block = (f"BogoMIPS\t: 50.00\nFeatures\t: {feats}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
             f"CPU variant\t: {core.variant:#x}\nCPU part\t: {core.part if part is None else part:#05x}\n"
             f"CPU revision\t: {core.revision}\n\n")
    return "".join(f"processor\t: {i}\n{block}" for i in range(cpus))
