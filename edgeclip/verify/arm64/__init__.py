"""The ARM64 twin: android artifacts run on emulated phone cores (qemu-user) with their
runtimes' own aarch64 builds, for ARM outputs and a deterministic instruction count.

``kit`` builds and finds the toolkit, ``cores`` names the cores it stands in for, ``run`` runs
one artifact, ``check`` is what a build does with it (verify on ARM, count instructions).
"""
from __future__ import annotations

from .cores import CORES, DEFAULT_CORE, Core, core_of, cpuinfo
from .kit import KIT_VERSION, Kit, kit_dir, kit_status, missing_host_tools, ready_kit, setup_kit
from .run import TWIN_FORMATS, count_instructions, run_outputs, runtime_name

__all__ = ["CORES", "DEFAULT_CORE", "Core", "core_of", "cpuinfo", "KIT_VERSION", "Kit", "kit_dir", "kit_status",
           "missing_host_tools", "ready_kit", "setup_kit", "TWIN_FORMATS", "count_instructions", "run_outputs",
           "runtime_name"]
