"""The FastAPI service a shop writes in an afternoon, as FastAPI's documentation lays it out.

The model is loaded once in the app's `lifespan`; the endpoint is a plain `def`, so FastAPI
runs it in its thread pool and the event loop keeps accepting connections while a model
call runs (PyTorch and ONNX Runtime release the GIL). One uvicorn worker. Requests and
responses are JSON (`prodgen.bench.peers.wire`), validated with pydantic models.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

from prodgen.bench.peers.wire import Arrays, PredictRequest, PredictResponse, decode_arrays, encode_arrays

Model = Callable[[Arrays], Arrays]


def create_app(load: Callable[[], Model]) -> FastAPI:
    models: dict[str, Model] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        models["model"] = load()
        yield
        models.clear()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"ready": "model" in models}

    @app.post("/predict")
    def predict(request: PredictRequest) -> PredictResponse:
        try:
            arrays = decode_arrays(request.inputs)
            outputs = models["model"](arrays)
        except ValueError as error:
            raise HTTPException(status_code=400, detail=str(error)) from error
        return PredictResponse(outputs=encode_arrays(outputs))

    return app


def serve(app: FastAPI, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")
