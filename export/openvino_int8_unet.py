"""A diffusion UNet's OpenVINO IR quantised to INT8, activations included, by NNCF (OpenVINO's own quantiser).

Post-training quantisation in NNCF's transformer mode (SmoothQuant for the MatMuls, fast bias
correction) on calibration feeds recorded from the pipeline's own denoising trajectories, so the
activation ranges are those of real latents at every timestep the scheduler visits, not of
random tensors. Layers known to be sensitive stay at the plugin's floating-point precision, named
by op in the published record. The stages keep more at each try; the caller gates each result
by the whole picture and stops at the first inside the gate.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prodgen.errors import ProdgenError


@dataclass(frozen=True)
class KeptLayers:
    description: str
    patterns: tuple[str, ...]


_CONDITIONING = (r".*/conv_in/.*", r".*/conv_out/.*", r".*/time_embedding/.*", r".*/time_emb_proj/.*")
KEPT_STAGES = (
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

QUANTISED_OPS = ("Convolution", "MatMul")


def kept_ops(xml_path: Path, kept: KeptLayers) -> list[str]:
    """The convolutions and MatMuls of the IR that `kept` keeps out of INT8, by name."""
    import openvino

    model = openvino.Core().read_model(str(xml_path))
    patterns = [re.compile(pattern) for pattern in kept.patterns]
    return sorted(
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() in QUANTISED_OPS and any(p.fullmatch(op.get_friendly_name()) for p in patterns)
    )


def quantise_unet(
    xml_path: Path, calibration: Sequence[dict[str, np.ndarray]], out_xml: Path, kept: KeptLayers
) -> list[str]:
    """`xml_path` quantised to INT8 on `calibration` (UNet feeds) into `out_xml`; returns the ops kept out of it."""
    try:
        import nncf
        import openvino
    except ImportError as missing:
        raise ProdgenError(f"the INT8 UNet needs NNCF: pip install 'prodgen[openvino]' ({missing})") from None
    if not calibration:
        raise ProdgenError("no calibration feeds were recorded for the UNet")
    nncf.set_log_level(logging.WARNING)  # one INFO line per op it leaves alone would bury the progress lines
    model = openvino.Core().read_model(str(xml_path))
    quantised = nncf.quantize(
        model,
        nncf.Dataset(list(calibration)),
        subset_size=len(calibration),
        model_type=nncf.ModelType.TRANSFORMER,
        ignored_scope=nncf.IgnoredScope(patterns=list(kept.patterns), validate=False),
    )
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    openvino.save_model(quantised, str(out_xml), compress_to_fp16=False)
    return kept_ops(xml_path, kept)
