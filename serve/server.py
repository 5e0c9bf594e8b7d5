"""The embedded Triton server: nvidia-pytriton's `tritonserver` binary over a mirrored repository.

Two ways were measured to serve ONNX models on the bundled server (design notes and the
issue note): PyTriton's `Triton.bind` proxy (5.8 ms a request, 490 req/s at concurrency 8)
and the same binary loading python-backend `model.py` files directly (2.8 ms, 1,240 req/s).
The direct way is used: it is twice as fast, shows clients the real model configs
(names, dims, max_batch_size, dynamic batching) instead of PyTriton's generated ones, and
has one process tree fewer to keep alive.

This tritonserver does not restart a python-backend stub that died (a `kill -9`, an out-of-
memory kill): the model keeps reporting ready and every request to it fails. So a supervisor
thread watches the stubs of every loaded model; when one dies it unloads the model (readiness
turns false at once), loads it again, and reports both. The same thread mirrors newly published
versions and loads them, reporting version swaps and failed loads, and gives back the shared
memory an oversize request left in a model instance (`release_grown_memory`,
prodgen.serve.instance_memory). Everything it reports also goes to the Triton log, which lives
outside the temporary workspace and outlives the server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from prodgen.errors import ProdgenError
from prodgen.model_repository.publish import check_repository
from prodgen.serve.instance_memory import grown_instances, instance_regions
from prodgen.serve.model_control import LoadOutcome, ModelControl, stub_processes
from prodgen.serve.options import LOOPBACK, MODEL_CONTROL_MODES, ServerOptions, free_port
from prodgen.serve.processes import (
    STARTER_VARIABLE,
    cpu_ticks,
    dying_with_this_process,
    is_orphaned_server,
    listener_pid,
    listener_pids,
    port_in_use,
    process_info,
    remove_shared_memory,
    unsent_bytes,
)
from prodgen.serve.python_backend_repository import DRAIN_MARKER, MirrorResult, sync_mirror
from prodgen.serve.triton_distribution import find_distribution, prepare_backends, server_environment

RESPONSE_GRACE_S = 0.5
IDLE_S = 0.2


__all__ = ["LOOPBACK", "MODEL_CONTROL_MODES", "EmbeddedServer", "ServerOptions", "free_port"]


class EmbeddedServer:
    """Start with `start()` (or as a context manager); `stop()` drains and leaves no process behind.

    `report` receives every event the supervisor sees (crashes, reloads, version swaps, failed
    loads, refused versions) as one line; `events` keeps them all."""

    def __init__(self, options: ServerOptions, report: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.mirror: MirrorResult | None = None
        self.events: list[str] = []
        self._report_to = report
        self._process: subprocess.Popen[bytes] | None = None
        self._workspace: Path | None = None
        self._shm_prefix = f"prodgen-{uuid.uuid4().hex[:12]}-"
        self._lock = threading.RLock()
        self._control: ModelControl | None = None
        self._stubs: dict[str, set[int]] = {}
        self._suspects: set[int] = set()
        self._released: set[int] = set()
        """Stubs whose grown memory a reload is giving back (they end once their batches are done)."""
        self._reported_rejections: set[str] = set()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def log_path(self) -> Path:
        return self.options.log_path

    def report(self, message: str) -> None:
        self.events.append(message)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log_path, "a") as log:
            log.write(f"prodgen serve {stamp}: {message}\n")
        if self._report_to is not None:
            self._report_to(message)

    def _command(self, binary: Path, models: Path, backends: Path, caches: Path, served: list[str]) -> list[str]:
        o = self.options
        return [
            str(binary),
            f"--model-repository={models}",
            f"--backend-directory={backends}",
            f"--cache-directory={caches}",
            f"--grpc-address={o.host}",
            f"--grpc-port={o.grpc_port}",
            f"--http-address={o.host}",
            f"--http-port={o.http_port}",
            f"--metrics-address={o.host}",
            f"--metrics-port={o.metrics_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--strict-readiness=true",
            "--exit-on-error=false",
            "--disable-auto-complete-config",
            "--model-control-mode=explicit",
            *(f"--load-model={name}" for name in served),
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            # gRPC request objects are not kept for reuse: a pooled one keeps the largest body it held
            # (measured: 3 oversize 8192² pictures left tritonserver at 776 MB; unpooled 165 MB)
            "--grpc-infer-allocation-pool-size=0",
            f"--exit-timeout-secs={max(1, round(o.drain_timeout_s))}",
            f"--log-verbose={o.log_verbose}",
            *o.extra_args,
        ]

    def _refuse_taken_ports(self) -> None:
        o = self.options
        for label, port in (("gRPC", o.grpc_port), ("HTTP", o.http_port), ("metrics", o.metrics_port)):
            if not port_in_use(o.host, port):
                continue
            holder = listener_pid(port)
            info = process_info(holder) if holder is not None else None
            if info is not None and is_orphaned_server(info):
                raise ProdgenError(
                    f"{label} port {port} is held by an orphaned tritonserver (pid {holder}) left by an earlier "
                    f"prodgen serve; stop it with `kill {holder}` and start again"
                )
            who = f" by pid {holder} ({Path(info.argv[0]).name})" if info is not None and info.argv else ""
            raise ProdgenError(
                f"{label} port {port} on {o.host} is already in use{who}; choose another --{label.lower()}-port"
            )

    def start(self) -> EmbeddedServer:
        repository = self.options.repository
        check_repository(repository, must_exist=True)
        self._refuse_taken_ports()
        distribution = find_distribution()
        self._workspace = Path(tempfile.mkdtemp(prefix="prodgen-serve-"))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.mirror = self.sync()
            if not self.mirror.served:
                raise ProdgenError(f"model repository {repository} has no model the embedded server can run")
            backends = prepare_backends(distribution, self._workspace)
            command = self._command(
                distribution.server_binary, self._mirror_dir, backends, distribution.caches_dir, self.mirror.served
            )
            self.report(f"starting tritonserver on {repository} (log: {self.log_path})")
            if self.options.stop_with_starter:
                command = dying_with_this_process(command)
            with open(self.log_path, "ab") as log:
                self._process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**server_environment(distribution), STARTER_VARIABLE: str(os.getpid())},
                    start_new_session=True,
                )
            self._wait_until_listening()
            self._control = ModelControl(self.options.grpc_url)
            self._settle_startup_loads()
        except BaseException:
            self.stop()
            raise
        if self.options.supervise_interval_s > 0:
            self._supervisor = threading.Thread(target=self._supervise, name="prodgen-supervisor", daemon=True)
            self._supervisor.start()
        return self

    @property
    def _mirror_dir(self) -> Path:
        assert self._workspace is not None
        return self._workspace / "models"

    def sync(self) -> MirrorResult:
        """Mirror the repository again and, once running, load what changed (a new model or version)."""
        with self._lock:
            previous = set(self.mirror.served) if self.mirror is not None else set()
            self.mirror = sync_mirror(self.options.repository, self._mirror_dir, self.options.intra_op_threads)
            for key, reason in self.mirror.rejected.items():
                if key not in self._reported_rejections:
                    self._reported_rejections.add(key)
                    self.report(f"{key}: not served, {reason}")
            if self._control is not None and self.running() and self.options.model_control != "explicit":
                for name in self.mirror.changed:
                    self._load(name)
                for name in sorted(previous - set(self.mirror.served)):
                    self._control.unload(name)
                    self._stubs.pop(name, None)
                    self.report(f"{name}: no longer in the repository, unloaded")
            return self.mirror

    def _load(self, name: str) -> LoadOutcome:
        assert self._control is not None
        outcome = self._control.load(name)
        self.report(outcome.describe())
        self._record_stubs(name, outcome.after)
        return outcome

    def _record_stubs(self, name: str, versions: tuple[int, ...]) -> None:
        assert self._process is not None
        running = stub_processes(self._process.pid, self._mirror_dir)
        self._stubs[name] = set().union(*(running.get((name, v), set()) for v in versions))

    def _log_tail(self, lines: int = 15) -> str:
        if not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_until_listening(self) -> None:
        """Wait for this server's gRPC endpoint; models named with --load-model are loaded before it opens."""
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        assert self._process is not None
        client = grpcclient.InferenceServerClient(self.options.grpc_url)
        deadline = time.monotonic() + self.options.startup_timeout_s
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise ProdgenError(
                        f"tritonserver exited with code {self._process.returncode} while starting; "
                        f"its log ({self.log_path}) ends:\n{self._log_tail()}"
                    )
                with contextlib.suppress(InferenceServerException, OSError):  # not listening yet
                    listeners = listener_pids(self.options.grpc_port)
                    if client.is_server_live(client_timeout=2) and (not listeners or self._process.pid in listeners):
                        return
                time.sleep(0.25)
        finally:
            client.close()
        raise ProdgenError(
            f"tritonserver was not ready after {self.options.startup_timeout_s:.0f} s; "
            f"its log ({self.log_path}) ends:\n{self._log_tail()}"
        )

    def _settle_startup_loads(self) -> None:
        """Report what loaded at start; a model that failed is unloaded so the others keep the server ready."""
        assert self._control is not None and self.mirror is not None
        loaded = []
        for name in self.mirror.served:
            versions = self._control.ready_versions(name)
            if versions:
                loaded.append(name)
                self._record_stubs(name, versions)
            else:
                self._control.unload(name)
                self.report(f"{name}: failed to load at start, not served (details in {self.log_path})")
        if not loaded:
            raise ProdgenError(
                f"no model could be loaded; tritonserver's log ({self.log_path}) ends:\n{self._log_tail()}"
            )

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _supervise(self) -> None:
        interval = self.options.supervise_interval_s
        explicit = self.options.model_control == "explicit"
        poll = self.options.mirror_follow_s if explicit else self.options.poll_interval_s
        next_poll = time.monotonic() + poll
        while not self._stopping.wait(interval):
            if not self.running():
                if not self._stopping.is_set():
                    self.report(f"tritonserver stopped unexpectedly; its log is {self.log_path}")
                return
            try:
                self.check_instances()
                self.release_grown_memory()
                if poll > 0 and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + poll
                    self.sync()
            except Exception as error:  # noqa: BLE001 - the supervisor reports and keeps watching
                if not self._stopping.is_set():
                    self.report(f"supervisor: {type(error).__name__}: {error}")

    def check_instances(self) -> list[str]:
        """Reload every model one of whose instance processes died; returns their names.

        A stub that died stays a zombie (this tritonserver never reaps it), while one ended by
        an unload or a version swap (`prodgen deploy`, a new version) is reaped and vanishes.
        So a crash is a recorded stub seen as a zombie on two checks in a row; the record of
        each model otherwise follows its current stubs."""
        with self._lock:
            if self._process is None or self._control is None:
                return []
            current: dict[str, set[int]] = {}
            for (name, _version), pids in stub_processes(self._process.pid, self._mirror_dir).items():
                current.setdefault(name, set()).update(pids)
            crashed = []
            for name, pids in list(self._stubs.items()):
                zombies = {pid for pid in pids if (info := process_info(pid)) is not None and not info.running}
                if zombies & self._suspects:
                    crashed.append(name)
                    self._stubs.pop(name)  # reported once, even if the reload fails
                    self.report(
                        f"{name}: model instance process {', '.join(map(str, sorted(zombies)))} died; reloading the model"
                    )
                    started = time.monotonic()
                    self._control.unload(name)
                    outcome = self._load(name)
                    if outcome.error is None:
                        self.report(
                            f"{name}: serving again {time.monotonic() - started:.1f} s after the crash was seen"
                        )
                else:
                    self._stubs[name] = zombies | current.get(name, set())
            self._suspects = {
                pid for pids in self._stubs.values() for pid in pids if pid not in set().union(*current.values())
            }
            return crashed

    def instance_memory(self) -> dict[int, tuple[str, int]]:
        """Each running model instance process: its model's name and the shared memory it holds, in bytes."""
        with self._lock:
            if self._process is None:
                return {}
            return instance_regions(self._process.pid, self._mirror_dir)

    def release_grown_memory(self) -> list[str]:
        """Reload each model one of whose instances holds more shared memory than the bound
        (`ServerOptions.shm_release_bytes`); returns their names.

        Triton's reload starts new instances and ends the old ones once their running batches are
        done, so requests keep being answered (prodgen.serve.instance_memory says why it is needed).
        An instance being replaced is not counted again while it finishes."""
        bound = self.options.shm_release_bytes
        with self._lock:
            if self._process is None or self._control is None or bound <= 0:
                return []
            grown = grown_instances(self._process.pid, self._mirror_dir, bound)
            fresh = {pid: found for pid, found in grown.items() if pid not in self._released}
            self._released = (self._released & set(grown)) | set(fresh)
            names = sorted({name for name, _size in fresh.values()})
            for name in names:
                size = max(size for grown_name, size in fresh.values() if grown_name == name)
                self.report(
                    f"{name}: a model instance holds {size / 2**20:.0f} MiB of shared memory (bound "
                    f"{bound / 2**20:.0f} MiB), left by an oversize request; reloading the model to give it back"
                )
                self._reload(name)
            return names

    def _reload(self, name: str) -> LoadOutcome:
        """Load `name` again with new instances: Triton skips a load of a model whose files it has
        not seen change, so the mirrored model's folders get a new modification time first."""
        model_dir = self._mirror_dir / name
        for folder in (model_dir, *(entry for entry in model_dir.iterdir() if entry.is_dir())):
            os.utime(folder)
        return self._load(name)

    def stop(self, timeout_s: float | None = None) -> None:
        """Drain, then stop: new requests refused with UNAVAILABLE at once, running batches
        finish and their answers leave, then the process tree ends (see `_drain`)."""
        self._stopping.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=10)
        with self._lock:
            process, self._process = self._process, None
            if self._control is not None:
                self._control.close()
                self._control = None
            if process is not None:
                self._drain(process, self.options.drain_timeout_s if timeout_s is None else timeout_s)
            remove_shared_memory(self._shm_prefix)
            if self._workspace is not None:
                shutil.rmtree(self._workspace, ignore_errors=True)
                self._workspace = None

    def _drain(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        """Refuse what has not started, let running batches finish and their answers leave, then stop.

        tritonserver's own SIGTERM shutdown was measured to answer NOT_FOUND (which clients do not
        retry) for seconds: this python backend hands a batch over before running it, so Triton
        does not count a running batch as in flight and unloads the idle models while it runs.
        So prodgen drains itself: the drain marker makes every served model answer UNAVAILABLE
        at once (clients retry elsewhere); once no model process has used CPU for a moment (no
        batch running) and every answer has been acknowledged, the process tree is killed and
        its ports close, which clients also see as UNAVAILABLE."""
        if process.poll() is None and self._workspace is not None:
            (self._workspace / DRAIN_MARKER).touch()
            self._wait_batches_finished(process.pid, timeout_s)
            self._wait_responses_delivered()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def _wait_batches_finished(self, server_pid: int, timeout_s: float) -> None:
        """Until the model processes stay idle (at most one clock tick of CPU) for `IDLE_S`."""
        assert self._workspace is not None
        stubs = [pid for pids in stub_processes(server_pid, self._mirror_dir).values() for pid in pids]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            before = sum(cpu_ticks(pid) for pid in stubs)
            time.sleep(IDLE_S)
            if sum(cpu_ticks(pid) for pid in stubs) - before <= 1:
                return

    def _wait_responses_delivered(self, timeout_s: float = 2.0) -> None:
        """The last answers may still be on their way when the model processes are idle (HTTP/2
        sends a large one in windows the client opens as it reads): wait `RESPONSE_GRACE_S`, then
        until every connection's sent bytes are acknowledged by the client."""
        time.sleep(RESPONSE_GRACE_S)
        deadline = time.monotonic() + timeout_s
        ports = (self.options.grpc_port, self.options.http_port)
        while time.monotonic() < deadline and any(unsent_bytes(port) for port in ports):
            time.sleep(0.01)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
