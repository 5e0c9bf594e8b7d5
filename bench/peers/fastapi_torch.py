"""Peer (a): the FastAPI service running the model in eager PyTorch.

python -m prodgen.bench.peers.fastapi_torch --model fast-neural-style --checkpoint w.pth --port 9000
"""

from __future__ import annotations

from prodgen.bench.peers.app_args import peer_arguments
from prodgen.bench.peers.fastapi_service import create_app, serve
from prodgen.bench.peers.models import TorchModel


def main() -> None:
    args = peer_arguments(__doc__ or "")
    serve(create_app(lambda: TorchModel(args.model, args.checkpoint, args.seed)), args.host, args.port)


if __name__ == "__main__":
    main()
