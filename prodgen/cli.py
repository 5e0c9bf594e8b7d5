"""`prodgen`: serve a model repository, and call its models over gRPC."""

from prodgen.cli_support import run_app
from prodgen.client.cli import app
from prodgen.serve.cli import serve
from prodgen.serve.rollout_cli import deploy, rollback

app.command()(serve)
app.command()(deploy)
app.command()(rollback)


def main() -> None:
    run_app(app)
