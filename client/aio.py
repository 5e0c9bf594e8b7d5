"""`AsyncProdgenClient`: the fleet client for a shop's asyncio web service, on `tritonclient.grpc.aio`.

    async with AsyncProdgenClient(dns="triton-headless.shop.svc:8001", timeout_s=5) as client:
        images = await client.generate("dcgan", seed=7, count=4)

Same behaviour as `ProdgenClient` over a fleet (prodgen.client.fleet): the healthy replica
with the fewest calls in flight takes each call, replica faults eject the replica and the
call moves on within its deadline, and a prober task re-admits replicas that recover.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from prodgen.client.api import (
    ServedModel,
    generator_inputs,
    image_batch,
    infer_requests,
    served_model,
    stylize_inputs,
    upscale_plan,
)
from prodgen.client.fleet import ChannelSecurity, Deadline, FleetBase, FleetPolicy, attempt_timeout, error_text
from prodgen.client.tiling import upscale_tiled
from prodgen.errors import ProdgenError


class AsyncFleet(FleetBase):
    def _start(self) -> None:
        self._clients: dict[str, aioclient.InferenceServerClient] = {}
        self._prober: asyncio.Task[None] | None = None  # started by the first call, inside the event loop

    def _client(self, url: str) -> aioclient.InferenceServerClient:
        if url not in self._clients:
            self._clients[url] = aioclient.InferenceServerClient(url, **self.security.client_arguments())
        return self._clients[url]

    async def call(self, what: str, method: str, *args: Any, client_timeout: float, **kwargs: Any) -> Any:
        if self._prober is None:
            self._prober = asyncio.get_running_loop().create_task(self._probe_forever())
        deadline = Deadline(client_timeout)
        tried: set[str] = set()
        while True:
            url = self._next(what, deadline, tried)
            if url is None:
                await asyncio.sleep(self._pause_s(deadline))
                continue
            try:
                function = getattr(self._client(url), method)
                timeout = attempt_timeout(self.policy, deadline)
                result = await function(*args, headers=self.security.headers(), client_timeout=timeout, **kwargs)
            except InferenceServerException as error:
                self._failed(url, error)
                continue
            self.replicas.succeeded(url)
            return result

    async def _probe(self, url: str) -> None:
        healthy = self.replicas.snapshot()[url].healthy
        client = (
            self._client(url) if healthy else aioclient.InferenceServerClient(url, **self.security.client_arguments())
        )
        try:
            ready = await client.is_server_ready(
                headers=self.security.headers(), client_timeout=self.policy.probe_timeout_s
            )
            error = "" if ready else "not ready"
        except InferenceServerException as failure:
            ready, error = False, error_text(failure)
        if not healthy:
            if ready:
                old = self._clients.pop(url, None)
                self._clients[url] = client
                if old is not None:
                    await old.close()
            else:
                await client.close()
        self.replicas.probed(url, ready, error)

    async def _probe_forever(self) -> None:
        loop = asyncio.get_running_loop()
        resolved_at = loop.time()
        while True:
            await asyncio.sleep(self.policy.probe_interval_s)
            if loop.time() - resolved_at >= self.policy.resolve_interval_s:
                resolved_at = loop.time()
                for url in self._resolve_again():
                    stale = self._clients.pop(url, None)
                    if stale is not None:
                        await stale.close()
            await asyncio.gather(*(self._probe(url) for url in self.replicas.urls()), return_exceptions=True)

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            try:
                await self._prober
            except asyncio.CancelledError:
                pass
            self._prober = None
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


class AsyncProdgenClient:
    """prodgen models over a fleet of Triton replicas, from asyncio code; `timeout_s` is each call's deadline."""

    def __init__(
        self,
        urls: Sequence[str] = (),
        *,
        dns: str | None = None,
        timeout_s: float = 60.0,
        security: ChannelSecurity | None = None,
        policy: FleetPolicy | None = None,
        resolver: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        if isinstance(urls, str):
            urls = [urls]
        self.timeout_s = timeout_s
        self.fleet = AsyncFleet(urls, dns, security, policy, resolver)
        self._models: dict[str, ServedModel] = {}

    async def __aenter__(self) -> AsyncProdgenClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.fleet.close()

    async def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self.fleet.call(what, method, *args, client_timeout=self.timeout_s, **kwargs)
        except InferenceServerException as error:
            raise ProdgenError(f"{what}: {error.message() or error}") from error

    async def ready(self) -> bool:
        return bool(await self._call("server ready", "is_server_ready"))

    async def model(self, name: str) -> ServedModel:
        if name not in self._models:
            config = (await self._call(f"config of {name}", "get_model_config", name)).config
            self._models[name] = served_model(name, config)
        return self._models[name]

    async def infer(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `name` on a batch, split into chunks of the model's max_batch_size."""
        model = await self.model(name)
        chunks: list[dict[str, np.ndarray]] = []
        for request, outputs in infer_requests(model, inputs):
            result = await self._call(f"inference on {name}", "infer", name, request, outputs=outputs)
            chunks.append({spec.name: result.as_numpy(spec.name) for spec in model.outputs})
        return {spec.name: np.concatenate([chunk[spec.name] for chunk in chunks]) for spec in model.outputs}

    async def generate(
        self, name: str, seed: int = 0, count: int = 1, class_id: int | None = None, truncation: float | None = None
    ) -> np.ndarray:
        """`count` images from latents of seeds seed, seed+1, …: the same pictures on every replica."""
        model = await self.model(name)
        outputs = await self.infer(name, generator_inputs(model, seed, count, class_id, truncation))
        return outputs[model.outputs[0].name]

    async def stylize(
        self, name: str, image: np.ndarray, style: np.ndarray | None = None, alpha: float | None = None
    ) -> np.ndarray:
        """Restyle one image (H, W, 3) or a batch of same-size images (N, H, W, 3), as `ProdgenClient.stylize`."""
        model = await self.model(name)
        outputs = await self.infer(name, stylize_inputs(model, image, style, alpha))
        result = outputs[model.outputs[0].name]
        return result[0] if image.ndim == 3 else result

    async def upscale(self, name: str, image: np.ndarray, tile: int | None = None, overlap: int = 32) -> np.ndarray:
        """Upscale one image (H, W, 3), as `ProdgenClient.upscale`: images beyond the model's bounds go in
        overlapping tiles, cut and blended in a worker thread while the event loop makes the calls."""
        model = await self.model(name)
        scale, tiling = upscale_plan(model, image, tile, overlap)
        image_input, output = model.inputs_of("image")[0].name, model.outputs[0].name
        if tiling is None:
            return (await self.infer(name, {image_input: image_batch(model, image, "image")}))[output][0]
        loop = asyncio.get_running_loop()

        def run(batch: np.ndarray) -> np.ndarray:
            return asyncio.run_coroutine_threadsafe(self.infer(name, {image_input: batch}), loop).result()[output]

        return await asyncio.to_thread(upscale_tiled, image, run, scale, tiling)
