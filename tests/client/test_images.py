"""Pictures are read as they are meant to be seen, and oversized ones are refused from their header."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodgen.client.images import MAX_PIXELS, read_image, write_image
from prodgen.contract import check_values
from prodgen.errors import ProdgenError


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A few-hundred-byte PNG whose header declares width×height (the pixels are never there)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IHDR")
    data[start + 4 : start + 12] = struct.pack(">II", width, height)
    data[start + 17 : start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start : start + 17])))
    path.write_bytes(bytes(data))
    return path


def test_a_picture_larger_than_the_model_allows_is_refused_from_its_header(tmp_path: Path) -> None:
    with pytest.raises(ProdgenError, match=r"12000×12000 pixels, expected at most 2048 pixels a side"):
        read_image(png_claiming(tmp_path / "huge.png", 12000, 12000), max_side=2048)


def test_a_decompression_bomb_is_refused_without_decoding(tmp_path: Path) -> None:
    side = int(MAX_PIXELS**0.5) + 1
    with pytest.raises(ProdgenError, match="pixels in all"):
        read_image(png_claiming(tmp_path / "bomb.png", side, side))


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    grey = np.full((4, 4), 32768, dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    picture = read_image(tmp_path / "grey16.png")
    assert picture.shape == (4, 4, 3) and int(picture[0, 0, 0]) == 128


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise
    Image.new("RGB", (8, 4), (255, 0, 0)).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert read_image(tmp_path / "rotated.jpg").shape == (8, 4, 3)


def test_transparency_is_composited_on_white(tmp_path: Path) -> None:
    Image.new("RGBA", (2, 2), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (read_image(tmp_path / "clear.png") == 255).all()


@pytest.mark.parametrize("name", ["out.unknown-extension", "missing-folder-is-a-file/x.png"])
def test_writing_where_no_picture_can_go_is_a_clear_error(tmp_path: Path, name: str) -> None:
    (tmp_path / "missing-folder-is-a-file").write_text("")
    with pytest.raises(ProdgenError, match="cannot write a picture there"):
        write_image(tmp_path / name, np.zeros((2, 2, 3), np.uint8))


@pytest.mark.parametrize(
    ("values", "value_range", "message"),
    [
        (np.array([[np.nan]], np.float32), None, "NaN or Inf"),
        (np.array([[5.0]], np.float32), (0.0, 1.0), r"5 is outside the allowed range 0\.\.1"),
        (np.array([[-1]], np.int64), (0, 5), r"-1 is outside the allowed range 0\.\.5"),
    ],
)
def test_client_refuses_values_the_server_would(
    values: np.ndarray, value_range: tuple[float, float] | None, message: str
) -> None:
    with pytest.raises(ProdgenError, match=message):
        check_values("alpha", values, value_range)
