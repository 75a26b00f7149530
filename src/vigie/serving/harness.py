"""Run the prediction service as a child process: free ports, readiness, the key, the stop.

One harness for everything that starts the service as a subprocess: the integration tests,
the load tests and benchmarks, and ``vigie simulate``. :class:`ServiceProcess` starts
``bentoml serve`` (or a command given, such as ``vigie serve``) on free ports, waits until
``/v2/health/ready`` answers, and stops it by its PID. A child runs in its own session, so
that a child that does not stop can be killed with its whole process group (its BentoML
workers) and nothing else. A child that exits while it is waited for fails the wait at
once, with the end of its log.

The service is another process: nothing here imports BentoML or starts a server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.serving.client import local_predict_key

#: The interface the servers started here bind to unless told otherwise.
LOOPBACK = "127.0.0.1"
#: The BentoML service (in the installed package, so any working folder serves).
SERVICE = "vigie.serving.service:VigiePrediction"
#: The readiness route of the Open Inference Protocol v2.
READY_PATH = "/v2/health/ready"
#: Seconds a child is given to become ready.
START_TIMEOUT_S = 180.0
#: Seconds a child is given to exit after SIGTERM, before its process group is killed.
STOP_TIMEOUT_S = 30.0
#: Seconds a killed child is waited for.
KILL_WAIT_S = 10.0
#: Characters of a child's log shown when it fails to start.
LOG_TAIL_CHARS = 4000


def free_port() -> int:
    """A TCP port free on the loopback interface now (another process may take it later)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def log_tail(log: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The last ``chars`` characters of ``log`` ("" when it cannot be read)."""
    try:
        with log.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            # UTF-8 spends at most 4 bytes a character: enough bytes, never the whole file
            handle.seek(max(0, handle.tell() - 4 * chars))
            data = handle.read()
    except OSError:
        return ""
    return data.decode(errors="replace")[-chars:]


def _failure(message: str, log: Path | None) -> VigieError:
    if log is not None:
        message += f"; the end of its log {log}:\n{log_tail(log)}"
    return VigieError(ErrorCode.UNAVAILABLE, message)


def wait_until(
    probe: Callable[[], bool],
    what: str,
    process: subprocess.Popen[bytes],
    *,
    log: Path | None = None,
    timeout: float = START_TIMEOUT_S,
    pause_s: float = 0.5,
) -> None:
    """Call ``probe`` until it returns True, as long as ``process`` runs.

    Args:
        probe: The readiness check; True when ``what`` is ready.
        what: What is waited for, for the error message ("the prediction service").
        process: The child that must become ready; its exit ends the wait at once.
        log: The child's output, whose end the error message shows.
        timeout: Seconds before giving up.
        pause_s: Seconds between two probes.

    Raises:
        VigieError: UNAVAILABLE when the child exits first or ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise _failure(f"{what} exited with status {process.returncode}", log)
        if probe():
            return
        if time.monotonic() >= deadline:
            raise _failure(f"{what} was not ready within {timeout:.0f} s", log)
        time.sleep(pause_s)


def wait_ready(
    url: str,
    process: subprocess.Popen[bytes],
    what: str = "the service",
    *,
    log: Path | None = None,
    timeout: float = START_TIMEOUT_S,
    pause_s: float = 0.5,
) -> None:
    """Wait until ``url`` answers ``GET`` with 200 (see :func:`wait_until`).

    Raises:
        VigieError: UNAVAILABLE when the child exits first or ``timeout`` passes.
    """

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == httpx.codes.OK
        except httpx.HTTPError:
            return False

    wait_until(answers, what, process, log=log, timeout=timeout, pause_s=pause_s)


def wait_listening(
    port: int,
    process: subprocess.Popen[bytes],
    what: str | None = None,
    *,
    host: str = LOOPBACK,
    log: Path | None = None,
    timeout: float = START_TIMEOUT_S,
    pause_s: float = 0.2,
) -> None:
    """Wait until ``host:port`` accepts TCP connections: a server with no HTTP probe.

    Raises:
        VigieError: UNAVAILABLE when the child exits first or ``timeout`` passes.
    """

    def listening() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            return False

    name = what or f"the server on {host}:{port}"
    wait_until(listening, name, process, log=log, timeout=timeout, pause_s=pause_s)


def predict_key(settings: Settings) -> str:
    """The ``predict`` key a local-mode service generated under ``settings``' home.

    Raises:
        VigieError: NOT_FOUND when ``<home>/secrets/api_keys.local`` holds none.
    """
    key = local_predict_key(settings)
    if key is None:
        raise VigieError(
            ErrorCode.NOT_FOUND,
            f"no predict key in {settings.secrets_dir / 'api_keys.local'}: a service in "
            "local mode writes one when it first starts",
        )
    return key


def start_logged(
    command: Sequence[str],
    env: Mapping[str, str] | None,
    log: Path,
    *,
    cwd: Path | None = None,
    append: bool = False,
    new_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output (stdout and stderr) in ``log``.

    Args:
        command: The program and its arguments.
        env: Its whole environment (None: this process's).
        log: Where its output goes (its folder is created).
        cwd: Its working folder (None: this process's).
        append: Append to ``log`` (a restart keeps the earlier lines) instead of replacing it.
        new_session: Run it in its own session, so that :func:`stop_process` can kill its
            process group; False keeps it in this terminal's group, where Ctrl-C reaches it.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab" if append else "wb") as handle:
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM ``process`` by its PID; after ``timeout`` seconds, SIGKILL.

    The kill goes to the child's own process group when it leads one (it was started in its
    own session: its workers go with it), else to the child alone.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    # Not reaped yet, so the PID is still this child's, and a group of that id is its own.
    if os.getpgid(process.pid) == process.pid:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()
    process.wait(KILL_WAIT_S)


def local_service_env(settings: Settings) -> dict[str, str]:
    """The ``VIGIE_*`` variables of a local-mode CPU service over ``settings``' home and
    models, logging JSON lines (to be laid over the rest of the child's environment)."""
    return {
        "VIGIE_HOME": str(settings.home),
        "VIGIE_MODELS_DIR": str(settings.models_dir),
        "VIGIE_MODE": "local",
        "VIGIE_DEVICE": "cpu",
        "VIGIE_LOG_FORMAT": "json",
    }


def bentoml_command(host: str, port: int) -> list[str]:
    """``bentoml serve`` of :data:`SERVICE` on ``host:port``, from this interpreter's bin."""
    bentoml = str(Path(sys.executable).parent / "bentoml")
    return [bentoml, "serve", SERVICE, "--host", host, "--port", str(port)]


@dataclass(frozen=True)
class ServiceProcess:
    """A prediction service child: where it listens, its home, its process and log.

    Start one with :meth:`start`; stop it with :meth:`stop` or by leaving a ``with`` block.

    Attributes:
        settings: The settings of the home it serves (where its predict key is written).
        process: The child.
        log: Its output.
        rest_port: Its HTTP port (BentoML's API and OIP v2 REST).
        grpc_port: Its OIP v2 gRPC port.
        host: The address it listens on.
        stop_timeout: Seconds :meth:`stop` gives it after SIGTERM.
    """

    settings: Settings
    process: subprocess.Popen[bytes]
    log: Path
    rest_port: int
    grpc_port: int
    host: str = LOOPBACK
    stop_timeout: float = STOP_TIMEOUT_S

    @classmethod
    def start(
        cls,
        settings: Settings,
        log: Path,
        env: Mapping[str, str],
        *,
        command: Sequence[str] | None = None,
        cwd: Path | None = None,
        host: str = LOOPBACK,
        rest_port: int | None = None,
        grpc_port: int | None = None,
        append_log: bool = False,
        timeout: float = START_TIMEOUT_S,
        stop_timeout: float = STOP_TIMEOUT_S,
        what: str = "the prediction service",
    ) -> ServiceProcess:
        """Start the service in its own session and wait until it is ready.

        Args:
            settings: The settings of the home it serves.
            log: Where its output goes.
            env: Its environment; the address, the ports and the opt-out of BentoML's
                tracking are laid over it (``VIGIE_HOST``, ``VIGIE_REST_PORT``,
                ``VIGIE_GRPC_PORT``, ``DO_NOT_TRACK``, ``BENTOML_DO_NOT_TRACK``).
            command: What to run; None: :func:`bentoml_command`. A command given reads its
                address and ports from that environment, as ``vigie serve`` does.
            cwd: Its working folder (relative settings, such as ``VIGIE_HOME``, start there).
            host: The address it listens on.
            rest_port: Its HTTP port; None: a free one.
            grpc_port: Its gRPC port; None: a free one.
            append_log: Append to ``log`` instead of replacing it.
            timeout: Seconds it is given to become ready.
            stop_timeout: Seconds :meth:`stop` gives it after SIGTERM.
            what: Its name in the error message.

        Raises:
            VigieError: UNAVAILABLE when it exits or is not ready in time (it is stopped).
        """
        rest = free_port() if rest_port is None else rest_port
        grpc = free_port() if grpc_port is None else grpc_port
        child_env = {
            **env,
            "DO_NOT_TRACK": "1",
            "BENTOML_DO_NOT_TRACK": "True",
            "VIGIE_HOST": host,
            "VIGIE_REST_PORT": str(rest),
            "VIGIE_GRPC_PORT": str(grpc),
        }
        argv = bentoml_command(host, rest) if command is None else command
        process = start_logged(argv, child_env, log, cwd=cwd, append=append_log)
        service = cls(settings, process, log, rest, grpc, host, stop_timeout)
        try:
            wait_ready(service.url + READY_PATH, process, what, log=log, timeout=timeout)
        except BaseException:
            service.stop()
            raise
        return service

    @property
    def url(self) -> str:
        """Its HTTP base URL."""
        return f"http://{self.host}:{self.rest_port}"

    @property
    def host_port(self) -> str:
        """``host:port`` of its HTTP server."""
        return f"{self.host}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        """``host:port`` of its gRPC server."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def key(self) -> str:
        """The predict key it generated (local mode); see :func:`predict_key`."""
        return predict_key(self.settings)

    def stop(self) -> None:
        """Stop it by its PID (see :func:`stop_process`); nothing when it has exited."""
        stop_process(self.process, self.stop_timeout)

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
