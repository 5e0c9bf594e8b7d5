"""Reading the shared memory a python-backend stub holds, from its command line and /dev/shm."""

from __future__ import annotations

from pathlib import Path

from prodgen.serve.instance_memory import region_bytes


def test_a_stubs_region_is_found_by_the_name_it_was_started_with(tmp_path: Path) -> None:
    region = tmp_path / "prodgen-abc-0123"
    with open(region, "wb") as grown:
        grown.truncate(3 << 20)  # a region grows with ftruncate, as the python backend grows it
    argv = ("/x/triton_python_backend_stub", "/m/look/1/model.py", "prodgen-abc-0123", "1048576", "1048576")
    assert region_bytes(argv, tmp_path) == 3 << 20
    assert region_bytes((*argv[:2], "/prodgen-abc-0123"), tmp_path) == 3 << 20
    assert region_bytes((*argv[:2], "gone"), tmp_path) == 0
    assert region_bytes(argv[:2], tmp_path) == 0
