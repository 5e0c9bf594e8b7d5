"""A diffusion UNet's or VAE decoder's OpenVINO IR quantised to INT8, activations included, by NNCF
(OpenVINO's own quantiser).

Post-training quantisation on calibration feeds recorded from the pipeline's own pictures, so the
activation ranges are those of real latents (at every timestep the scheduler visits, for the
UNet; the final latents, for the decoder), not of random tensors. The UNet is quantised in NNCF's
transformer mode (SmoothQuant for the MatMuls); the decoder, all convolutions reading SiLU
outputs, with asymmetric activations (NNCF's mixed preset), which spend no INT8 levels on
negative values those never reach. Both get fast bias correction. Layers known to be sensitive
stay at the plugin's floating-point precision, named by op in the published record. The stages
keep more at each try; the caller gates each result by the whole picture and stops at the first
inside the gate.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prodgen.errors import ProdgenError
from prodgen.openvino_runtime import write_ir


@dataclass(frozen=True)
class KeptLayers:
    description: str
    patterns: tuple[str, ...]
    pixel_convolution: bool = False
    """Also keep the convolution that writes the picture's 3 channels (the decoder's conv_out,
    which OpenVINO's conversion folds into the output scaling and renames)."""


_CONDITIONING = (r".*/conv_in/.*", r".*/conv_out/.*", r".*/time_embedding/.*", r".*/time_emb_proj/.*")
UNET_STAGES = (
    KeptLayers(
        "the timestep conditioning (time embedding and every block's time projection), the first and last convolution",
        _CONDITIONING,
    ),
    KeptLayers("those, and every attention layer (projections and attention)", (*_CONDITIONING, r".*/attn[12]/.*")),
    KeptLayers(
        "those, and the whole transformer blocks (INT8 left to the ResNet convolutions)",
        (*_CONDITIONING, r".*/attentions\.[0-9]+/.*"),
    ),
)
"""The conditioning carries the timestep into every block (an error there shifts the whole
prediction); conv_in reads the latents and conv_out writes the noise estimate, together a
fraction of a percent of the UNet's work. Attention feeds a softmax, where INT8 steps show first;
the transformer blocks' feed-forward and projections come last."""

_DECODER_ENDS = (r".*/post_quant_conv/.*", r".*/decoder/conv_in/.*", r".*/decoder/mid_block/attentions\.[0-9]+/.*")
VAE_DECODER_STAGES = (
    KeptLayers(
        "the latents' convolutions (post_quant_conv, conv_in), the mid-block attention and the pixels' convolution",
        _DECODER_ENDS,
        pixel_convolution=True,
    ),
    KeptLayers(
        "those, and the last up block (full resolution, next to the pixels)",
        (*_DECODER_ENDS, r".*/decoder/up_blocks\.3/.*"),
        pixel_convolution=True,
    ),
)
"""The decoder's ends: the first convolutions read the 4 latent channels, whose every unit is a
patch of 8×8 pixels; the last writes the uint8 picture itself, where an INT8 step is a visible
band. Its one attention feeds a softmax. The full-resolution block is a third of the work."""

STAGES = {"unet": UNET_STAGES, "vae_decoder": VAE_DECODER_STAGES}
QUANTISED_OPS = ("Convolution", "MatMul")


def _writes_pixels(op: Any) -> bool:
    return op.get_type_name() == "Convolution" and op.get_output_partial_shape(0)[1].get_length() == 3


def _kept_ops(model: Any, kept: KeptLayers) -> list[str]:
    """The convolutions and MatMuls of the OpenVINO `model` that `kept` keeps out of INT8, by name."""
    patterns = [re.compile(pattern) for pattern in kept.patterns]
    return sorted(
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() in QUANTISED_OPS
        and (
            any(p.fullmatch(op.get_friendly_name()) for p in patterns)
            or (kept.pixel_convolution and _writes_pixels(op))
        )
    )


def quantise(
    part: str, xml_path: Path, calibration: Sequence[dict[str, np.ndarray]], out_xml: Path, kept: KeptLayers
) -> list[str]:
    """`xml_path` (the `part`'s IR) quantised to INT8 on `calibration` (its recorded feeds) into `out_xml`;
    returns the ops kept out of it."""
    try:
        import nncf
        import openvino
    except ImportError as missing:
        raise ProdgenError(f"INT8 components need NNCF: pip install 'prodgen[openvino]' ({missing})") from None
    if not calibration:
        raise ProdgenError(f"no calibration feeds were recorded for the {part}")
    nncf.set_log_level(logging.WARNING)  # one INFO line per op it leaves alone would bury the progress lines
    model = openvino.Core().read_model(str(xml_path))
    names = _kept_ops(model, kept)
    mode = {"model_type": nncf.ModelType.TRANSFORMER} if part == "unet" else {"preset": nncf.QuantizationPreset.MIXED}
    quantised = nncf.quantize(
        model,
        nncf.Dataset(list(calibration)),
        subset_size=len(calibration),
        # by name, and by pattern for the other ops of those layers (a softmax, an addition)
        ignored_scope=nncf.IgnoredScope(names=names, patterns=list(kept.patterns), validate=False),
        **mode,
    )
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    write_ir(quantised, out_xml)
    return names
