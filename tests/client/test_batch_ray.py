"""`--engine ray` on a local Ray: the same outputs, byte for byte, and the same results table as the local engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from prodgen.client.batch import BatchJob, run_batch
from prodgen.client.batch.job import Connection
from prodgen.client.batch.journal import read_results
from prodgen.client.batch.records import TIMING_COLUMNS
from prodgen.client.images import write_image
from prodgen.photos import fit, photograph
from prodgen.serve.server import EmbeddedServer

pytestmark = pytest.mark.e2e
ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install 'prodgen[ray]'")

MODEL = "fast-neural-style"
ROWS = 199
"""With the broken row: 200 rows, as a catalogue job the issue names."""


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    for attempt in (1, 2):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception:  # noqa: BLE001 - seen once: Ray's start timed out on the overloaded shared machine
            ray.shutdown()
            if attempt == 2:
                raise
    try:
        yield
    finally:
        ray.shutdown()


def test_the_ray_engine_writes_what_the_local_engine_writes(
    embedded_server: EmbeddedServer, local_ray: None, tmp_path: Path
) -> None:
    lines = ["id,image,alpha"]
    for index in range(ROWS):
        photo = photograph(("rocket", "coffee", "chelsea", "astronaut")[index % 4])
        crop = photo[(index % 40) * 5 :]
        write_image(tmp_path / f"p{index}.png", np.ascontiguousarray(fit(crop, 40 + index % 16, 48)))
        lines.append(f"item-{index},p{index}.png,")
    lines.append("broken,missing.png,")
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    connection = Connection((embedded_server.options.grpc_url,))

    summaries = {
        engine: run_batch(BatchJob(tmp_path / "rows.csv", "stylize", MODEL, tmp_path / engine, connection, 2, engine))
        for engine in ("local", "ray")
    }

    assert summaries["local"].done == summaries["ray"].done == ROWS
    assert summaries["local"].bad == summaries["ray"].bad == 1
    local_outputs = sorted(path.name for path in (tmp_path / "local").glob("*.png"))
    assert local_outputs == sorted(path.name for path in (tmp_path / "ray").glob("*.png"))
    assert len(local_outputs) == ROWS
    for name in local_outputs:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name

    def untimed(path: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in read_results(path)]

    assert untimed(summaries["ray"].results) == untimed(summaries["local"].results)
