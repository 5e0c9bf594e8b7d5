"""Where a manifest row's picture comes from: a path (relative to the manifest), file:// or http(s)://.

A source is read as bytes: its content hash is part of the output's key (a changed photo is
redone), and the same bytes are decoded. URLs are fetched by this client, never by the server.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from prodgen.errors import ProdgenError

FETCH_TIMEOUT_S = 60.0
MAX_SOURCE_BYTES = 256 * 1024 * 1024
"""The largest picture file a row may name; a bigger one is a bad row, not an exhausted machine."""


def _local_path(reference: str, base: Path) -> Path:
    if reference.startswith("file://"):
        parsed = urllib.parse.urlparse(reference)
        if parsed.netloc not in ("", "localhost"):
            raise ProdgenError(f"image {reference}: a file:// URL on host '{parsed.netloc}'; expected file:///path")
        return Path(urllib.parse.unquote(parsed.path))
    path = Path(reference).expanduser()
    return path if path.is_absolute() else base / path


def is_url(reference: str) -> bool:
    return reference.split("://", 1)[0].lower() in ("http", "https") and "://" in reference


def read_source(reference: str, base: Path) -> bytes:
    """The bytes of the picture `reference` names; a ProdgenError naming what was wrong otherwise."""
    if is_url(reference):
        return _fetch(reference)
    if "://" in reference and not reference.startswith("file://"):
        scheme = reference.split("://", 1)[0]
        raise ProdgenError(
            f"image {reference}: scheme '{scheme}' is not supported; expected a path, file:// or http(s)://"
        )
    path = _local_path(reference, base)
    if not path.is_file():
        raise ProdgenError(f"image: no file at {path}")
    size = path.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise ProdgenError(f"image {path}: {size:,} bytes, expected at most {MAX_SOURCE_BYTES:,}")
    return path.read_bytes()


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - http(s) only, checked above
            data: bytes = response.read(MAX_SOURCE_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise ProdgenError(f"image {url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ProdgenError(f"image {url}: cannot fetch it ({reason})") from error
    if len(data) > MAX_SOURCE_BYTES:
        raise ProdgenError(f"image {url}: more than {MAX_SOURCE_BYTES:,} bytes")
    return data


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
