"""LoRAs fused into a Stable-Diffusion checkpoint's UNet and text encoder before export.

What people publish comes in two layouts: kohya-ss / A1111 safetensors (`lora_unet_…​.lora_down.weight`,
`lora_te_…`, `.alpha`) and diffusers / PEFT (`unet.….lora_A.weight`, `text_encoder.…`). diffusers reads both
with `load_lora_weights` (through PEFT) and folds them into the weights with `fuse_lora(lora_scale=…)`, so
that is what runs here: the served graphs then carry the fused weights and cost nothing extra per step.

diffusers only warns when keys of a LoRA match nothing in the base (a LoRA for another architecture would
load as a silent no-op), so each LoRA's modules are counted in its file and compared with the layers PEFT
actually wrapped; a LoRA that does not fit is refused, naming what did not match.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodgen.errors import ProdgenError, first_line
from prodgen.zoo.stable_diffusion import StableDiffusion

LORA_MODULE_KEY = re.compile(r"(\.lora_down\.weight|\.lora_A(\.[\w-]+)?\.weight|\.lora\.down\.weight)$")
"""One key per adapted layer: kohya's lora_down, PEFT's lora_A (optionally with an adapter name), and the
`…_lora.down.weight` of diffusers' older attention-processor LoRAs."""
UNMATCHED = re.compile(r"unexpected keys[^:]*:\s*(.+)", re.IGNORECASE | re.DOTALL)
INSTALL_HINT = "LoRAs need PEFT: pip install 'prodgen[diffusion]' (peft)"


@dataclass(frozen=True)
class Lora:
    """One LoRA file and the scale it is fused at (diffusers' `lora_scale`; 1.0 as trained)."""

    path: Path
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str) -> Lora:
        """`FILE[:SCALE]`, as `--lora` takes it."""
        path, separator, scale_text = text.rpartition(":")
        if not separator or not path:
            return cls(Path(text))
        try:
            scale = float(scale_text)
        except ValueError:
            return cls(Path(text))  # a colon inside the path, no scale
        if not math.isfinite(scale):
            raise ProdgenError(f"--lora {text}: scale {scale_text} is not a finite number; expected FILE[:SCALE]")
        return cls(Path(path), scale)

    def describe(self) -> str:
        return f"{self.path.name}@{self.scale:g}"

    def provenance(self) -> dict[str, object]:
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest() if self.path.is_file() else None
        return {"file": str(self.path.resolve()), "sha256": digest, "scale": self.scale}


def describe_loras(loras: Sequence[Lora]) -> str:
    """The LoRAs as the served model's facts list them: `file@scale`, comma-separated."""
    return ",".join(lora.describe() for lora in loras)


def _weights_file(lora: Lora) -> Path:
    """The safetensors file of a LoRA: the file given, or the only one in a folder (diffusers' save layout)."""
    path = lora.path
    if path.is_dir():
        found = sorted(path.glob("*.safetensors"))
        if len(found) != 1:
            raise ProdgenError(f"--lora {path}: expected one .safetensors file in the folder, found {len(found)}")
        path = found[0]
    if not path.is_file():
        raise ProdgenError(f"--lora {path}: no such file; expected a LoRA .safetensors (kohya/A1111 or diffusers/PEFT)")
    return path


def _module_keys(path: Path) -> list[str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as stream:
            keys = list(stream.keys())
    except (SafetensorError, OSError, ValueError) as error:
        raise ProdgenError(f"--lora {path}: not a safetensors file ({error}); expected a LoRA .safetensors") from None
    modules = [key for key in keys if LORA_MODULE_KEY.search(key)]
    if not modules:
        raise ProdgenError(
            f"--lora {path}: no LoRA weights (no lora_down / lora_A keys among {len(keys)}); expected a LoRA in "
            "kohya/A1111 or diffusers/PEFT layout"
        )
    return modules


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def _diffusers_warnings() -> Iterator[list[str]]:
    """What diffusers and PEFT warn while a LoRA loads (logging and warnings), to find unmatched keys."""
    handler = _Messages()
    loggers = [logging.getLogger(name) for name in ("diffusers", "peft")]
    # prodgen keeps the libraries' own warnings quiet (`require_diffusion_libraries`): while a LoRA loads they are
    # turned on again, but only this handler hears them, so the user sees prodgen's one line, not theirs.
    saved = [(logger, logger.level, list(logger.handlers)) for logger in loggers]
    for logger in loggers:
        for existing in list(logger.handlers):
            logger.removeHandler(existing)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield handler.lines
            handler.lines.extend(str(item.message) for item in caught)
    finally:
        for logger, level, handlers in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            for existing in handlers:
                logger.addHandler(existing)


def _wrapped_layers(model: StableDiffusion, adapter: str) -> int:
    from peft.tuners.lora import LoraLayer

    return sum(
        1
        for network in (model.unet, model.text_encoder)
        for _, module in network.named_modules()
        if isinstance(module, LoraLayer) and adapter in module.lora_A
    )


def _unmatched(lines: list[str]) -> str:
    for line in lines:
        found = UNMATCHED.search(line)
        if found:
            return found.group(1).strip().rstrip(".")
    return ""


def _pipeline(model: StableDiffusion) -> Any:
    """A diffusers pipeline over the loaded components (the same modules), for its LoRA loader."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=model.vae,
        text_encoder=model.text_encoder,
        tokenizer=model.tokenizer,
        unet=model.unet,
        scheduler=DDIMScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def fuse_loras(model: StableDiffusion, loras: Sequence[Lora]) -> None:
    """Fuse each LoRA into `model`'s UNet and text encoder in place, in order, at its scale."""
    if not loras:
        return
    try:
        import peft  # noqa: F401
    except ImportError as error:
        raise ProdgenError(f"{INSTALL_HINT} ({error})") from None
    import torch

    pipeline = _pipeline(model)
    for index, lora in enumerate(loras):
        path = _weights_file(lora)
        expected = len(_module_keys(path))
        adapter = f"prodgen_lora_{index}"
        with _diffusers_warnings() as lines, torch.no_grad():
            try:
                pipeline.load_lora_weights(str(path), adapter_name=adapter)
            except (ValueError, KeyError, RuntimeError, OSError) as error:
                raise ProdgenError(f"--lora {path}: cannot load it onto {model.folder}: {first_line(error)}") from None
        applied = _wrapped_layers(model, adapter)
        unmatched = _unmatched(lines)
        if unmatched or applied != expected:
            pipeline.unload_lora_weights()
            what = f": {unmatched}" if unmatched else ""
            raise ProdgenError(
                f"--lora {path}: {expected - applied} of its {expected} adapted layers match nothing in "
                f"{model.folder}'s UNet/text encoder{what}; expected a LoRA trained for this base model"
            )
        with torch.no_grad():
            pipeline.fuse_lora(lora_scale=lora.scale, adapter_names=[adapter])
            pipeline.unload_lora_weights()
