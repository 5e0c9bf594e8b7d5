"""What a shop would build instead of prodgen, as real servers to measure it against.

Each peer is a runnable app module written the way its framework's documentation shows
(`python -m prodgen.bench.peers.fastapi_torch --model dcgan --port 9000`), started as its own
process on loopback by `prodgen-bench peers`: FastAPI + uvicorn with eager PyTorch or with
ONNX Runtime, PyTriton's `Triton.bind` around the PyTorch model, LitServe with its batching
on. Needs the `peers` extra (pip install 'prodgen[peers]').
"""
