"""The peers section of a report: each server's figures per concurrency, as ratios to prodgen,
the pictures check, and whether prodgen met its goal against the best peer."""

from __future__ import annotations

from prodgen.bench.peers.compare import PeersResult, TargetLevel
from prodgen.bench.peers.launch import PRODGEN
from prodgen.bench.tables import number

GOAL_THROUGHPUT_RATIO = 1.3
"""prodgen served at the highest concurrency against the fastest peer there, images/s."""

HEADER = [
    "c",
    "server",
    "images/s",
    "× prodgen",
    "p50 ms",
    "× prodgen",
    "p99 ms",
    "× prodgen",
    "peak RSS MB",
    "× prodgen",
    "images/s per window",
    "errors",
]


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or reference <= 0:
        return "–"
    return f"{value / reference:.2f}×"


def _row(level: TargetLevel, prodgen: TargetLevel | None) -> list[str]:
    latency = level.latency
    reference = prodgen.latency if prodgen is not None else None
    return [
        str(level.concurrency),
        level.target,
        number(level.images_per_s, 2),
        _ratio(level.images_per_s, prodgen.images_per_s if prodgen else None),
        number(latency.p50_ms if latency else None, 0),
        _ratio(latency.p50_ms if latency else None, reference.p50_ms if reference else None),
        number(latency.p99_ms if latency else None, 0),
        _ratio(latency.p99_ms if latency else None, reference.p99_ms if reference else None),
        number(level.rss_peak_mb, 0),
        _ratio(level.rss_peak_mb, prodgen.rss_peak_mb if prodgen else None),
        ", ".join(number(w.images_per_s, 2) for w in level.windows),
        str(level.errors),
    ]


def best_peer(result: PeersResult, concurrency: int) -> TargetLevel | None:
    peers = [lv for lv in result.levels if lv.concurrency == concurrency and lv.target != PRODGEN.name]
    return max(peers, key=lambda lv: lv.images_per_s, default=None)


def goal_line(result: PeersResult) -> str:
    top = max(result.settings.concurrency)
    prodgen, best = result.level(PRODGEN.name, top), best_peer(result, top)
    if prodgen is None or best is None or prodgen.latency is None or best.latency is None or best.images_per_s <= 0:
        return f"Goal at c={top}: not judged (prodgen or every peer lacks figures there)."
    ratio = prodgen.images_per_s / best.images_per_s
    p99_ok = prodgen.latency.p99_ms <= best.latency.p99_ms
    met = ratio >= GOAL_THROUGHPUT_RATIO and p99_ok
    return (
        f"Goal at c={top} (prodgen ≥ {GOAL_THROUGHPUT_RATIO}× the best peer's images/s, p99 no worse): "
        f"{'met' if met else 'not met'} — prodgen {prodgen.images_per_s:.2f} images/s against {best.target} "
        f"{best.images_per_s:.2f} ({ratio:.2f}×); p99 {prodgen.latency.p99_ms:.0f} ms against {best.latency.p99_ms:.0f} ms "
        f"({'no worse' if p99_ok else 'worse'})."
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _server_lines(result: PeersResult) -> list[str]:
    lines = []
    for level in result.levels:
        batches = [w.average_batch for w in level.windows if w.average_batch is not None]
        infer = [w.compute_infer_ms for w in level.windows if w.compute_infer_ms is not None]
        queue = [w.queue_ms for w in level.windows if w.queue_ms is not None]
        if batches:
            lines.append(
                f"- {level.target} c={level.concurrency}, Triton's statistics per window: images per model execution "
                f"{', '.join(f'{b:.2f}' for b in batches)}; compute_infer {', '.join(f'{v:.0f}' for v in infer)} ms; "
                f"queue {', '.join(f'{v:.0f}' for v in queue)} ms per request"
            )
        for message, count in level.error_messages.items():
            lines.append(f"- {level.target} c={level.concurrency}: {count}× {message}")
    return lines


def peers_section(result: PeersResult) -> list[str]:
    s = result.settings
    served = "" if result.served_name == result.model else f" (prodgen serving {result.served_name})"
    lines = [f"### {result.model} — prodgen against its peers{served}", ""]
    lines.append(
        f"Payload: {result.payload}, one item a request, the same {result.payload_variants} requests in turn for every server. "
        f"Transport: {result.transport} prodgen's published config: {result.prodgen_config}. "
        f"Closed loop; at each concurrency the servers take turns, {s.rounds} round(s) of one window each "
        f"(≥ {s.window_s:g} s and ≥ {s.min_window_requests} requests, after a {s.warmup_s:g} s warm-up on fresh connections); "
        "a server's figures pool the requests of its windows; the servers not being measured are frozen (SIGSTOP) meanwhile. Peak RSS: the server's whole process tree, summed, sampled "
        f"every {s.rss_interval_s:g} s during its windows. Load average (/proc/loadavg) at the start of the windows: "
        f"{result.load_average_start}; at the end: {result.load_average_end}."
    )
    lines.append("")
    lines += _table(["server", "what"], [[name, text] for name, text in result.targets.items()])
    lines += _table(
        ["peer", "pictures as prodgen's", "detail"],
        [[c.target, "yes" if c.accepted else "REFUSED", c.detail] for c in result.checks],
    )
    rows = []
    for concurrency in s.concurrency:
        prodgen = result.level(PRODGEN.name, concurrency)
        rows += [_row(level, prodgen) for level in result.levels if level.concurrency == concurrency]
    lines += _table(HEADER, rows)
    lines.append(goal_line(result))
    lines.append("")
    idle = ", ".join(f"{name} {mb:.0f} MB" for name, mb in result.idle_rss_mb.items())
    lines.append(f"- Idle RSS after start-up (process tree): {idle}")
    lines += _server_lines(result)
    return lines + [""]
