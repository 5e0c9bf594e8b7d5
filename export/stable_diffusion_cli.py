"""`prodgen-export stable-diffusion --checkpoint DIR --name NAME [--fp16] [--openvino] [--lora FILE[:SCALE] ...]`:
what it prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prodgen.cli_support import console
from prodgen.errors import ProdgenError
from prodgen.export.stable_diffusion import DiffusionExportResult, export_stable_diffusion
from prodgen.export.stable_diffusion_openvino import OpenVinoComponents, PictureGate, publish_openvino_components
from prodgen.model_facts import config_facts
from prodgen.model_repository.config import BatchingOptions, parse_pbtxt
from prodgen.model_repository.publish import CONFIG_FILE
from prodgen.progress import ProgressBoard
from prodgen.zoo.stable_diffusion_lora import Lora
from prodgen.zoo.stable_diffusion_preview import PREVIEW_NOTE

STABLE_DIFFUSION = "stable-diffusion"
DEFAULT_NAME = "stable_diffusion"


@dataclass(frozen=True)
class OpenVinoRequest:
    """`--openvino`: the gate pictures' side (None: the model's optimal side), whether a part must be faster,
    whether to try the UNet and the VAE decoder in INT8 (`--int8`), and the gate of their pictures."""

    side: int | None = None
    require_faster: bool = True
    int8: bool = False
    int8_gate: PictureGate = PictureGate()


def export_stable_diffusion_command(
    checkpoints: list[Path],
    repository: Path,
    name: str | None,
    batching: BatchingOptions,
    fp16: bool,
    min_psnr: float,
    loras: list[str] | None = None,
    variant: str | None = None,
    defaults: dict[str, str] | None = None,
    diffusers_config: Path | None = None,
    openvino: OpenVinoRequest | None = None,
    preview_decoder: Path | None = None,
) -> DiffusionExportResult:
    """`defaults`: the served request defaults (`request_defaults`), checked before the long export starts."""
    if len(checkpoints) != 1:
        raise ProdgenError(
            f"{STABLE_DIFFUSION} takes one --checkpoint: the folder diffusers' save_pretrained wrote, or one "
            "single-file .safetensors/.ckpt "
            f"({len(checkpoints)} given)"
        )
    fused = [Lora.parse(text) for text in loras or []]
    out = console()
    served = name or DEFAULT_NAME
    with ProgressBoard() as board, board.task(served) as task:
        result = export_stable_diffusion(
            checkpoints[0],
            repository,
            served,
            batching,
            fp16,
            min_psnr,
            step=task.step,
            loras=fused,
            variant=variant,
            defaults=defaults,
            diffusers_config=diffusers_config,
            preview_decoder=preview_decoder,
        )
        components = (
            publish_openvino_components(
                repository,
                served,
                openvino.side,
                require_faster=openvino.require_faster,
                int8=openvino.int8,
                int8_gate=openvino.int8_gate,
                step=task.step,
            )
            if openvino is not None
            else None
        )
    for lora in fused:
        out.print(f"{served}: fused LoRA {lora.path} at scale {lora.scale:g}")
    for component in result.components:
        out.print(f"{component.name}: parity ONNX Runtime vs PyTorch: {component.parity.describe()}")
        out.print(
            f"{component.name}: published version {component.published.version} at {component.published.version_dir}"
        )
        if component.fp16 is not None and component.fp16_published is not None:
            kept = len(component.fp16.kept_by_fallback)
            out.print(
                f"{component.name}: FP16 fidelity: {component.fp16.final.describe()}"
                + (f" (first try: {component.fp16.first.describe()}; {kept} layers kept in FP32)" if kept else "")
            )
            for note in component.fp16_published.notes:
                out.print(f"{component.name}: {note}")
    if result.preview_decoder is not None and result.preview_pipeline is not None:
        preview = result.preview_decoder
        out.print(f"{preview.name}: parity ONNX Runtime vs PyTorch: {preview.parity.describe()}")
        out.print(
            f"{result.preview_pipeline.model_dir.name}: preview pipeline published, decoding with {preview.name} "
            f"({PREVIEW_NOTE})"
        )
    if components is not None:
        _print_openvino(repository, served, components)
    # what the pipeline serves (the export's given defaults over the family's over diffusers'), read as clients do
    served_facts = config_facts(parse_pbtxt((result.pipeline.model_dir / CONFIG_FILE).read_text())).facts.diffusion
    assert served_facts is not None, "a published pipeline carries its diffusion facts"
    out.print(f"{served}: pipeline model published at {result.pipeline.version_dir}")
    out.print(
        f"{served}: served defaults: {served_facts.default_steps} steps, "
        f"guidance {served_facts.default_guidance:g}, scheduler {served_facts.default_scheduler}"
    )
    return result


def _print_openvino(repository: Path, served: str, components: OpenVinoComponents) -> None:
    out = console()
    out.print(f"{served}: OpenVINO ({components.precision} on this CPU) gate: {components.describe_gate()}")
    for race in components.races:
        out.print(f"{served}: OpenVINO race: {race.describe()}")
    out.print(
        f"{served}: a gate picture took {components.openvino_picture_s:.2f} s with the OpenVINO components, "
        f"{components.onnxruntime_picture_s:.2f} s with ONNX Runtime"
    )
    for note in components.notes:
        out.print(f"{served}: OpenVINO: {note}")
    for part, published in components.published.items():
        out.print(f"{served}: {part} → {published.model_dir.name} version {published.version} (OpenVINO IR)")
    if components.published:
        out.print(
            f"{served}: the pipeline calls the OpenVINO components, one picture at a time (the OpenVINO UNet "
            "takes no batch to share); back to ONNX Runtime and its pictures in flight: "
            f"python -m prodgen.model_repository.pipeline_components {repository} {served} --variant onnx"
        )
