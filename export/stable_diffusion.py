"""`prodgen-export stable-diffusion`: a `save_pretrained` folder in, six (SDXL: seven) Triton models out.

The text encoder(s), UNet, VAE decoder and VAE encoder are each exported to ONNX, verified
against PyTorch (uint8 pictures within one level, float outputs within 1e-4 of PyTorch's
scale) and published as `NAME_<component>`; then the pipeline model `NAME` that calls them
(model_repository/stable_diffusion.py) is published, then the restage model `NAME_restage` that
calls the pipeline. Components go first, so by the time a polling server sees a model, what it
calls is there.

The UNet is saved with ONNX external data (`model.onnx` + `model.onnx.data`): SD 1.5's is
3.4 GB in FP32, SDXL's 10.3 GB, over protobuf's 2 GB limit, and the tiny test UNets take the
same path. Memory stays near one copy of the UNet: its weights are gathered into the data file
one tensor at a time (external_data.py), its PyTorch weights are released once its reference
outputs are computed and before ONNX Runtime loads the graph, and the FP16 gate works on the
weightless graph with the weights read from the data files (fp16_graph.py).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch

from prodgen.canary import write_canary
from prodgen.errors import ProdgenError
from prodgen.export.external_data import gather_external_data, save_with_external_data
from prodgen.export.fidelity import (
    DEFAULT_MIN_PSNR_DB,
    Fp16Outcome,
    describe_ssim,
    fp16_with_fallback,
    lowest_of,
    lowest_ssim,
)
from prodgen.export.fp16_publish import Fp16Published, publish_fp16
from prodgen.export.onnx_export import trace_onnx
from prodgen.export.verify import compare_outputs, onnx_session, run_pytorch
from prodgen.model_repository.config import BatchingOptions, give_memory_back, onnxruntime_config, to_pbtxt
from prodgen.model_repository.pipeline_components import PREVIEW_PIPELINE_SUFFIX
from prodgen.model_repository.publish import PublishedVersion, publish
from prodgen.model_repository.stable_diffusion import (
    RESTAGE_SUFFIX,
    PipelineFacts,
    pipeline_config_text,
    restage_config_text,
    write_pipeline_version,
    write_restage_version,
)
from prodgen.zoo.stable_diffusion import StableDiffusion, load_stable_diffusion
from prodgen.zoo.stable_diffusion_graphs import FLOAT_TOLERANCE, VAE_DECODER, Component, components
from prodgen.zoo.stable_diffusion_lora import Lora, describe_loras, fuse_loras
from prodgen.zoo.stable_diffusion_preview import (
    PREVIEW_NOTE,
    PREVIEW_SUFFIX,
    load_preview_decoder,
    preview_component,
)

Step = Callable[[str], None]

OPSET = 18
ONNX_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"
PROVENANCE_FILE = "prodgen-export.json"
DEFAULT_PIPELINE_BATCHING = BatchingOptions(max_batch_size=4, instance_count=4)
"""Up to 4 pictures a request, and 4 requests worked on at once (pipeline instances)."""
COMPONENT_INSTANCES = 1
"""One instance per component: one copy of its weights in memory, and every core for each call
(a thread per core, prodgen.serve.session_threads). A second instance would hold a second copy
(SD 1.5's UNet: 3.4 GB) only to split the same cores; concurrent pictures share UNet calls
through the dynamic batcher instead."""
UNET_QUEUE_DELAY_US = 5_000
"""How long the UNet's dynamic batcher waits for company. Pictures in flight together send their
next step within a few milliseconds of each other (the scheduler step between two UNet calls is
numpy on small latents); without the wait the first to arrive ran alone and the rest after it,
so the pictures drifted apart. A step costs seconds on a CPU, so 5 ms is under 0.5 % of it."""


def component_batching(pipeline: BatchingOptions, suffix: str) -> BatchingOptions:
    """A component's batching for the pipeline's: rows for every picture the pipeline instances
    have in flight, guidance pairs included (2 rows a picture), in one call; one instance."""
    rows = 2 * max(pipeline.max_batch_size, pipeline.instance_count)
    delay = max(pipeline.max_queue_delay_us, UNET_QUEUE_DELAY_US) if suffix == "unet" else pipeline.max_queue_delay_us
    return BatchingOptions(rows, delay, COMPONENT_INSTANCES)


FP16_COMPONENTS = ("unet", "vae_decoder", "vae_encoder")
"""The FP16 gate covers what runs at every step and the VAE (whose decoder is known to overflow)."""


@dataclass(frozen=True)
class ComponentParity:
    """ONNX Runtime against PyTorch for one component, over its verification inputs."""

    values: int
    max_abs_diff: float
    reference_scale: float
    """max |PyTorch| (floats) or 255 (uint8): the tolerance for floats is relative to max(1, this)."""
    uint8: bool
    fraction_within_one_level: float
    lowest_ssim: float | None
    """SSIM of the least similar output picture (or latent plane); None below SSIM's window size."""

    @property
    def passed(self) -> bool:
        if self.uint8:
            return self.max_abs_diff <= 1
        return self.max_abs_diff <= FLOAT_TOLERANCE * max(1.0, self.reference_scale)

    def describe(self) -> str:
        if self.uint8:
            return (
                f"max |Δ| {self.max_abs_diff:g} uint8 levels over {self.values:,} values (required ≤ 1), "
                f"{100 * self.fraction_within_one_level:.4f} % within 1 level, {describe_ssim(self.lowest_ssim)}"
            )
        return (
            f"max |Δ| {self.max_abs_diff:.3g} over {self.values:,} values, max |PyTorch| {self.reference_scale:.3g} "
            f"(required ≤ {FLOAT_TOLERANCE:g} × max(1, max |PyTorch|)), {describe_ssim(self.lowest_ssim)}"
        )


@dataclass(frozen=True)
class ComponentResult:
    name: str
    published: PublishedVersion
    parity: ComponentParity
    fp16: Fp16Outcome | None = None
    fp16_published: Fp16Published | None = None


@dataclass(frozen=True)
class DiffusionExportResult:
    pipeline: PublishedVersion
    components: list[ComponentResult]
    restage: PublishedVersion
    preview_decoder: ComponentResult | None = None
    preview_pipeline: PublishedVersion | None = None


def _parity(component: Component, onnx_path: Path) -> tuple[ComponentParity, list[list[np.ndarray]]]:
    names = [spec.name for spec in component.spec.outputs]
    reference = [run_pytorch(component.graph, component.spec, inputs) for inputs in component.cases]
    if component.external_data:
        # The PyTorch weights are done with: release them before ONNX Runtime loads its own copy.
        component.graph.to("meta")
    session = onnx_session(onnx_path)
    wanted: list[np.ndarray] = []
    got: list[np.ndarray] = []
    for inputs, expected in zip(component.cases, reference, strict=True):
        actual = session.run(names, inputs)
        for name, want, have in zip(names, expected, actual, strict=True):
            if want.shape != have.shape:
                raise ProdgenError(f"{component.suffix}: ONNX gave {name} of shape {have.shape}, PyTorch {want.shape}")
        wanted += expected
        got += actual
    ssim = lowest_of(lowest_ssim(w, g) for w, g in zip(wanted, got, strict=True))
    if wanted[0].dtype == np.uint8:
        levels = compare_outputs(wanted, got, 1.0)
        parity = ComponentParity(
            levels.values, levels.max_abs_diff, 255.0, True, levels.fraction_within_one_level, ssim
        )
        return parity, reference
    differences = np.concatenate([np.abs(w.astype(np.float64) - g).ravel() for w, g in zip(wanted, got, strict=True)])
    scale = max(float(np.abs(w).max()) for w in wanted)
    return ComponentParity(int(differences.size), float(differences.max()), scale, False, 1.0, ssim), reference


def _export(component: Component, folder: Path) -> Path:
    """ONNX of one component in `folder`; external data beside it where the component asks for it."""
    onnx_path = folder / ONNX_FILE
    if not component.external_data:
        trace_onnx(component.graph, component.spec, component.cases[0], onnx_path, opset=OPSET)
        return onnx_path
    traced = folder / "traced"
    traced.mkdir()
    # Over 2 GB the exporter writes one file per weight beside the graph; they are gathered into
    # one data file, the layout Triton's onnxruntime backend expects.
    trace_onnx(component.graph, component.spec, component.cases[0], traced / ONNX_FILE, opset=OPSET)
    gather_external_data(traced / ONNX_FILE, onnx_path, EXTERNAL_DATA_FILE)
    shutil.rmtree(traced)
    onnx.checker.check_model(str(onnx_path), full_check=True)
    return onnx_path


def _provenance(
    model: StableDiffusion, component: str, parity: ComponentParity, loras: Sequence[Lora]
) -> dict[str, object]:
    import diffusers
    import transformers

    return {
        "stable_diffusion_checkpoint": str(model.folder.resolve()),
        "family": model.family,
        "loras_fused": [lora.provenance() for lora in loras],
        "component": component,
        "parity_onnxruntime_vs_pytorch": {**asdict(parity), "passed": parity.passed},
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
        },
    }


