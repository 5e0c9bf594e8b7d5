"""Oversize requests against a running prodgen server, and what they cost it.

    python scripts/oversize_loop.py --url 127.0.0.1:9001 --seconds 600 --concurrency 4

For `--seconds`, `--concurrency` workers send every served model that takes a picture one
picture of `--side`² pixels (8192² by default: 192 MiB, far beyond any model's bound), each with
the model's other inputs as a correct request would carry them; a further worker sends correct
requests (a small picture to each such model) throughout. At the end it prints, one line each:
the refusals by gRPC status (all must be INVALID_ARGUMENT), the correct requests answered and
failed, and the resident memory of tritonserver and its python-backend stubs at the start, at
the peak and at the end (after `--settle` seconds without oversize requests). The exit status
is 0 when every oversize request was refused with INVALID_ARGUMENT, every correct one answered,
and the end memory lies within `--tolerance` (0.2: 20 %) of the start.

Run it on the server's own machine (it reads /proc for the memory figures), with `nice`.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from prodgen.client.api import ProdgenClient, ServedModel
from prodgen.serve.processes import children, listener_pid, rss_bytes

MIB = 1 << 20


def server_rss(grpc_port: int) -> tuple[int, int]:
    """(tritonserver's RSS, the sum of its stubs' RSS) in bytes."""
    server = listener_pid(grpc_port)
    if server is None:
        raise SystemExit(f"no process listens on port {grpc_port}")
    stubs = [child.pid for child in children(server) if child.running]
    return rss_bytes(server), sum(rss_bytes(pid) for pid in stubs)


def memory_kinds(pid: int) -> str:
    """'anon 120 MiB, shmem 400 MiB': what a process's resident memory is made of."""
    try:
        fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    except OSError:
        return "gone"
    kinds = (("RssAnon", "anon"), ("RssShmem", "shared memory"))
    return ", ".join(f"{label} {int(fields[key].split()[0]) // 1024} MiB" for key, label in kinds if key in fields)


def picture_models(models: list[ServedModel]) -> list[ServedModel]:
    return [m for m in models if m.inputs_of("image") and m.bounds is not None]


def request(model: ServedModel, side: int) -> list[grpcclient.InferInput]:
    """A request with a `side`² picture and whatever else the model needs (a prompt for a pipeline)."""
    picture = model.inputs_of("image")[0].name
    arrays: dict[str, np.ndarray] = {picture: np.full((1, side, side, 3), 128, np.uint8)}
    for spec in model.inputs:
        if spec.name == picture or spec.optional:
            continue
        if spec.dtype == "BYTES":
            arrays[spec.name] = np.array([[b"a red mug"]], dtype=object)
        elif spec.dtype == "UINT8":  # a second picture (a style)
            arrays[spec.name] = np.full((1, 64, 64, 3), 128, np.uint8)
        else:
            low = spec.value_range[0] if spec.value_range else 0.5
            arrays[spec.name] = np.full((1, *[d if d > 0 else 1 for d in spec.dims]), low, np.float32)
    if model.task == "diffusion" and model.facts.diffusion is not None:
        arrays["steps"] = np.array([[2]], np.int64)  # × the default strength 0.8 leaves one step
    inputs = []
    for name, array in arrays.items():
        dtype = {"object": "BYTES", "uint8": "UINT8", "float32": "FP32", "int64": "INT64"}[str(array.dtype)]
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refusals: collections.Counter[str] = collections.Counter()
        self.refusal_seconds: list[float] = []
        self.correct = 0
        self.correct_failed: list[str] = []

    def refused(self, status: str, seconds: float) -> None:
        with self.lock:
            self.refusals[status] += 1
            self.refusal_seconds.append(seconds)


def oversize_worker(url: str, models: list[ServedModel], side: int, until: float, tally: Tally, index: int) -> None:
    client = grpcclient.InferenceServerClient(url)
    payloads = {model.name: request(model, side) for model in models}
    turn = index
    while time.monotonic() < until:
        model = models[turn % len(models)]
        turn += 1
        started = time.monotonic()
        try:
            client.infer(model.name, payloads[model.name], client_timeout=300)
            tally.refused("answered (not refused!)", time.monotonic() - started)
        except InferenceServerException as error:
            tally.refused(str(error.status()).removeprefix("StatusCode."), time.monotonic() - started)
    client.close()


def correct_worker(url: str, models: list[ServedModel], until: float, tally: Tally) -> None:
    client = grpcclient.InferenceServerClient(url)
    turn = 0
    while time.monotonic() < until:
        model = models[turn % len(models)]
        turn += 1
        assert model.bounds is not None
        side = max(model.bounds.min_side, min(64, model.bounds.max_side))
        side -= side % model.facts.side_multiple
        try:
            client.infer(model.name, request(model, side), client_timeout=300)
            with tally.lock:
                tally.correct += 1
        except InferenceServerException as error:
            with tally.lock:
                tally.correct_failed.append(f"{model.name}: {error.status()} {error.message()}")
        time.sleep(0.5)
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server's gRPC endpoint, host:port")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--side", type=int, default=8192)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait before the end memory is read")
    parser.add_argument("--tolerance", type=float, default=0.2)
    arguments = parser.parse_args()
    port = int(arguments.url.rsplit(":", 1)[1])
    with ProdgenClient(arguments.url) as client:
        models = picture_models(client.models())
    if not models:
        raise SystemExit("the server serves no model that takes a picture")
    print(f"models: {', '.join(m.name for m in models)}; {arguments.side}² pictures, c={arguments.concurrency}")
    start = server_rss(port)
    peak = start
    tally = Tally()
    until = time.monotonic() + arguments.seconds
    workers = [
        threading.Thread(target=oversize_worker, args=(arguments.url, models, arguments.side, until, tally, i))
        for i in range(arguments.concurrency)
    ]
    workers.append(threading.Thread(target=correct_worker, args=(arguments.url, models, until, tally)))
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        now = server_rss(port)
        peak = (max(peak[0], now[0]), max(peak[1], now[1]))
        time.sleep(1.0)
    time.sleep(arguments.settle)
    end = server_rss(port)
    server_pid = listener_pid(port)
    if server_pid is not None:
        print(f"tritonserver at the end: {memory_kinds(server_pid)}")
    total = sum(tally.refusals.values())
    seconds = sorted(tally.refusal_seconds) or [0.0]
    print(
        f"oversize requests: {total}, "
        + ", ".join(f"{status} {count}" for status, count in tally.refusals.most_common())
        + f"; refused in median {seconds[len(seconds) // 2]:.1f} s, slowest {seconds[-1]:.1f} s"
    )
    print(f"correct requests: {tally.correct} answered, {len(tally.correct_failed)} failed")
    for failure in tally.correct_failed[:5]:
        print(f"  failed: {failure}")
    for label, (server, stubs) in (("start", start), ("peak", peak), ("end", end)):
        print(f"memory at {label}: tritonserver {server / MIB:.0f} MiB, stubs {stubs / MIB:.0f} MiB")
    grown = (end[0] + end[1]) / max(1, start[0] + start[1]) - 1
    print(f"end against start: {100 * grown:+.1f} % (bound {100 * arguments.tolerance:.0f} %)")
    ok = (
        total > 0
        and tally.refusals["INVALID_ARGUMENT"] == total
        and not tally.correct_failed
        and grown <= arguments.tolerance
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
