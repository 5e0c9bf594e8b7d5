"""The command line every peer app takes, so `prodgen-bench peers` starts them all alike."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from prodgen.serve.options import LOOPBACK


def peer_arguments(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True, help="Zoo model name.")
    parser.add_argument(
        "--checkpoint", type=Path, action="append", default=[], help="Weights (once per file); seeded random if none."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights when no checkpoint is given.")
    parser.add_argument("--onnx", type=Path, help="model.onnx, for the ONNX Runtime peers.")
    parser.add_argument("--name", help="Served model name (default: the zoo name).")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, required=True, help="HTTP port (Triton peers: gRPC port).")
    parser.add_argument("--http-port", type=int, help="Triton peers: their HTTP port.")
    parser.add_argument("--metrics-port", type=int, help="Triton peers: their metrics port.")
    parser.add_argument("--max-batch-size", type=int, default=8, help="Batching peers: largest batch.")
    return parser.parse_args(argv)
