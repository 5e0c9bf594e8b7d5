"""Switching a pipeline's components also sets how many pictures it works on at once, and switches its
preview pipeline with it."""

from __future__ import annotations

from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from prodgen.model_repository.config import BatchingOptions, openvino_component_config, parse_pbtxt, to_pbtxt
from prodgen.model_repository.pipeline_components import PARTS, component_models, switch_components
from tests_support import write_sd_pipeline_config

NAME = "shop"


def _repository(root: Path, instances: int) -> Path:
    write_sd_pipeline_config(root, NAME, BatchingOptions(max_batch_size=4, instance_count=instances))
    for part in PARTS:
        onnx = mc.ModelConfig(name=f"{NAME}_{part}", backend="onnxruntime", max_batch_size=8)
        onnx.dynamic_batching.max_queue_delay_microseconds = 5000
        onnx.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
        for served, config in ((onnx.name, onnx), (f"{onnx.name}_openvino", None)):
            config = config or openvino_component_config(onnx, served)
            (root / served).mkdir()
            (root / served / "config.pbtxt").write_text(to_pbtxt(config))
    return root


def _instances(repository: Path) -> list[tuple[int, int]]:
    config = parse_pbtxt((repository / NAME / "config.pbtxt").read_text())
    return [(group.count, group.kind) for group in config.instance_group]


def test_a_unet_without_a_batcher_gets_one_picture_at_a_time_and_switching_back_restores_the_instances(
    tmp_path: Path,
) -> None:
    repository = _repository(tmp_path, instances=3)
    assert _instances(repository) == [(3, mc.ModelInstanceGroup.KIND_CPU)]
    switch_components(repository, NAME, "openvino")
    # the OpenVINO UNet takes one guidance pair a call: more pictures in flight would only interleave
    assert _instances(repository) == [(1, mc.ModelInstanceGroup.KIND_CPU)]
    switch_components(repository, NAME, "openvino")
    assert _instances(repository) == [(1, mc.ModelInstanceGroup.KIND_CPU)]
    switch_components(repository, NAME, "onnx")
    assert _instances(repository) == [(3, mc.ModelInstanceGroup.KIND_CPU)]


def test_a_pipeline_whose_unet_config_is_absent_keeps_its_instances(tmp_path: Path) -> None:
    repository = _repository(tmp_path, instances=4)
    for part in PARTS:
        (repository / f"{NAME}_{part}" / "config.pbtxt").unlink()
    switch_components(repository, NAME, "onnx")
    assert _instances(repository) == [(4, mc.ModelInstanceGroup.KIND_CPU)]


def test_the_preview_pipeline_is_switched_with_its_pipeline_and_keeps_its_own_decoder(tmp_path: Path) -> None:
    repository = _repository(tmp_path, instances=2)
    preview = f"{NAME}_preview"
    write_sd_pipeline_config(repository, preview, BatchingOptions(max_batch_size=4), NAME, f"{NAME}_vae_decoder_taesd")
    for variant, suffix in (("openvino", "_openvino"), ("onnx", "")):
        switch_components(repository, NAME, variant)
        # left on the FP32 UNet, the preview pipeline would keep a server holding it for nobody else
        expected = {part: f"{NAME}_{part}{suffix}" for part in PARTS} | {"vae_decoder": f"{NAME}_vae_decoder_taesd"}
        assert component_models(repository, preview) == expected, variant
