"""The done-when scenario of catalogue jobs, by hand: a manifest run by `prodgen batch`, SIGKILLed
about half way, run again; then counts outputs, decodes each, checks the results table, and
compares the model's calls (Triton's statistics) with the rows.

    python -m prodgen.bench.batch_sigkill --url 127.0.0.1:8001 --model upscaler-x2 --rows 1000 --folder /tmp/job

Prints one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import tritonclient.grpc as grpcclient
from PIL import Image

from prodgen.bench.batch import write_manifest
from prodgen.bench.triton_stats import parse_statistics
from prodgen.client.batch.journal import Journal, read_results


def model_calls(url: str, model: str) -> int:
    client = grpcclient.InferenceServerClient(url)
    try:
        stats = parse_statistics(client.get_inference_statistics(model, as_json=True), model)
    finally:
        client.close()
    return stats.durations["success"].count + stats.durations["fail"].count


def journal_lines(out: Path) -> int:
    path = Journal(out).path
    return path.read_bytes().count(b"\n") if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", default="upscale")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--folder", type=Path, required=True)
    arguments = parser.parse_args()
    photos, out = arguments.folder / "photos", arguments.folder / "out"
    manifest = (
        photos / "manifest.csv"
        if (photos / "manifest.csv").exists()
        else write_manifest(photos, arguments.rows, arguments.side)
    )
    command = [str(Path(sys.executable).parent / "prodgen"), "batch", str(manifest), "--task", arguments.task]
    command += ["--model", arguments.model, "--out", str(out), "--url", arguments.url]
    command += ["--concurrency", str(arguments.concurrency)]
    before = model_calls(arguments.url, arguments.model)

    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while journal_lines(out) < arguments.rows // 2 and process.poll() is None:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_after_s = time.monotonic() - started
    rows_at_kill = journal_lines(out)
    calls_at_kill = model_calls(arguments.url, arguments.model) - before

    started = time.monotonic()
    rerun = subprocess.run(command, capture_output=True, text=True)
    rerun_s = time.monotonic() - started
    calls = model_calls(arguments.url, arguments.model) - before

    outputs = sorted(out.glob("*.png"))
    corrupt = 0
    for path in outputs:
        try:
            with Image.open(path) as picture:
                picture.load()
        except OSError:
            corrupt += 1
    table = read_results(out / "results.csv")
    started = time.monotonic()
    again = subprocess.run(command, capture_output=True, text=True)
    again_s = time.monotonic() - started
    figures = {
        "rows": arguments.rows,
        "killed_after_s": round(killed_after_s, 1),
        "rows_journaled_at_kill": rows_at_kill,
        "model_calls_at_kill": calls_at_kill,
        "rerun_exit": rerun.returncode,
        "rerun_s": round(rerun_s, 1),
        "rerun_stdout": rerun.stdout.strip(),
        "outputs": len(outputs),
        "distinct_outputs": len({path.name for path in outputs}),
        "corrupt_outputs": corrupt,
        "leftover_temporaries": len(list(out.glob(".*.part*"))),
        "table_rows": len(table),
        "table_done": sum(row["status"] == "done" for row in table),
        "model_calls_total": calls,
        "calls_over_rows": round(calls / arguments.rows, 4),
        "third_run_exit": again.returncode,
        "third_run_s": round(again_s, 1),
        "third_run_model_calls": model_calls(arguments.url, arguments.model) - before - calls,
        "third_run_stdout": again.stdout.strip(),
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
