"""Where a command writes its pictures, decided before any inference runs.

A mistyped `--out` must fail in one line before minutes of work, not after it, and two
results must never land on the same file: photos that share a name in different folders
(a/photo.jpg, b/photo.jpg) get their folder's name in front (a-photo.png, b-photo.png).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prodgen.errors import ProdgenError


def picture_extensions() -> list[str]:
    """File extensions PIL can write, e.g. ['.bmp', '.jpeg', '.jpg', '.png', …]."""
    from PIL import Image  # here, so that importing the CLI (`prodgen --help`) stays light

    Image.init()
    return sorted(ext for ext, kind in Image.registered_extensions().items() if kind in Image.SAVE)


def _check_parents(path: Path, option: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ProdgenError(f"{option} {path}: {parent} is a file, not a folder")
            return


def picture_file(out: Path, option: str = "--out") -> Path:
    """One picture file to write (a grid of generated pictures)."""
    if out.is_dir():
        raise ProdgenError(f"{option} {out} is a folder; expected a picture file such as {out / 'grid.png'}")
    known = picture_extensions()
    if not out.suffix:
        raise ProdgenError(f"{option} {out} has no file extension; expected a picture file such as {out}.png")
    if out.suffix.lower() not in known:
        common = ", ".join(ext for ext in (".png", ".jpg", ".webp", ".bmp", ".tif") if ext in known)
        raise ProdgenError(f"{option} {out}: '{out.suffix}' is not a picture format; expected {common}, …")
    _check_parents(out, option)
    return out


def _name(path: Path, level: int) -> str:
    """The output stem for `path`, more specific at each level."""
    if level == 0:
        return path.stem
    folder = path.parent.resolve().name or "root"
    return f"{folder}-{path.stem}" if level == 1 else f"{folder}-{path.stem}-{path.suffix.lstrip('.')}"


def picture_files(inputs: list[Path], out: Path, suffix: str = ".png", option: str = "--out") -> list[Path]:
    """One distinct output file in folder `out` for each input, in order."""
    if out.exists() and not out.is_dir():
        raise ProdgenError(f"{option} {out} is a file; expected a folder for the pictures (created if missing)")
    _check_parents(out / "picture", option)
    names = [_name(path, 0) for path in inputs]
    for level in (1, 2):
        counts = Counter(names)
        names = [_name(path, level) if counts[name] > 1 else name for path, name in zip(inputs, names, strict=True)]
    counts, seen = Counter(names), Counter[str]()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if counts[name] == 1 else f"{name}-{seen[name]}")
    return [out / f"{name}{suffix}" for name in unique]
