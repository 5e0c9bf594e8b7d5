"""The OpenVINO variant on the real embedded Triton server: same pictures as the ONNX model, same refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from prodgen import zoo
from prodgen.client import ProdgenClient
from prodgen.export.cpu_variants import VariantContext, publish_openvino
from prodgen.export.fidelity import DEFAULT_MIN_PSNR_DB, psnr_db
from prodgen.export.openvino_variant import check_openvino
from prodgen.export.pipeline import ExportRequest, export_model
from prodgen.export.verify import run_pytorch
from prodgen.model_repository.config import BatchingOptions
from prodgen.serve.server import EmbeddedServer, ServerOptions
from prodgen.zoo.loading import serving_module
from prodgen.zoo.samples import verification_cases
from tests_support import free_port

pytest.importorskip("openvino", reason="the OpenVINO variant needs the extra: pip install -e '.[openvino]'")
pytestmark = pytest.mark.e2e


def test_the_openvino_variant_serves_the_onnx_models_pictures_and_refuses_the_same_bad_input(tmp_path: Path) -> None:
    model = zoo.get("dcgan")
    repository = tmp_path / "models"
    batching = BatchingOptions(max_batch_size=4)
    export_model(ExportRequest(model, repository, "dcgan", batching=batching, latency_budget_s=None))
    onnx_path = repository / "dcgan" / "1" / "model.onnx"
    graph, cases = serving_module(model), verification_cases(model)
    reference = [run_pytorch(graph, model, inputs) for inputs in cases]
    outcome = check_openvino(onnx_path, tmp_path, model, cases, reference)
    assert outcome.fidelity.passed and outcome.precision in ("bf16", "f32")
    context = VariantContext(model, "dcgan", repository, batching, onnx_path, tmp_path, cases, reference, {})
    published = publish_openvino(context, outcome)  # whatever the race here said: this checks the serving
    assert {p.name for p in published.version_dir.iterdir()} == {"model.xml", "model.bin", "prodgen-openvino.json"}
    options = ServerOptions(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    with EmbeddedServer(options) as server, ProdgenClient(options.grpc_url) as client:
        assert server.mirror is not None and sorted(server.mirror.served) == ["dcgan", "dcgan_openvino"]
        assert client.model("dcgan_openvino").max_batch_size == 1
        onnx_pictures = client.generate("dcgan", seed=11, count=3)
        openvino_pictures = client.generate("dcgan_openvino", seed=11, count=3)  # the client splits by max batch
        assert openvino_pictures.shape == onnx_pictures.shape == (3, 64, 64, 3)
        assert psnr_db([onnx_pictures], [openvino_pictures]) >= DEFAULT_MIN_PSNR_DB
        raw = grpcclient.InferenceServerClient(options.grpc_url)
        nan = np.full((1, 100), np.nan, dtype=np.float32)
        request = grpcclient.InferInput("z", list(nan.shape), "FP32")
        request.set_data_from_numpy(nan)
        with pytest.raises(InferenceServerException, match="input 'z': contains NaN or Inf"):
            raw.infer("dcgan_openvino", [request])
        raw.close()
        assert client.generate("dcgan_openvino", seed=0, count=1).shape == (1, 64, 64, 3)
