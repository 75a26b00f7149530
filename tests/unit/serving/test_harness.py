"""The service harness on toy children of this test: loopback only, no real service.

Every child is started here, bound to 127.0.0.1 when it listens, and stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.serving.auth import Authenticator, ensure_local_keys
from vigie.serving.harness import (
    LOOPBACK,
    READY_PATH,
    ServiceProcess,
    free_port,
    log_tail,
    predict_key,
    start_logged,
    stop_process,
    wait_listening,
    wait_ready,
    wait_until,
)

#: A stand-in for the service: answers the readiness route on VIGIE_HOST:VIGIE_REST_PORT.
TOY_SERVICE = textwrap.dedent(
    """
    import http.server, os

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/v2/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    print(f"grpc={os.environ['VIGIE_GRPC_PORT']} toy={os.environ['TOY']}", flush=True)
    address = (os.environ["VIGIE_HOST"], int(os.environ["VIGIE_REST_PORT"]))
    http.server.HTTPServer(address, Ready).serve_forever()
    """
)

#: Ignores SIGTERM, starts a grandchild in its group, says both PIDs, then sleeps.
STUBBORN = textwrap.dedent(
    """
    import signal, subprocess, sys, time

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"ready {grandchild.pid}", flush=True)
    time.sleep(600)
    """
)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def children() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start toy children in their own session by default; any left running is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def start(command: list[str], log: Path, new_session: bool = True) -> subprocess.Popen[bytes]:
        child = start_logged(command, None, log, new_session=new_session)
        started.append(child)
        return child

    yield start
    for child in started:
        if child.poll() is None:
            child.kill()
            child.wait(10)


@pytest.fixture
def settings(tmp_path: Path, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tmp_path / "home", None)


def test_free_port_gives_a_loopback_port_that_can_be_bound(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as listener:
        listener.bind((LOOPBACK, port))
        listener.listen()
        assert listener.getsockname() == (LOOPBACK, port)


def test_a_child_that_exits_fails_the_wait_at_once_with_its_log_tail(
    tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "child.log"
    code = "import sys; print('x' * 9000); print('boom: no model to serve'); sys.exit(3)"
    child = children(python(code), log)
    with pytest.raises(VigieError) as caught:
        wait_ready(f"http://{LOOPBACK}:{free_port()}/", child, "the toy", log=log, timeout=120)
    error = caught.value
    assert error.code is ErrorCode.UNAVAILABLE
    assert "the toy exited with status 3" in str(error)  # not "not ready within 120 s"
    assert "boom: no model to serve" in str(error) and str(log) in str(error)
    assert "x" * 4001 not in str(error)  # the tail only


def test_wait_ready_and_wait_listening_return_once_the_child_serves(
    tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    log = tmp_path / "http.log"
    command = [sys.executable, "-m", "http.server", str(port), "--bind", LOOPBACK]
    child = children([*command, "--directory", str(tmp_path)], log)
    wait_ready(f"http://{LOOPBACK}:{port}/", child, "http.server", log=log, timeout=120)
    wait_listening(port, child, log=log, timeout=120)
    assert httpx.get(f"http://{LOOPBACK}:{port}/").status_code == httpx.codes.OK
    stop_process(child)
    assert child.returncode is not None


def test_a_child_that_never_listens_times_out_with_its_log_tail(
    tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "sleeper.log"
    child = children(python("import time; print('warming up', flush=True); time.sleep(600)"), log)
    wait_until(lambda: "warming up" in log_tail(log), "the sleeper's first line", child)
    with pytest.raises(VigieError) as caught:
        wait_listening(free_port(), child, "the sleeper", log=log, timeout=0.5)
    assert "the sleeper was not ready within" in str(caught.value)
    assert "warming up" in str(caught.value)
    assert child.poll() is None  # a wait never stops the child


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie whose new parent has not reaped it yet


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_child_deaf_to_sigterm_is_killed_with_its_process_group(
    tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "stubborn.log"
    child = children(python(STUBBORN), log)
    wait_until(lambda: "ready" in log_tail(log), "the stubborn child", child, log=log)
    grandchild = int(log_tail(log).split()[1])
    stop_process(child, timeout=0.5)
    assert child.returncode == -signal.SIGKILL
    assert _wait_gone(grandchild), "the grandchild in the child's group survived"


def test_a_child_in_this_process_group_is_killed_alone(
    tmp_path: Path, children: Callable[..., subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "stubborn.log"
    child = children(python(STUBBORN), log, new_session=False)
    wait_until(lambda: "ready" in log_tail(log), "the stubborn child", child, log=log)
    grandchild = int(log_tail(log).split()[1])
    try:
        stop_process(child, timeout=0.5)  # must not kill the group this test runs in
        assert child.returncode == -signal.SIGKILL
        assert not _gone(grandchild)
    finally:
        os.kill(grandchild, signal.SIGKILL)  # started by this test's child, by its PID


def test_the_predict_key_is_read_from_the_local_keys_file(settings: Settings) -> None:
    ensure_local_keys(settings)
    key = predict_key(settings)
    authenticator = Authenticator(settings)
    assert authenticator.check(key, "predict", "v2-rest").startswith("key_")
    with pytest.raises(VigieError) as caught:
        authenticator.check(key, "admin", "v2-rest")  # the predict key, not the admin one
    assert caught.value.code is ErrorCode.FORBIDDEN


def test_no_keys_file_is_not_found(settings: Settings) -> None:
    with pytest.raises(VigieError) as caught:
        predict_key(settings)
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert "api_keys.local" in str(caught.value)


def test_a_service_process_runs_on_free_ports_with_its_environment_and_stops(
    tmp_path: Path, settings: Settings
) -> None:
    ensure_local_keys(settings)
    log = tmp_path / "service.log"
    command = python(TOY_SERVICE)
    with ServiceProcess.start(settings, log, {"TOY": "given"}, command=command) as service:
        assert service.host == LOOPBACK and service.url == f"http://{service.host_port}"
        assert httpx.get(service.url + READY_PATH).status_code == httpx.codes.OK
        assert f"grpc={service.grpc_port} toy=given" in log_tail(log)
        assert service.grpc_target == f"{LOOPBACK}:{service.grpc_port}"
        assert service.key == predict_key(settings)
        assert service.process.poll() is None
    assert service.process.returncode is not None


def test_a_service_process_that_exits_fails_its_start_with_its_log_tail(
    tmp_path: Path, settings: Settings
) -> None:
    log = tmp_path / "service.log"
    command = python("import sys; sys.exit('cannot load the registry')")
    with pytest.raises(VigieError) as caught:
        ServiceProcess.start(settings, log, {}, command=command, what="the toy service")
    assert "the toy service exited with status 1" in str(caught.value)
    assert "cannot load the registry" in str(caught.value)
