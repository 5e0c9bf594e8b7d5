"""`prodgen-export`: a checkpoint in, a verified model version in a Triton repository out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prodgen import zoo
from prodgen.checkpoints import check_checkpoint_file
from prodgen.cli_support import VersionOption, console, error_line, run_app
from prodgen.errors import ProdgenError
from prodgen.export.fidelity import ssim_text
from prodgen.export.pipeline import ExportRequest, ExportResult, export_model
from prodgen.export.stable_diffusion import DEFAULT_PIPELINE_BATCHING
from prodgen.export.stable_diffusion_cli import STABLE_DIFFUSION, OpenVinoRequest, export_stable_diffusion_command
from prodgen.export.stable_diffusion_openvino import PictureGate
from prodgen.export.zoo_listing import print_zoo
from prodgen.model_repository.config import BatchingOptions
from prodgen.model_repository.publish import DEFAULT_REPOSITORY, check_repository
from prodgen.model_repository.stable_diffusion import DEFAULTS, request_defaults
from prodgen.names import check_model_name
from prodgen.openvino_runtime import MISSING, openvino_available
from prodgen.progress import ProgressBoard
from prodgen.terminal_table import print_table

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _export_one(request: ExportRequest) -> ExportResult:
    out = console()
    if request.checkpoint is None:
        out.print(f"{request.served_name}: no --checkpoint given, using seeded random weights (seed {request.seed})")
    with ProgressBoard() as board, board.task(request.served_name) as task:
        result = export_model(request, step=lambda what: task.step(f"{request.served_name}: {what}"))
    for note in result.loading_notes:
        out.print(f"{request.served_name}: {note}")
    out.print(f"{request.served_name}: parity ONNX Runtime vs PyTorch: {result.parity.describe()}")
    if result.queue is not None:
        out.print(f"{request.served_name}: server queue: {result.queue.describe()}")
    out.print(f"{request.served_name}: published version {result.published.version} at {result.published.version_dir}")
    if result.fp16 is not None and result.fp16_published is not None:
        out.print(f"{request.served_name}: FP16 fidelity: {result.fp16.final.describe()}")
        for note in result.fp16_published.notes:
            out.print(f"{request.served_name}: {note}")
    for variant in result.cpu_variants:
        for note in variant.notes:
            out.print(f"{request.served_name}: {note}", soft_wrap=True)
    return result


def _kept_text(kept: tuple[str, ...], output_chain: tuple[str, ...]) -> str:
    """The layers kept in FP32, the output chain (kept in every model) as one entry."""
    others = [name for name in kept if name not in output_chain]
    chain = [f"uint8 output chain ({len(output_chain)} ops)"] if output_chain else []
    return ", ".join(chain + others) or "-"


def _print_fp16_table(results: list[ExportResult], failed: list[str]) -> None:
    headers = ("model", "PSNR dB", "lowest SSIM", "max |Δ|", "NaN/Inf", "kept FP32", "artefacts")
    rows = []
    for result in results:
        if result.fp16 is None or result.fp16_published is None:
            continue
        final = result.fp16.final
        published = [result.fp16_published.fp16] + ([result.fp16_published.plan] if result.fp16_published.plan else [])
        rows.append(
            [
                result.published.model_dir.name,
                f"{final.psnr_db:.2f}",
                ssim_text(final.lowest_ssim),
                f"{final.max_abs_diff:g}",
                str(final.nonfinite),
                _kept_text(result.fp16.kept_fp32, result.fp16.graph.output_chain),
                ", ".join(f"{p.model_dir.name}/{p.version}" for p in published),
            ]
        )
    for served_name in failed:
        rows.append([served_name, "failed", "", "", "", "", "none (error above)"])
    print_table(
        console(),
        headers,
        rows,
        title="FP16 fidelity (FP16 emulation vs FP32 PyTorch)",
        wrap=("model", "kept FP32", "artefacts"),
        left=("model", "kept FP32", "artefacts"),
    )


def _picture_gate(int8: bool, min_psnr_db: float | None, min_ssim: float | None) -> PictureGate:
    """The INT8 stable-diffusion parts' picture gate: the given thresholds over PictureGate's."""
    if not int8 and (min_psnr_db, min_ssim) != (None, None):
        raise ProdgenError("--int8-min-psnr and --int8-min-ssim gate the INT8 UNet and VAE decoder: add --int8")
    given = {"min_psnr_db": min_psnr_db, "min_ssim": min_ssim}
    return PictureGate(**{key: value for key, value in given.items() if value is not None})


def _checkpoint_for(files: list[Path]) -> Path | tuple[Path, ...] | None:
    """No file: random weights; one file: that file; several: one per named part (the loader checks the count)."""
    if not files:
        return None
    return files[0] if len(files) == 1 else tuple(files)


@app.command(no_args_is_help=True)
def export(
    models: Annotated[list[str] | None, typer.Argument(metavar="MODEL", help="Zoo model names (see --list).")] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="PATH",
            help="Trained weights (.pth/.pt/.safetensors); random weights if omitted. Models whose upstream "
            "ships several weight files take one --checkpoint per file, matched by order "
            "(adain: --checkpoint vgg_normalised.pth --checkpoint decoder.pth). stable-diffusion: a diffusers "
            "save_pretrained folder, or a single-file .safetensors/.ckpt (see --diffusers-config).",
        ),
    ] = None,
    repository: Annotated[Path, typer.Option(help="Triton model repository to publish into.")] = DEFAULT_REPOSITORY,
    name: Annotated[str | None, typer.Option(help="Served model name; defaults to the zoo name.")] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="Triton max_batch_size.")] = BatchingOptions.max_batch_size,
    max_queue_delay_us: Annotated[
        int, typer.Option(min=0, help="Dynamic batching queue delay.")
    ] = BatchingOptions.max_queue_delay_us,
    instances: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Model instances per device [default: {BatchingOptions.instance_count}; stable-diffusion: "
            f"{DEFAULT_PIPELINE_BATCHING.instance_count} pipeline instances, the pictures served at once, "
            "with one instance per component].",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for random weights when no checkpoint is given.")
    ] = ExportRequest.seed,
    all_models: Annotated[bool, typer.Option("--all", help="Export every zoo model.")] = False,
    list_models: Annotated[
        bool, typer.Option("--list", help="Show the zoo: each model's task, inputs, output and image sides.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="With --list: print the zoo as JSON, for machines.")] = False,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Also publish <name>_fp16 (FP16 ONNX) and, with TensorRT, <name>_trt.")
    ] = False,
    min_psnr: Annotated[
        float, typer.Option(help="FP16 fidelity gate: minimum PSNR against FP32 PyTorch, dB.")
    ] = ExportRequest.min_psnr_db,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Also quantise to INT8 (QDQ ONNX, calibrated on photos/seeded latents) and publish <name>_int8 "
            "where inside the INT8 gate and faster than FP32 ONNX Runtime here. stable-diffusion (with --openvino): "
            "the UNet and the VAE decoder in INT8 on OpenVINO, calibrated on the pipeline's own pictures, each in "
            "place of the float one where the pictures stay inside the gate and it is faster (where only one of "
            "them fits the gate, the one that saves more at the pipeline's default steps).",
        ),
    ] = False,
    int8_min_psnr: Annotated[
        float | None,
        typer.Option(
            help="INT8 fidelity gate: minimum PSNR, dB, of the INT8 model's outputs against FP32 PyTorch "
            f"[default: {ExportRequest.int8_min_psnr_db:g}]; stable-diffusion: of the pipeline's pictures with "
            f"the INT8 parts against the FP32 pipeline's [default: {PictureGate.min_psnr_db:g}].",
        ),
    ] = None,
    int8_min_ssim: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="INT8 fidelity gate: minimum SSIM of the least similar picture "
            f"[default: {ExportRequest.int8_min_ssim:g}; stable-diffusion: {PictureGate.min_ssim:g}].",
        ),
    ] = None,
    openvino: Annotated[
        bool,
        typer.Option(
            "--openvino",
            help="Also race OpenVINO against ONNX Runtime here (batch 1 and 4) and publish <name>_openvino "
            "(OpenVINO IR for Triton's openvino backend) where it wins inside the FP16 gate (--min-psnr); "
            "with --int8 also <name>_int8_openvino (the INT8 graph on OpenVINO, inside the INT8 gate) where it wins. "
            "stable-diffusion: OpenVINO IR of the text encoder, UNet and VAE decoder, gated by the pipeline's "
            "pictures against the FP32 pipeline's and raced in them; the pipeline is pointed at those that pass.",
        ),
    ] = False,
    openvino_side: Annotated[
        int | None,
        typer.Option(
            min=8,
            help="stable-diffusion --openvino: the side of the gate's pictures, where it is raced too "
            "[default: the model's optimal side].",
        ),
    ] = None,
    openvino_even_if_slower: Annotated[
        bool,
        typer.Option(
            help="stable-diffusion --openvino: publish the parts inside the gate even where they are not faster "
            "here (the serving CPU differs from this one).",
        ),
    ] = False,
    latency_budget_ms: Annotated[
        float,
        typer.Option(
            min=0,
            help="Bound the server's queue to what the model answers within this budget, from its measured "
            "throughput; requests beyond it are refused (UNAVAILABLE) at once. 0: unbounded queue.",
        ),
    ] = 5000.0,
    lora: Annotated[
        list[str] | None,
        typer.Option(
            metavar="FILE[:SCALE]",
            help="stable-diffusion only: fuse this LoRA (kohya/A1111 or diffusers/PEFT safetensors) into the "
            "UNet and text encoder before export, at SCALE (default 1); repeatable, fused in order.",
        ),
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option(
            help="stable-diffusion only: the folder's weights variant to load (fp16: *.fp16.safetensors), "
            "upcast to FP32; by default the plain weights, or the only variant the folder holds."
        ),
    ] = None,
    diffusers_config: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="stable-diffusion single-file checkpoints: a diffusers folder of the same model whose configs and "
            "tokenizers to use (model_index.json, component configs, tokenizer files; weights not read); by default "
            "diffusers' own repository for the checkpoint's family, from the local Hugging Face cache (never downloaded).",
        ),
    ] = None,
    preview_decoder: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="stable-diffusion: a tiny autoencoder (diffusers AutoencoderTiny folder: madebyollin/taesd, or taesdxl "
            "for SDXL) published as NAME_vae_decoder_taesd with a second pipeline NAME_preview decoding with it: "
            "fast previews at lower fidelity.",
        ),
    ] = None,
    default_steps: Annotated[
        int | None,
        typer.Option(
            help=f"stable-diffusion: denoising steps a request gets when it names none [default: {DEFAULTS['default_steps']}]."
        ),
    ] = None,
    default_guidance: Annotated[
        float | None,
        typer.Option(
            help=f"stable-diffusion: guidance scale a request gets when it names none [default: {DEFAULTS['default_guidance']}]."
        ),
    ] = None,
    default_scheduler: Annotated[
        str | None,
        typer.Option(
            help=f"stable-diffusion: scheduler a request gets when it names none [default: {DEFAULTS['default_scheduler']}]."
        ),
    ] = None,
    version: VersionOption = False,
) -> None:
    """Export zoo models to ONNX, verify them against PyTorch on real photos, and publish them.

    With several models (or --all) a model that fails is reported and the others go on;
    the exit status is non-zero if any failed."""
    if list_models:
        print_zoo(console(), json_out)
        return
    if models == [STABLE_DIFFUSION]:
        batching = BatchingOptions(
            max_batch_size=max_batch,
            max_queue_delay_us=max_queue_delay_us,
            instance_count=instances or DEFAULT_PIPELINE_BATCHING.instance_count,
        )
        defaults = request_defaults(default_steps, default_guidance, default_scheduler)
        if openvino and not openvino_available():
            raise ProdgenError(f"--openvino: {MISSING}")
        if int8 and not openvino:
            raise ProdgenError(
                "--int8 for stable-diffusion quantises the UNet and VAE decoder on OpenVINO: add --openvino"
            )
        int8_gate = _picture_gate(int8, int8_min_psnr, int8_min_ssim)
        export_stable_diffusion_command(
            checkpoint or [], repository, name, batching, fp16, min_psnr, lora, variant, defaults, diffusers_config,
            OpenVinoRequest(openvino_side, not openvino_even_if_slower, int8, int8_gate) if openvino else None,
            preview_decoder,
        )  # fmt: skip
        return
    if openvino_side is not None or openvino_even_if_slower:
        raise ProdgenError("--openvino-side and --openvino-even-if-slower apply to stable-diffusion exports only")
    if lora or variant or diffusers_config or preview_decoder:
        raise ProdgenError(
            "--lora, --variant, --diffusers-config and --preview-decoder apply to stable-diffusion exports only"
        )
    default_options = {
        "--default-steps": default_steps,
        "--default-guidance": default_guidance,
        "--default-scheduler": default_scheduler,
    }
    given = [option for option, value in default_options.items() if value is not None]
    if given:
        raise ProdgenError(f"{', '.join(given)}: only for {STABLE_DIFFUSION} (a diffusion pipeline's served defaults)")
    if all_models == bool(models):
        raise ProdgenError("give MODEL names or --all (prodgen-export --list shows the zoo)")
    chosen = zoo.names() if all_models else list(dict.fromkeys(models or []))
    if len(chosen) > 1 and (checkpoint or name is not None):
        raise ProdgenError("--checkpoint and --name apply to one model; export models with checkpoints one at a time")
    for zoo_name in chosen:
        zoo.get(zoo_name)  # an unknown name, a wrong file or folder fails before any export starts
    if name is not None:  # so does a name the server could not serve, with the variants' suffixes
        variants = (["_fp16", "_trt"] if fp16 else []) + (["_int8"] if int8 else [])
        variants += (["_openvino"] if openvino else []) + (["_int8_openvino"] if int8 and openvino else [])
        for suffix in ["", *variants]:
            check_model_name(name + suffix)
    if openvino and not openvino_available():
        raise ProdgenError(f"--openvino: {MISSING}")
    for path in checkpoint or []:
        check_checkpoint_file(path)
    check_repository(repository, must_exist=False)
    batching = BatchingOptions(
        max_batch_size=max_batch,
        max_queue_delay_us=max_queue_delay_us,
        instance_count=instances or BatchingOptions.instance_count,
    )
    results: list[ExportResult] = []
    failed: list[str] = []
    for zoo_name in chosen:
        entry = zoo.get(zoo_name)
        request = ExportRequest(
            model=entry,
            repository=repository,
            served_name=entry.name if name is None else name,
            checkpoint=_checkpoint_for(checkpoint or []),
            seed=seed,
            batching=batching,
            fp16=fp16,
            min_psnr_db=min_psnr,
            latency_budget_s=latency_budget_ms / 1000 if latency_budget_ms > 0 else None,
            int8=int8,
            int8_min_psnr_db=ExportRequest.int8_min_psnr_db if int8_min_psnr is None else int8_min_psnr,
            int8_min_ssim=ExportRequest.int8_min_ssim if int8_min_ssim is None else int8_min_ssim,
            openvino=openvino,
        )
        try:
            results.append(_export_one(request))
        except ProdgenError as error:
            if len(chosen) == 1:
                raise
            failed.append(request.served_name)
            console().print(error_line(str(error)), soft_wrap=True)
    if fp16 and len(chosen) > 1:
        _print_fp16_table(results, failed)
    if failed:
        raise ProdgenError(
            f"{len(failed)} of {len(chosen)} models failed: {', '.join(failed)}; the others were published"
        )


def main() -> None:
    run_app(app)
