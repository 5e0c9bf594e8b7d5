"""Peer (b): the same FastAPI service running the repository's model.onnx in ONNX Runtime.

python -m prodgen.bench.peers.fastapi_onnxruntime --model dcgan --onnx models/dcgan/1/model.onnx --port 9001
"""

from __future__ import annotations

from prodgen.bench.peers.app_args import peer_arguments
from prodgen.bench.peers.fastapi_service import create_app, serve
from prodgen.bench.peers.models import OnnxRuntimeModel


def main() -> None:
    args = peer_arguments(__doc__ or "")
    if args.onnx is None:
        raise SystemExit("--onnx is required: the ONNX Runtime peer serves a model.onnx")
    serve(create_app(lambda: OnnxRuntimeModel(args.onnx)), args.host, args.port)


if __name__ == "__main__":
    main()