def _export_component(
    model: StableDiffusion,
    component: Component,
    repository: Path,
    served_name: str,
    batching: BatchingOptions,
    fp16: bool,
    min_psnr_db: float,
    step: Step,
    loras: Sequence[Lora] = (),
) -> ComponentResult:
    with tempfile.TemporaryDirectory(prefix="prodgen-export-sd-") as work:
        step(f"{served_name}: exporting ONNX")
        onnx_path = _export(component, Path(work))
        step(f"{served_name}: verifying ONNX Runtime against PyTorch")
        parity, reference = _parity(component, onnx_path)
        if not parity.passed:
            raise ProdgenError(f"{served_name}: ONNX parity check failed: {parity.describe()}; nothing was published")
        provenance = _provenance(model, component.suffix, parity, loras)
        # the canary `prodgen deploy` replays before a version takes traffic: one verification row and
        # ONNX Runtime's outputs for it, as every zoo export records
        names = [spec.name for spec in component.spec.outputs]
        canary_inputs = {input_name: array[:1] for input_name, array in component.cases[0].items()}
        canary_outputs = dict(zip(names, onnx_session(onnx_path).run(names, canary_inputs), strict=True))

        def write_version(folder: Path) -> None:
            for item in Path(work).iterdir():
                if item.is_file():
                    shutil.copyfile(item, folder / item.name)
            canary = write_canary(folder, canary_inputs, canary_outputs, component.spec.min_fraction_within_one_level)
            record = {**provenance, "canary": canary}
            (folder / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")

        step(f"{served_name}: publishing")
        published = publish(
            repository,
            served_name,
            write_version,
            lambda _v: to_pbtxt(give_memory_back(onnxruntime_config(component.spec, served_name, batching))),
        )
        outcome = None
        fp16_published = None
        if fp16 and component.suffix in FP16_COMPONENTS:
            step(f"{served_name}: converting to FP16 and checking its fidelity")
            weights = onnx_path.parent if component.external_data else None
            outcome = fp16_with_fallback(
                onnx.load(str(onnx_path), load_external_data=weights is None),
                component.spec,
                component.cases,
                reference,
                min_psnr_db,
                served_name,
                weights,
            )
            fp16_path = Path(work) / "fp16" / ONNX_FILE
            fp16_path.parent.mkdir()
            if weights is None:
                onnx.save(outcome.graph.model, str(fp16_path))
            else:
                save_with_external_data(outcome.graph.model, weights, fp16_path, EXTERNAL_DATA_FILE)
                onnx.checker.check_model(str(fp16_path), full_check=True)
            fp16_published = publish_fp16(
                component.spec, served_name, repository, batching, onnx_path, fp16_path, outcome, provenance
            )
    return ComponentResult(served_name, published, parity, outcome, fp16_published)


def export_stable_diffusion(
    checkpoint: Path,
    repository: Path,
    name: str,
    batching: BatchingOptions = DEFAULT_PIPELINE_BATCHING,
    fp16: bool = False,
    min_psnr_db: float = DEFAULT_MIN_PSNR_DB,
    step: Step = lambda _: None,
    loras: Sequence[Lora] = (),
    variant: str | None = None,
    defaults: dict[str, str] | None = None,
    diffusers_config: Path | None = None,
    preview_decoder: Path | None = None,
) -> DiffusionExportResult:
    """Export, verify and publish the four components and the pipeline model `name`.

    `batching.max_batch_size` is the pictures per pipeline request and `batching.instance_count`
    the requests served at once; the components take twice as many rows as pictures in flight,
    since classifier-free guidance runs both halves in one UNet call (`component_batching`). `loras` are
    fused into the UNet and text encoder first, in order; the published models record them. `variant`
    picks a weights variant of the folder (None: plain weights, or the only variant it holds); `diffusers_config`
    the configs of a single-file checkpoint (`load_stable_diffusion`). `defaults`:
    the served request defaults given for this export (`request_defaults`), over the family's own.
    `preview_decoder`: a TAESD folder (zoo/stable_diffusion_preview.py), published as
    `NAME_vae_decoder_taesd` with a second pipeline `NAME_preview` that decodes with it."""
    step("loading the checkpoint")
    model = load_stable_diffusion(checkpoint, variant, diffusers_config)
    taesd = load_preview_decoder(preview_decoder, model) if preview_decoder is not None else None
    if loras:
        step(f"fusing {len(loras)} LoRA(s)")
        fuse_loras(model, loras)
    results = []
    preview = None
    with torch.no_grad():
        for component in components(model):
            if component.suffix == VAE_DECODER and taesd is not None:
                preview = _export_component(
                    model,
                    preview_component(component, taesd),
                    repository,
                    f"{name}_{PREVIEW_SUFFIX}",
                    component_batching(batching, VAE_DECODER),
                    False,
                    min_psnr_db,
                    step,
                )
            results.append(
                _export_component(
                    model,
                    component,
                    repository,
                    f"{name}_{component.suffix}",
                    component_batching(batching, component.suffix),
                    fp16,
                    min_psnr_db,
                    step,
                    loras,
                )
            )
    restage_name = name + RESTAGE_SUFFIX
    facts = PipelineFacts.of(
        model,
        {result.name.removeprefix(f"{name}_"): result.name for result in results},
        restage_name,
        describe_loras(loras),
        defaults,
    )
    step(f"{name}: publishing the pipeline model")
    pipeline = publish(
        repository,
        name,
        lambda folder: write_pipeline_version(folder, model, facts),
        lambda _v: pipeline_config_text(name, facts, batching),
    )
    previews = None
    if preview is not None:
        preview_name = name + PREVIEW_PIPELINE_SUFFIX
        preview_facts = replace(
            facts,
            component_models={**facts.component_models, VAE_DECODER: preview.name},
            restage_model="",
            preview_decoder=PREVIEW_NOTE,
        )
        step(f"{preview_name}: publishing the preview pipeline")
        previews = publish(
            repository,
            preview_name,
            lambda folder: write_pipeline_version(folder, model, preview_facts),
            lambda _v: pipeline_config_text(preview_name, preview_facts, batching),
        )
    step(f"{restage_name}: publishing the restage model")
    restage = publish(
        repository,
        restage_name,
        write_restage_version,
        lambda _v: restage_config_text(restage_name, name, facts, batching),
    )
    return DiffusionExportResult(pipeline, results, restage, preview, previews)
