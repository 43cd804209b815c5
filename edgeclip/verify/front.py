"""The build's candidates on a size / latency / accuracy front: report.png and report.json's
``selection``.

A candidate is one variant the build exported (a scheme, a mixed-precision attempt), with its
size, host p50, instructions per inference on the emulated core that ranked it (targets with
``devices``), accuracy against the fp32 reference and what the select stage made of it. The
front of a tower is the candidates that passed its gates and that no other passing candidate
beats on both size and cost (the instruction count where there is one, else host p50) (a candidate counts as beaten only by one at least as good on both
and better on one): the sensible choices. Each backend ships its own best, so a shipped artifact
of the slower backend can sit off the front.
"""
from __future__ import annotations

from pathlib import Path

from .._io import atomic_target

__all__ = ["candidate", "cost_key", "pareto_front", "plot_front"]


def candidate(name: str, backend: str, tower: str, variant: str, size_mb: float, p50_ms: float | None,
              cosine_mean: float | None, top1_agreement: float | None, passed: bool | None,
              shipped: bool, recommended: bool, why_not_shipped: str | None, instructions: float | None = None,
              device: str | None = None) -> dict:
    """One row of report.json's ``selection`` (``passed``: None where it could not be verified here;
    ``instructions``: per inference on ``device``, the emulated core that ranked the candidates)."""
    return {"name": name, "backend": backend, "tower": tower, "variant": variant, "size_mb": size_mb,
            "p50_ms": p50_ms, "cosine_mean": cosine_mean, "top1_agreement": top1_agreement, "passed": passed,
            "shipped": shipped, "recommended": recommended, "why_not_shipped": why_not_shipped,
            **({"instructions": instructions, "device": device} if device else {})}


def cost_key(cands: list[dict]) -> str:
    """What the front is drawn over: instruction counts where the build ranked by them, else p50."""
    return "instructions" if any(c.get("instructions") is not None for c in cands) else "p50_ms"


def pareto_front(cands: list[dict], key: str = "p50_ms") -> list[dict]:
    """The passing candidates with a ``key`` cost that no other passing one beats on both size and
    that cost, by cost."""
    pool = [c for c in cands if c["passed"] and c.get(key) is not None]

    def beaten(c, o):
        return (o["size_mb"] <= c["size_mb"] and o[key] <= c[key]
                and (o["size_mb"] < c["size_mb"] or o[key] < c[key]))
    return sorted((c for c in pool if not any(beaten(c, o) for o in pool)), key=lambda c: c[key])


def plot_front(cands: list[dict], path: Path) -> None:
    """One panel per tower: cost (x: instructions per inference on the ranking core, else host p50)
    against size (y), colour = cosine to fp32, circles passed the gates, crosses did not and squares
    could not be verified here; a ring marks what shipped and a star the recommended one; the line
    joins the tower's front."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    key = cost_key(cands)
    scale = 1e-6 if key == "instructions" else 1.0
    device = next((c["device"] for c in cands if c.get("device")), "")
    xlabel = (f"instructions per inference on {device} (millions; emulated, deterministic)" if key == "instructions"
              else "latency p50 (ms, host runtime)")
    towers = list(dict.fromkeys(c["tower"] for c in cands if c.get(key) is not None))
    fig, axes = plt.subplots(1, max(1, len(towers)), figsize=(6.5 * max(1, len(towers)), 4.8), dpi=110,
                             squeeze=False, layout="constrained")
    cos = [c["cosine_mean"] for c in cands if c["cosine_mean"] is not None]
    lo = min(min(cos, default=0.99), 0.999)
    norm = matplotlib.colors.Normalize(vmin=lo, vmax=1.0)
    for ax, tower in zip(axes[0], towers):
        pts = [c for c in cands if c["tower"] == tower and c.get(key) is not None]
        for c in pts:
            x = c[key] * scale
            colour = plt.cm.viridis(norm(c["cosine_mean"])) if c["cosine_mean"] is not None else "grey"
            marker = {True: "o", False: "x"}.get(c["passed"], "s")
            ax.scatter(x, c["size_mb"], s=46, color=colour, marker=marker, zorder=3)
            if c["shipped"]:
                ax.scatter(x, c["size_mb"], s=170, facecolors="none", edgecolors="black", zorder=4)
            if c["recommended"]:
                ax.scatter(x, c["size_mb"], s=60, marker="*", color="red", zorder=5)
            ax.annotate(f"{c['backend']} {c['variant']}", (x, c["size_mb"]), fontsize=6.5,
                        xytext=(4, 3), textcoords="offset points")
        front = pareto_front(pts, key)
        if front:
            ax.plot([c[key] * scale for c in front], [c["size_mb"] for c in front], "-", color="black", alpha=0.4,
                    zorder=2, label=f"front (passed, not beaten on size and {'instructions' if scale != 1 else 'latency'})")
            ax.legend(fontsize=7, loc="best")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers, not 10^x, on both log axes
            axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
            axis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("size (MB)")
        ax.set_title(f"{tower}: o passed, x missed the gates, square unverified; ring shipped, * recommended",
                     fontsize=8)
        ax.grid(alpha=0.3, which="both")
    sm = plt.cm.ScalarMappable(norm=norm, cmap="viridis")
    fig.colorbar(sm, ax=axes[0].tolist(), label="cosine vs fp32 reference (mean)")
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
