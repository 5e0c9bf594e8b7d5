"""PNG plots for the report: bars per runtime (direct), latency against throughput (served).

matplotlib is imported here only, with the non-interactive Agg backend, so the rest of
prodgen-bench (and every serving environment) works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prodgen.bench.direct import DirectResult
    from prodgen.bench.peers.compare import PeersResult
    from prodgen.bench.report import BenchReport
    from prodgen.bench.served import ServedResult


class PlotsUnavailable(Exception):
    pass


def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib
    except ImportError as error:
        raise PlotsUnavailable("no PNG plots: matplotlib is not installed (pip install matplotlib)") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_direct(result: DirectResult, path: Path) -> Path:
    """Grouped bars: one group per batch × size, one bar per runtime; images/s and % of ceiling."""
    plt = _pyplot()
    cells = sorted({(m.batch, m.height or 0) for m in result.measurements}, key=lambda c: (c[1], c[0]))
    runtimes = list(dict.fromkeys(m.runtime for m in result.measurements))
    by_key = {(m.runtime, m.batch, m.height or 0): m for m in result.measurements}
    width = 0.8 / max(len(runtimes), 1)
    figure, (speed, share) = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, runtime in enumerate(runtimes):
        xs = [c + (index - (len(runtimes) - 1) / 2) * width for c in range(len(cells))]
        found = [by_key.get((runtime, batch, height)) for batch, height in cells]
        speeds = [m.images_per_s if m else 0.0 for m in found]
        shares = [100 * (m.ceiling_fraction or 0.0) if m else 0.0 for m in found]
        bars = speed.bar(xs, speeds, width, label=runtime)
        speed.bar_label(bars, labels=[f"{v:.1f}" if v else "" for v in speeds], fontsize=7, rotation=90, padding=2)
        share.bar(xs, shares, width, label=runtime)
    labels = [f"batch {b}" + (f"\n{h}×{h}" if h else "") for b, h in cells]
    for axis, title in ((speed, "images/s (higher is better)"), (share, "% of measured GEMM ceiling")):
        axis.set_xticks(range(len(cells)), labels)
        axis.set_title(title, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    speed.margins(y=0.2)
    share.axhline(70, color="grey", linestyle="--", linewidth=1)
    share.legend(fontsize=8)
    figure.suptitle(f"{result.model} — direct mode on {result.device} ({result.threads} threads)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_served(result: ServedResult, path: Path) -> Path:
    """Latency percentiles against throughput, one point per load level, labelled by its load."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for mode, marker in (("concurrency", "o"), ("rate", "s")):
        points = [
            (lv.label, lv.images_per_s, lv.latency)
            for lv in result.levels
            if lv.mode == mode and lv.latency is not None
        ]
        if not points:
            continue
        xs = [x for _, x, _ in points]
        axis.plot(xs, [lat.p50_ms for _, _, lat in points if lat], "-", marker=marker, label=f"p50 ({mode})")
        axis.plot(xs, [lat.p99_ms for _, _, lat in points if lat], ":", marker=marker, label=f"p99 ({mode})")
        for label, x, lat in points:
            if lat is not None:
                axis.annotate(label, (x, lat.p50_ms), textcoords="offset points", xytext=(4, -10), fontsize=7)
    if result.reference is not None:
        best = result.reference.best_images_per_s
        axis.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"direct ORT {best:.1f} images/s")
    axis.set_xlabel("throughput (images/s)")
    axis.set_ylabel("latency (ms, client-measured)")
    axis.set_title(f"{result.model} served at {result.url}", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_peers(result: PeersResult, path: Path) -> Path:
    """Left: images/s per concurrency, one bar per server. Right: p50 and p99 against images/s,
    one line per server through its concurrency levels."""
    plt = _pyplot()
    names = list(dict.fromkeys(level.target for level in result.levels))
    levels = list(result.settings.concurrency)
    width = 0.8 / max(len(names), 1)
    figure, (speed, latency) = plt.subplots(1, 2, figsize=(13, 4.8))
    for index, name in enumerate(names):
        found = [result.level(name, c) for c in levels]
        xs = [x + (index - (len(names) - 1) / 2) * width for x in range(len(levels))]
        rates = [lv.images_per_s if lv else 0.0 for lv in found]
        bars = speed.bar(xs, rates, width, label=name)
        speed.bar_label(bars, labels=[f"{v:.1f}" if v else "" for v in rates], fontsize=7, rotation=90, padding=2)
        points = [lv for lv in found if lv is not None and lv.latency is not None]
        line = latency.plot(
            [lv.images_per_s for lv in points], [lv.latency.p50_ms for lv in points if lv.latency], "-o"
        )
        colour = line[0].get_color()
        latency.plot(
            [lv.images_per_s for lv in points],
            [lv.latency.p99_ms for lv in points if lv.latency],
            ":s",
            color=colour,
            label=f"{name} (p50 —, p99 ···)",
        )
    speed.set_xticks(range(len(levels)), [f"c={c}" for c in levels])
    speed.set_title("images/s (higher is better)", fontsize=10)
    speed.grid(axis="y", alpha=0.3)
    speed.margins(y=0.2)
    speed.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncols=3)
    latency.set_xlabel("throughput (images/s)")
    latency.set_ylabel("latency (ms, client-measured)")
    latency.set_title("latency against throughput, one point per concurrency", fontsize=10)
    latency.grid(alpha=0.3)
    latency.legend(fontsize=7)
    payload = f"{result.image_side}² photos" if result.image_side else "latents"
    figure.suptitle(f"{result.model} — prodgen served against its peers ({payload}, one a request)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_plots(report: BenchReport, folder: Path) -> list[Path]:
    paths = [
        plot_direct(result, folder / f"direct-{result.model}.png") for result in report.direct if result.measurements
    ]
    paths += [plot_served(result, folder / f"served-{result.model}.png") for result in report.served if result.levels]
    paths += [plot_peers(result, folder / f"peers-{result.model}.png") for result in report.peers if result.levels]
    return paths
