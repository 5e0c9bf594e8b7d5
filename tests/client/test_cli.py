"""The CLIs as a user runs them: real console scripts, real server, one-line errors."""

from __future__ import annotations

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


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([console_script(args[0]), *args[1:]], capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def test_export_list_prints_the_zoo() -> None:
    result = run("prodgen-export", "--list")
    assert result.returncode == 0
    assert result.stdout.split() == zoo.names()


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
    result = run("prodgen", "models", "--url", embedded_server.options.grpc_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in ("dcgan", "fast-neural-style", "cyclegan"):
        line = next(line for line in lines if line.startswith(f"{name} ("))
        assert "max batch 4" in line
