"""What a new user trips on in the first hour: Typer's own mistakes as one `Error:` line, the server
named once (PRODGEN_URL), a diffusion model's facts and warnings, the served defaults at export."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prodgen.cli_support import EXIT_USER_ERROR, GRPC_PORT_VARIABLE, URL_VARIABLE
from prodgen.client.diffusion import unknown_words
from prodgen.export.cli import main as export_main
from prodgen.model_facts import DiffusionFacts
from prodgen.model_repository.stable_diffusion import (
    DEFAULTS,
    MAX_STEPS,
    request_defaults,
    served_defaults,
    whole_words,
)
from prodgen.serve.server import EmbeddedServer
from tests_support import console_script


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_typers_own_usage_mistakes_are_one_error_line() -> None:
    line = one_error_line(run("prodgen", "txt2img", "some-model", "a red mug", "--steps", "0"))
    assert "'--steps'" in line and "prodgen txt2img --help" in line
    assert "'prompt'" in one_error_line(run("prodgen", "txt2img", "some-model"))


def test_prodgen_url_names_the_server_for_client_commands() -> None:
    line = one_error_line(run("prodgen", "models", "--timeout", "2", env={URL_VARIABLE: "127.0.0.1:1"}))
    assert "127.0.0.1:1" in line
    help_text = run("prodgen", "serve", "--help").stdout
    assert GRPC_PORT_VARIABLE in help_text


def export_error_in_process(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> str:
    """prodgen-export's one error line, run in this process (a script start costs seconds of imports)."""
    monkeypatch.setattr(sys, "argv", ["prodgen-export", *args])
    with pytest.raises(SystemExit) as exited:
        export_main()
    assert exited.value.code == EXIT_USER_ERROR
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


def test_served_defaults_are_export_options_checked_before_the_export(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    line = export_error_in_process(["dcgan", "--default-steps", "3"], capsys, monkeypatch)
    assert "--default-steps" in line and "stable-diffusion" in line
    args = ["stable-diffusion", "--checkpoint", "no-such-folder", "--default-scheduler", "warp"]
    line = export_error_in_process(args, capsys, monkeypatch)
    assert "default scheduler 'warp'" in line and "dpmpp-2m" in line


def test_request_defaults_replace_only_what_is_given() -> None:
    chosen = served_defaults(None, request_defaults(steps=20, guidance=5.0))
    assert (chosen["default_steps"], chosen["default_guidance"]) == ("20", "5")
    assert chosen["default_scheduler"] == DEFAULTS["default_scheduler"]
    few_step = served_defaults("LCM", request_defaults(steps=6))
    assert (few_step["default_steps"], few_step["default_scheduler"]) == ("6", "lcm")
    with pytest.raises(Exception, match=f"expected 1..{MAX_STEPS}"):
        request_defaults(steps=MAX_STEPS + 1)
    with pytest.raises(Exception, match="finite"):
        request_defaults(guidance=float("nan"))


def test_a_small_tokenizers_words_are_published_and_unknown_words_named() -> None:
    vocabulary = {"a</w>": 1, "red</w>": 2, "mug</w>": 3, "on</w>": 4, "r": 5, "re": 6, "<|endoftext|>": 7}
    words = whole_words(vocabulary)
    assert words == ("mug", "on", "red")
    assert whole_words({f"w{chr(97 + i % 26) * (i // 26 + 2)}</w>": i for i in range(2000)}) == ()
    facts = DiffusionFacts(prompt_max_tokens=16, latent_channels=4, vae_scale_factor=2, known_words=",".join(words))
    assert unknown_words(facts, "A red sneaker on a white-table") == ["sneaker", "white", "table"]
    assert unknown_words(DiffusionFacts(16, 4, 2), "anything at all") == []


@pytest.mark.e2e
def test_txt2img_warns_of_unknown_words_and_sizes_and_writes_the_format_asked(
    diffusion_server: EmbeddedServer, tmp_path: Path
) -> None:
    out = tmp_path / "mug.jpg"
    done = run(
        "prodgen", "txt2img", "sd", "the red sneaker", "--steps", "1", "--width", "64", "--out", str(out),
        env={URL_VARIABLE: diffusion_server.options.grpc_url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("warning:")]
    assert any("'red', 'sneaker'" in line and "does not know" in line for line in warnings), done.stdout
    assert any("64×32" in line and "trained at 32×32" in line for line in warnings), done.stdout
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG, as the suffix asks


@pytest.mark.e2e
def test_a_pipeline_component_called_as_a_pipeline_names_its_pipeline(diffusion_server: EmbeddedServer) -> None:
    line = one_error_line(run("prodgen", "txt2img", "sd_unet", "a mug", "--url", diffusion_server.options.grpc_url))
    assert "component of pipeline 'sd'" in line


@pytest.mark.e2e
def test_models_shows_a_pipelines_trained_size_words_and_defaults(diffusion_server: EmbeddedServer) -> None:
    listed = run("prodgen", "models", env={URL_VARIABLE: diffusion_server.options.grpc_url})
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("sd (diffusion)"))
    assert "trained at 32×32" in line and "knows " in line
    assert f"defaults {DEFAULTS['default_steps']} steps" in line
