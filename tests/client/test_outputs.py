"""Output paths are decided before inference and never collide."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodgen.client.outputs import picture_file, picture_files
from prodgen.errors import ProdgenError


def test_photos_sharing_a_name_get_their_folder_in_front(tmp_path: Path) -> None:
    photos = [Path("a/photo.jpg"), Path("b/photo.jpg"), Path("c/other.jpg"), Path("a/photo.png")]
    out = picture_files(photos, tmp_path / "same")
    assert [p.name for p in out] == ["a-photo-jpg.png", "b-photo.png", "other.png", "a-photo-png.png"]
    assert len(set(out)) == len(out)


def test_the_same_photo_twice_still_gets_two_files(tmp_path: Path) -> None:
    out = picture_files([Path("a/photo.jpg"), Path("a/photo.jpg")], tmp_path)
    assert [p.name for p in out] == ["a-photo-jpg-1.png", "a-photo-jpg-2.png"]


@pytest.mark.parametrize(
    ("name", "message"),
    [("noext", "has no file extension"), ("grid.xyz", "'.xyz' is not a picture format")],
)
def test_a_picture_file_needs_a_known_extension(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(ProdgenError, match=message):
        picture_file(tmp_path / name)
    assert picture_file(tmp_path / "grid.JPG") == tmp_path / "grid.JPG"


def test_a_file_where_a_folder_is_expected(tmp_path: Path) -> None:
    existing = tmp_path / "README.md"
    existing.write_text("text")
    with pytest.raises(ProdgenError, match="is a file; expected a folder"):
        picture_files([Path("photo.jpg")], existing)
    with pytest.raises(ProdgenError, match="README.md is a file, not a folder"):
        picture_file(existing / "grid.png")
