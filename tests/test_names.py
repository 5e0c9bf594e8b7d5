"""One served-name rule for export, the repository and serve, checked before any work."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from prodgen.errors import ProdgenError
from prodgen.model_repository.publish import publish
from prodgen.names import MAX_NAME_LENGTH, check_model_name, name_problem
from prodgen.serve.python_backend_repository import sync_mirror
from tests_support import console_script

UNSERVABLE = {
    "space": "shop model",
    "tab": "shop\tmodel",
    "newline": "shop\nmodel",
    "backslash": "shop\\model",
    "slash": "shop/model",
    "non-ASCII": "modèle",
    "leading dot": ".hidden",
    "leading dash": "-x",
    "empty": "",
    "too long": "m" * 300,
}


@pytest.mark.parametrize("name", list(UNSERVABLE.values()), ids=list(UNSERVABLE))
def test_names_the_server_cannot_run_are_refused_in_one_line(name: str) -> None:
    assert name_problem(name) is not None
    with pytest.raises(ProdgenError, match="cannot be served") as refused:
        check_model_name(name)
    assert "\n" not in str(refused.value).replace(repr(name), "")


@pytest.mark.parametrize("name", ["dcgan", "shop-look_v2.1", "_x", "m" * MAX_NAME_LENGTH])
def test_names_triton_and_the_python_backend_accept_pass(name: str) -> None:
    assert check_model_name(name) == name


def test_publish_refuses_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ProdgenError, match="cannot be served"):
        publish(tmp_path / "models", "bad name", lambda folder: None, lambda version: "")
    assert not (tmp_path / "models" / "bad name").exists()


def test_the_mirror_skips_a_folder_with_an_unservable_name_and_says_why(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    (repository / "bad name").mkdir(parents=True)
    (repository / "bad name" / "config.pbtxt").write_text('backend: "onnxruntime"\n')
    result = sync_mirror(repository, tmp_path / "mirror")
    assert result.served == []
    assert "name not servable" in result.skipped["bad name"]


@pytest.mark.parametrize("name", ["a b", ""], ids=["space", "empty"])
def test_export_refuses_the_name_before_any_work(tmp_path: Path, name: str) -> None:
    result = subprocess.run(
        [console_script("prodgen-export"), "dcgan", "--name", name, "--repository", str(tmp_path / "models")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "cannot be served" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()
