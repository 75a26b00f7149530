"""Crashes and concurrent writers, in real processes: killed at the critical point, a
registration or a promotion leaves the previous state; two writers lose no update."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from vigie.config import Settings
from vigie.governance.audit import verify as verify_audit
from vigie.registry import ModelVersion, Registry

from .fakes import MODEL, metadata

#: A child process that runs one registry operation with the test-only fault hook of
#: LocalStore armed: at ``point`` it writes ``marker`` and sleeps until it is killed.
CHILD = """
import json, sys, time
from pathlib import Path
from vigie.config import load_settings
from vigie.registry import LocalStore, Registry

home, point, marker, action, arg = sys.argv[1:6]
settings = load_settings(home=home, actor="child", mode="local", warehouse_url=None,
                         pseudonym_key=None, log_format="json")

def hook(at, path):
    if at == point:
        Path(marker).write_text(str(path))
        time.sleep(120)

registry = Registry(settings, store=LocalStore(settings.registry_dir, fault_hook=hook))
if action == "promote":
    registry.promote("flight_delay", arg, to="staging", report=None, reason="crash test")
else:
    files = {p.name: p for p in Path(arg).iterdir()}
    registry.register("flight_delay", files, metadata=json.loads(sys.argv[6]), reason="crash")
"""

#: A child that moves one alias back and forth between versions 1 and 2, ``n`` times; it
#: says it is ready, starts when ``go`` exists, and prints how many moves it made.
WRITER = """
import sys, time
from pathlib import Path
from vigie.config import load_settings
from vigie.registry import GateEvidence, GateSpec, Registry, evaluate_gates

home, alias, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
settings = load_settings(home=home, actor=f"writer-{alias}", mode="local", warehouse_url=None,
                         pseudonym_key=None, log_format="json")
registry = Registry(settings)
(go.parent / f"ready-{alias}").touch()
while not go.exists():
    time.sleep(0.01)
moves = 0
for i in range(n):
    version = str(1 + (i + (alias == "production")) % 2)
    report = evaluate_gates(GateSpec(), GateEvidence(model="flight_delay", version=version))
    registry.promote("flight_delay", version, to=alias, report=report, reason=f"move {i}")
    moves += 1
print(moves)
"""


def _kill_at(settings: Settings, point: str, action: str, *args: str) -> None:
    """Run CHILD, wait until it reaches ``point``, then SIGKILL it."""
    marker = settings.home / f"reached-{point}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(settings.home), point, str(marker), action, *args]
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the child ended before reaching the fault point"
            assert time.monotonic() < deadline, "the child never reached the fault point"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def test_crash_before_aliases_replace_leaves_previous_aliases(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    register("one")
    register("two")
    registry.promote(MODEL, "1", to="staging", report=None, reason="before the crash")
    aliases_file = settings.registry_dir / MODEL / "aliases.json"
    before = aliases_file.read_bytes()

    _kill_at(settings, "before-replace", "promote", "2")

    assert aliases_file.read_bytes() == before
    assert registry.aliases(MODEL) == {"candidate": "2", "staging": "1"}
    leftovers = [p.name for p in aliases_file.parent.iterdir() if p.name.startswith(".staging-")]
    assert len(leftovers) == 1  # the new state, fsynced but never put in place
    # The next writer sweeps the leftover and carries on from the previous state.
    registry.promote(MODEL, "2", to="staging", report=None, reason="after the crash")
    assert registry.aliases(MODEL)["staging"] == "2"
    assert not any(p.name.startswith(".staging-") for p in aliases_file.parent.iterdir())
    assert verify_audit(settings.audit_log_path).ok


def test_crash_before_publishing_leaves_no_version(
    registry: Registry,
    settings: Settings,
    register: Callable[..., ModelVersion],
    artifacts: Callable[..., dict[str, Path]],
    query: Callable[..., list[tuple[object, ...]]],
) -> None:
    register("one")
    folder = artifacts("doomed")["model.onnx"].parent

    _kill_at(settings, "before-publish", "register", str(folder), json.dumps(metadata()))

    assert [v.version for v in registry.versions(MODEL)] == ["1"]
    assert registry.aliases(MODEL) == {"candidate": "1"}
    versions = settings.registry_dir / MODEL / "versions"
    assert any(p.name.startswith(".staging-") for p in versions.iterdir())
    rows = query(settings.resolved_warehouse_url, "SELECT version FROM dim_model_version")
    assert rows == [("1",)]
    assert register("two").version == "2"
    assert sorted(p.name for p in versions.iterdir()) == ["1", "2"]


def test_concurrent_alias_writers_lose_no_update(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    register("one")
    register("two")
    moves = 40
    go = settings.home / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(settings.home), alias, str(moves), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for alias in ("staging", "production")
    ]
    deadline = time.monotonic() + 60
    while not all((settings.home / f"ready-{a}").exists() for a in ("staging", "production")):
        assert time.monotonic() < deadline, "the writers never got ready"
        time.sleep(0.01)
    go.touch()
    outputs = [w.communicate(timeout=120)[0] for w in writers]
    assert [w.returncode for w in writers] == [0, 0]
    assert [int(o) for o in outputs] == [moves, moves]

    state = json.loads((settings.registry_dir / MODEL / "aliases.json").read_text())
    history = registry.history(MODEL)
    assert len(state["history"]) == len(history)
    by_alias = {a: [c for c in history if c.alias == a] for a in ("staging", "production")}
    assert len(by_alias["staging"]) == moves
    assert len(by_alias["production"]) == moves
    for changes in by_alias.values():
        # Each move starts where the one before it ended: no write was lost in between.
        assert all(
            a.to_version == b.from_version for a, b in zip(changes, changes[1:], strict=False)
        )
    assert registry.aliases(MODEL)["staging"] == by_alias["staging"][-1].to_version
    assert verify_audit(settings.audit_log_path).ok
