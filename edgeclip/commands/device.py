"""``edgeclip device {setup,status} arm64``: the ARM64 twin that android artifacts are judged on.

``setup`` builds the twin's kit once (``verify/arm64/kit.py``: an aarch64 userland, the runtimes'
aarch64 builds, the ExecuTorch runner, the instruction-counting plugin) under the user cache;
``status`` says whether it is ready and, if not, the command that makes it so (exit 2).
"""
from __future__ import annotations

__all__ = ["main"]


def main(args) -> int:
    from ..errors import ToolchainMissing
    from ..verify.arm64 import CORES, kit_dir, kit_status, setup_kit
    if args.action == "setup":
        kit = setup_kit()
        print(f"arm64 twin ready: {kit.dir}")
        print(f"cores: {', '.join(CORES)}; runtimes: " + ", ".join(f"{k} {v}" for k, v in kit.info["pins"].items() if v))
        return 0
    why = kit_status()
    if why:
        raise ToolchainMissing(why)
    print(f"arm64 twin ready: {kit_dir()}")
    return 0
