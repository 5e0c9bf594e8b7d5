"""The CLIs as a user runs them: real console scripts, real server, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prodgen import zoo
from prodgen.client.images import image_grid
from prodgen.export.verify import run_pytorch
from prodgen.seeding import latents_from_seed
from prodgen.serve.server import EmbeddedServer
from prodgen.zoo.loading import serving_module
from tests_support import console_script, free_port

PHOTOS = Path(__file__).parents[2] / "examples" / "photos"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


EVERY_UPDATE = {"PRODGEN_PROGRESS_SECONDS": "0"}
"""Progress lines on every update, as a pipe gets them every 10 s."""


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def test_export_list_shows_each_models_task_inputs_and_bounds() -> None:
    table = run("prodgen-export", "--list")
    assert table.returncode == 0, table.stderr
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if line.startswith("│ ")}
    assert sorted(rows) == zoo.names()
    assert "stylize" in rows["adain"] and "style_image H×W×3" in rows["adain"] and "32..1024" in rows["adain"]
    assert "generate" in rows["dcgan"] and "z [100]" in rows["dcgan"] and "64×64×3" in rows["dcgan"]
    assert "prodgen-export stable-diffusion --checkpoint DIR" in table.stdout, "the diffusion family is named too"
    listed = json.loads(run("prodgen-export", "--list", "--json").stdout)
    assert [entry["name"] for entry in listed] == zoo.names()
    upscaler = next(entry for entry in listed if entry["name"] == "realesrgan-x4")
    assert upscaler["task"] == "upscale"
    assert upscaler["inputs"] == [
        {"name": "input_image", "dtype": "UINT8", "dims": [-1, -1, 3], "optional": False, "value_range": None}
    ]
    assert upscaler["bounds"] == {"min_side": 16, "max_side": 512, "opt_side": 128}


def test_export_steps_are_reported_when_piped(tmp_path: Path) -> None:
    result = run("prodgen-export", "dcgan", "--repository", str(tmp_path / "models"), env=EVERY_UPDATE)
    assert result.returncode == 0, result.stderr
    steps = [line.split(":")[1].strip() for line in result.stderr.splitlines()]
    assert steps[:5] == [
        "loading weights",
        "exporting ONNX",
        "verifying ONNX Runtime against PyTorch on real inputs",
        "measuring throughput to size the server's queue",
        "publishing",
    ]
    assert result.stderr.splitlines()[-1].startswith("dcgan: done in")
    assert "\x1b" not in result.stderr


def test_unknown_model_name() -> None:
    assert_one_line_error(run("prodgen-export", "no-such-model"), "unknown model 'no-such-model'")


def test_missing_checkpoint_file_leaves_no_repository(tmp_path: Path) -> None:
    result = run(
        "prodgen-export", "dcgan", "--checkpoint", str(tmp_path / "netG.pth"), "--repository", str(tmp_path / "models")
    )
    assert_one_line_error(result, "no file at")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_of_another_architecture_publishes_nothing(tmp_path: Path) -> None:
    torch.save(zoo.get("dcgan").build().state_dict(), tmp_path / "netG.pth")
    repository = tmp_path / "models"
    result = run(
        "prodgen-export", "cyclegan", "--checkpoint", str(tmp_path / "netG.pth"), "--repository", str(repository)
    )
    assert_one_line_error(result, "does not match architecture 'cyclegan'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["netG.pth"]


def test_pickled_code_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save({"state_dict": zoo.get("dcgan").build().state_dict(), "extra": Path("/etc")}, tmp_path / "evil.pth")
    result = run(
        "prodgen-export", "dcgan", "--checkpoint", str(tmp_path / "evil.pth"), "--repository", str(tmp_path / "models")
    )
    assert_one_line_error(result, "refuses to load")


def test_a_text_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    notes = tmp_path / "README.md"
    notes.write_text("# not weights\n")
    result = run("prodgen-export", "dcgan", "--checkpoint", str(notes), "--repository", str(tmp_path / "models"))
    assert_one_line_error(result, "not a checkpoint (expected .pth/.pt/.safetensors")
    assert result.returncode == 2 and not (tmp_path / "models").exists()


def test_a_repository_that_is_a_file_is_named(tmp_path: Path) -> None:
    notes = tmp_path / "README.md"
    notes.write_text("# not a repository\n")
    for command in (("prodgen-export", "dcgan"), ("prodgen", "serve")):
        result = run(*command, "--repository", str(notes))
        assert_one_line_error(result, f"{notes} is a file; expected a folder for the Triton model repository")
        assert result.returncode == 2


def test_out_mistakes_fail_before_any_call(tmp_path: Path) -> None:
    """No server listens at the URL: the --out error shows that nothing was attempted first."""
    url = f"127.0.0.1:{free_port()}"
    no_extension = run("prodgen", "generate", "dcgan", "--out", str(tmp_path / "noext"), "--url", url)
    assert_one_line_error(no_extension, "has no file extension; expected a picture file such as")
    unknown = run("prodgen", "generate", "dcgan", "--out", str(tmp_path / "grid.xyz"), "--url", url)
    assert_one_line_error(unknown, "'.xyz' is not a picture format; expected .png, .jpg")
    notes = tmp_path / "README.md"
    notes.write_text("text")
    into_a_file = run("prodgen", "upscale", "any", str(PHOTOS / "coffee.jpg"), "--out", str(notes), "--url", url)
    assert_one_line_error(into_a_file, "is a file; expected a folder for the pictures")
    assert {no_extension.returncode, unknown.returncode, into_a_file.returncode} == {2}
    assert notes.read_text() == "text" and sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


def test_url_mistakes_are_named_before_any_call() -> None:
    result = run("prodgen", "health", "--url", "http://localhost:8000")
    assert_one_line_error(result, "prodgen talks to Triton over gRPC, not HTTP; expected host:port")
    assert result.returncode == 2


def test_debug_shows_the_traceback() -> None:
    result = run("prodgen-export", "no-such-model", "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


@pytest.mark.e2e
def test_generate_writes_the_seeded_pictures(embedded_server: EmbeddedServer, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = run(
        "prodgen",
        "generate",
        "dcgan",
        "--seed",
        "5",
        "--count",
        "4",
        "--columns",
        "2",
        "--out",
        str(out),
        "--url",
        embedded_server.options.grpc_url,
    )
    assert result.returncode == 0, result.stderr
    model = zoo.get("dcgan")
    (expected,) = run_pytorch(serving_module(model), model, {"z": latents_from_seed(5, 4, 100)})
    written = np.asarray(Image.open(out))
    assert written.shape == image_grid(expected, 2).shape
    assert np.mean(np.abs(written.astype(int) - image_grid(expected, 2).astype(int)) <= 1) >= 0.999


@pytest.mark.e2e
def test_stylize_writes_one_picture_per_photo(embedded_server: EmbeddedServer, tmp_path: Path) -> None:
    photos = sorted((Path(__file__).parents[2] / "examples" / "photos").glob("*.jpg"))[:2]
    result = run(
        "prodgen",
        "stylize",
        "fast-neural-style",
        *map(str, photos),
        "--out",
        str(tmp_path),
        "--url",
        embedded_server.options.grpc_url,
    )
    assert result.returncode == 0, result.stderr
    for photo in photos:
        written = Image.open(tmp_path / f"{photo.stem}.png")
        assert written.size == Image.open(photo).size


@pytest.mark.e2e
def test_bad_images_and_unknown_models_through_the_client_cli(embedded_server: EmbeddedServer, tmp_path: Path) -> None:
    url = embedded_server.options.grpc_url
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a picture")
    assert_one_line_error(run("prodgen", "stylize", "cyclegan", str(not_image), "--url", url), "not an image file")
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 300, 3), dtype=np.uint8)).save(small)
    assert_one_line_error(
        run("prodgen", "stylize", "cyclegan", str(small), "--url", url), "height 20 is outside the model's bounds"
    )
    assert_one_line_error(
        run("prodgen", "generate", "no-such-model", "--url", url), "model 'no-such-model' is not served"
    )
    assert_one_line_error(run("prodgen", "generate", "cyclegan", "--url", url), "not a generator")


def test_unreachable_server() -> None:
    assert_one_line_error(
        run("prodgen", "health", "--url", f"127.0.0.1:{free_port()}", "--timeout", "3"), "cannot reach Triton"
    )


@pytest.mark.e2e
def test_models_lists_every_served_model(embedded_server: EmbeddedServer) -> None:
    url = embedded_server.options.grpc_url
    result = run("prodgen", "models", "--url", url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in ("dcgan", "fast-neural-style", "cyclegan"):
        line = next(line for line in lines if line.startswith(f"{name} ("))
        assert "max batch 4" in line
    listed = {entry["name"]: entry for entry in json.loads(run("prodgen", "models", "--json", "--url", url).stdout)}
    assert listed["dcgan"]["task"] == "generate" and listed["dcgan"]["max_batch_size"] == 4
    assert listed["dcgan"]["inputs"][0] == {
        "name": "z",
        "dtype": "FP32",
        "dims": [100],
        "optional": False,
        "value_range": None,
    }
    assert listed["fast-neural-style"]["zoo_model"] == "fast-neural-style"
    assert listed["fast-neural-style"]["bounds"]["max_side"] > listed["fast-neural-style"]["bounds"]["min_side"]


@pytest.mark.e2e
def test_the_http_and_metrics_ports_are_named(embedded_server: EmbeddedServer) -> None:
    for port in (embedded_server.options.http_port, embedded_server.options.metrics_port):
        result = run("prodgen", "health", "--url", f"127.0.0.1:{port}", "--timeout", "5")
        assert_one_line_error(
            result, "does not speak gRPC: is it Triton's HTTP or metrics port? expected the gRPC port"
        )


@pytest.mark.e2e
def test_photos_sharing_a_name_are_both_kept(embedded_server: EmbeddedServer, tmp_path: Path) -> None:
    for folder, photo in (("a", "coffee.jpg"), ("b", "chelsea.jpg")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "photo.jpg").write_bytes((PHOTOS / photo).read_bytes())
    out = tmp_path / "same"
    result = run(
        "prodgen", "stylize", "fast-neural-style", str(tmp_path / "a" / "photo.jpg"), str(tmp_path / "b" / "photo.jpg"),
        "--out", str(out), "--url", embedded_server.options.grpc_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a-photo.png", "b-photo.png"]
    assert Image.open(out / "a-photo.png").size == Image.open(PHOTOS / "coffee.jpg").size
    assert Image.open(out / "b-photo.png").size == Image.open(PHOTOS / "chelsea.jpg").size


@pytest.mark.e2e
def test_each_command_refuses_a_model_of_another_task(embedded_server: EmbeddedServer, tmp_path: Path) -> None:
    url = embedded_server.options.grpc_url
    result = run(
        "prodgen", "upscale", "fast-neural-style", str(PHOTOS / "coffee.jpg"), "--out", str(tmp_path), "--url", url
    )
    assert_one_line_error(result, "model 'fast-neural-style' is a style model, not an upscaler; use `prodgen stylize`")
    result = run("prodgen", "stylize", "dcgan", str(PHOTOS / "coffee.jpg"), "--out", str(tmp_path), "--url", url)
    assert_one_line_error(result, "model 'dcgan' is a generator, not a style model; use `prodgen generate`")
    assert_one_line_error(run("prodgen", "generate", "dcgn", "--url", url), "did you mean 'dcgan'?")


@pytest.mark.e2e
def test_many_pictures_report_progress_when_piped(embedded_server: EmbeddedServer, tmp_path: Path) -> None:
    result = run(
        "prodgen", "generate", "dcgan", "--count", "8", "--out", str(tmp_path / "grid.png"),
        "--url", embedded_server.options.grpc_url, env=EVERY_UPDATE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines[:2]] == [
        "generate dcgan: 4/8 pictures",
        "generate dcgan: 8/8 pictures",
    ]
    assert "elapsed" in lines[0] and "left" in lines[0]
