"""`prodgen`: serve a model repository, and call its models over gRPC."""

from prodgen.cli_support import run_app
from prodgen.client.cli import app
from prodgen.serve.cli import serve

app.command()(serve)


def main() -> None:
    run_app(app)
