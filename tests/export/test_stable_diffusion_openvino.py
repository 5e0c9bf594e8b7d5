"""`prodgen-export stable-diffusion --openvino`: OpenVINO components gated by the pipeline's pictures, then served.

The tiny test checkpoint is faster on ONNX Runtime than on OpenVINO (its calls are too small for
OpenVINO's per-call work to pay off), so the export here publishes with --openvino-even-if-slower;
the race itself is measured and reported, never asserted as a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prodgen.client import ProdgenClient, Sampling
from prodgen.export.fidelity import psnr_db
from prodgen.export.stable_diffusion import export_stable_diffusion
from prodgen.export.stable_diffusion_openvino import Int8Part, PictureGate, more_saving, publish_openvino_components
from prodgen.model_repository.config import parse_pbtxt
from prodgen.model_repository.direct_pipeline import DirectPipeline
from prodgen.model_repository.pipeline_components import component_models
from prodgen.serve.server import EmbeddedServer, ServerOptions
from tests_support import console_script, free_port

pytest.importorskip("openvino")

NAME = "shop"
SIDE = 32
PROMPT = "a red cup on a table"
SEED, STEPS, GUIDANCE = 5, 3, 7.5
SAMPLING = Sampling(seed=SEED, steps=STEPS, guidance=GUIDANCE, scheduler="ddim")
ON_OPENVINO = ("text_encoder", "unet", "vae_decoder")


@pytest.fixture(scope="module")
def openvino_export(diffusion_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    repository = tmp_path_factory.mktemp("openvino-export") / "models"
    command = [
        console_script("prodgen-export"), "stable-diffusion", "--checkpoint", str(diffusion_checkpoints["sd"]),
        "--name", NAME, "--repository", str(repository), "--openvino", "--openvino-side", str(SIDE),
        "--openvino-even-if-slower", "--default-steps", "2",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return repository, done.stdout


def test_the_export_publishes_openvino_components_and_points_the_pipeline_at_them(openvino_export: tuple) -> None:
    repository, printed = openvino_export
    assert component_models(repository, NAME) == {
        "text_encoder": "shop_text_encoder_openvino",
        "unet": "shop_unet_openvino",
        "vae_decoder": "shop_vae_decoder_openvino",
        "vae_encoder": "shop_vae_encoder",
    }
    for part in ON_OPENVINO:
        folder = repository / f"shop_{part}_openvino"
        config = parse_pbtxt((folder / "config.pbtxt").read_text())
        assert config.backend == "openvino" and config.max_batch_size == 0
        assert all(tensor.dims[0] == -1 for tensor in [*config.input, *config.output])
        assert (folder / "1" / "model.xml").is_file() and (folder / "1" / "model.bin").is_file()
        record = json.loads((folder / "1" / "prodgen-openvino.json").read_text())
        assert len(record["gate"]["psnr_db"]) == 4
        assert min(record["gate"]["psnr_db"]) >= record["gate"]["min_psnr_db"]
    assert "OpenVINO" in printed and "gate" in printed and "--variant onnx" in printed
    assert f"{NAME}: served defaults: 2 steps, guidance 7.5, scheduler" in printed  # only the steps were given
    pipeline = parse_pbtxt((repository / NAME / "config.pbtxt").read_text())
    assert [group.count for group in pipeline.instance_group] == [1]  # its UNet has no batcher to share


@pytest.mark.e2e
def test_the_server_draws_with_the_openvino_components_inside_the_gate(openvino_export: tuple) -> None:
    repository, _ = openvino_export
    options = ServerOptions(
        repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), intra_op_threads=1
    )
    with EmbeddedServer(options) as server, ProdgenClient(options.grpc_url, timeout_s=300) as client:
        served = client.txt2img(NAME, PROMPT, SAMPLING, SIDE, SIDE)[0]
        assert server.mirror is not None
        mirror = server.mirror
    # the FP32 components the pipeline no longer calls are not loaded: they would hold their weights for nobody
    assert {f"shop_{part}" for part in ON_OPENVINO} <= set(mirror.skipped)
    assert {f"shop_{part}_openvino" for part in ON_OPENVINO} | {"shop_vae_encoder", NAME} <= set(mirror.served)
    drawn = DirectPipeline(repository, NAME, threads=1)
    on_openvino = drawn.picture(PROMPT, SEED, STEPS, GUIDANCE, "ddim", SIDE)[0]
    fp32_parts = {part: repository / f"shop_{part}" for part in ON_OPENVINO}
    fp32 = DirectPipeline(repository, NAME, threads=1, components=fp32_parts)
    reference = fp32.picture(PROMPT, SEED, STEPS, GUIDANCE, "ddim", SIDE)[0]
    assert served.shape == reference.shape == (SIDE, SIDE, 3)
    assert np.abs(served.astype(int) - on_openvino).max() <= 1  # the same OpenVINO calls, served or in process
    assert psnr_db([reference], [served]) >= PictureGate().min_psnr_db
    assert drawn.seconds["unet"] > 0 and fp32.seconds["unet"] > 0


def test_switching_back_to_onnx_runtime_is_one_command(openvino_export: tuple, tmp_path: Path) -> None:
    repository, _ = openvino_export
    command = [sys.executable, "-m", "prodgen.model_repository.pipeline_components", str(repository), NAME]
    back = subprocess.run([*command, "--variant", "onnx"], capture_output=True, text=True)
    assert back.returncode == 0, back.stderr
    assert set(component_models(repository, NAME).values()) == {
        f"shop_{part}" for part in (*ON_OPENVINO, "vae_encoder")
    }
    again = subprocess.run([*command, "--variant", "openvino"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert component_models(repository, NAME)["unet"] == "shop_unet_openvino"


def test_pictures_outside_the_gate_publish_nothing(diffusion_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    repository = tmp_path / "models"
    export_stable_diffusion(diffusion_checkpoints["sd"], repository, NAME)
    before = (repository / NAME / "config.pbtxt").read_text()
    unreachable = PictureGate(min_psnr_db=float("inf"))
    outcome = publish_openvino_components(repository, NAME, side=SIDE, gate=unreachable, require_faster=False)
    assert not outcome.passed and not outcome.published
    assert all(value > 20 for value in outcome.psnr_db)  # close to the FP32 pictures, and still refused
    assert "outside the gate" in " ".join(outcome.notes)
    assert (repository / NAME / "config.pbtxt").read_text() == before
    assert not any(repository.glob("*_openvino"))


def test_an_unknown_variant_and_a_pipeline_without_openvino_components_are_one_line_errors(
    diffusion_exports: dict,
) -> None:
    repository = diffusion_exports["sd"].pipeline.model_dir.parent
    command = [sys.executable, "-m", "prodgen.model_repository.pipeline_components", str(repository), "sd"]
    done = subprocess.run([*command, "--variant", "openvino"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--openvino" in done.stderr


def _fake_quantize_ops(xml_path: Path) -> int:
    import openvino

    return sum(op.get_type_name() == "FakeQuantize" for op in openvino.Core().read_model(str(xml_path)).get_ops())


def test_the_int8_unet_and_decoder_are_calibrated_gated_and_recorded_with_the_layers_they_keep(
    diffusion_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("nncf")
    repository = tmp_path / "models"
    export_stable_diffusion(diffusion_checkpoints["sd"], repository, NAME)
    outcome = publish_openvino_components(repository, NAME, side=SIDE, require_faster=False, int8=True)
    assert outcome.passed and {"unet", "vae_decoder"} <= set(outcome.published)
    assert set(outcome.int8_attempts) == {"unet", "vae_decoder"}, "INT8 was not tried for both"
    for attempt in outcome.int8_attempts["unet"]:
        kept = attempt["kept_ops"]
        assert isinstance(kept, list) and "/unet/conv_in/Conv/WithoutBiases" in kept
        assert any("time_embedding" in op for op in kept)
    for attempt in outcome.int8_attempts["vae_decoder"]:
        kept = attempt["kept_ops"]
        assert isinstance(kept, list) and "/post_quant_conv/Conv/WithoutBiases" in kept
        assert any("mid_block/attentions" in op for op in kept)
    for part in ("unet", "vae_decoder"):
        folder = outcome.published[part].version_dir
        record = json.loads((folder / "prodgen-openvino.json").read_text())
        assert record["int8"]["attempts"] == json.loads(json.dumps(outcome.int8_attempts[part]))
        quantised = _fake_quantize_ops(folder / "model.xml")
        if part not in outcome.int8:  # outside the gate (or slower): the float part is what was published
            assert quantised == 0 and record["int8"]["published"] is None
        else:
            assert quantised > 0 and record["int8"]["published"] == json.loads(json.dumps(outcome.int8[part]))
    if outcome.int8:
        assert all(value >= PictureGate().min_psnr_db for value in outcome.psnr_db)


def _passing(part: str, saved_s: float) -> Int8Part:
    return Int8Part(part, Path(part), {}, [31.0], 0.95, 10.0, saved_s)


def test_when_int8_parts_pass_only_alone_the_one_saving_more_at_the_default_steps_is_kept() -> None:
    # the gate's 4 pictures of 4 steps: the UNet saved 4 s in all (0.25 s a step), the decoder 6 s (1.5 s a picture)
    passing = [_passing("unet", 4.0), _passing("vae_decoder", 6.0)]
    kept, saved = more_saving(passing, default_steps=25, gate_steps=4, gate_pictures=4)
    assert kept.part == "unet" and saved == {"unet": 6.25, "vae_decoder": 1.5}
    kept, saved = more_saving(passing, default_steps=4, gate_steps=4, gate_pictures=4)  # a few-step model's default
    assert kept.part == "vae_decoder" and saved == {"unet": 1.0, "vae_decoder": 1.5}


def test_the_int8_gate_given_on_the_command_line_holds_the_int8_parts_and_not_the_float_ones(
    diffusion_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("nncf")
    repository = tmp_path / "models"
    command = [
        console_script("prodgen-export"), "stable-diffusion", "--checkpoint", str(diffusion_checkpoints["sd"]),
        "--name", NAME, "--repository", str(repository), "--openvino", "--openvino-side", str(SIDE),
        "--openvino-even-if-slower", "--int8", "--int8-min-psnr", "1000",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "required ≥ 1000" in done.stdout
    for part in ("unet", "vae_decoder"):
        folder = repository / f"{NAME}_{part}_openvino" / "1"
        record = json.loads((folder / "prodgen-openvino.json").read_text())
        assert record["int8"]["gate"]["min_psnr_db"] == 1000 and record["int8"]["published"] is None
        assert record["int8"]["attempts"], f"the INT8 {part} was not tried"
        assert record["gate"]["min_psnr_db"] == PictureGate().min_psnr_db  # the float parts' gate is untouched
        assert _fake_quantize_ops(folder / "model.xml") == 0


def test_an_int8_gate_without_int8_is_a_one_line_error(diffusion_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    command = [
        console_script("prodgen-export"), "stable-diffusion", "--checkpoint", str(diffusion_checkpoints["sd"]),
        "--repository", str(tmp_path / "models"), "--openvino", "--int8-min-psnr", "28",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "add --int8" in done.stderr
    assert not (tmp_path / "models").exists()
