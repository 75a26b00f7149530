"""The platform as a user runs it: the ``vigie`` command in a fresh home."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from vigie.errors import EXIT_CODES, ErrorCode

pytestmark = pytest.mark.e2e

VIGIE = Path(sys.executable).with_name("vigie")


def vigie(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VIGIE), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def january_flights(source: Path, *days: int) -> int:
    with zipfile.ZipFile(source / "flights.csv.zip") as archive:
        lines = archive.read("flights.csv").decode().splitlines()
    return sum(1 for line in lines if line.startswith(tuple(f"2013,1,{d}," for d in days)))


@dataclass(frozen=True)
class Session:
    """A home where a user ran the pipeline twice (Jan 1-2, then Jan 2-3)."""

    home: Path
    env: dict[str, str]
    source: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def session(
    tmp_path_factory: pytest.TempPathFactory,
    small_source: Path,
    environment: Callable[..., dict[str, str]],
) -> Session:
    home = tmp_path_factory.mktemp("e2e-home")
    env = environment(home=home, source_dir=small_source, actor="e2e-user")
    first = vigie("pipeline", "run", "--from", "2013-01-01", "--to", "2013-01-02", env=env)
    second = vigie("pipeline", "run", "--from", "2013-01-02", "--to", "2013-01-03", env=env)
    return Session(home, env, small_source, first, second)


def test_vigie_is_installed() -> None:
    assert VIGIE.is_file(), f"the vigie command is missing at {VIGIE}: run `make setup`"


def test_pipeline_run_exits_0_and_prints_its_summary(session: Session) -> None:
    assert session.first.returncode == 0, session.first.stderr
    out = session.first.stdout

    assert "pipeline run run-" in out
    for column in ("table", "in", "loaded", "inserted", "corrected", "quarantined"):
        assert column in out
    flights_row = next(line for line in out.splitlines() if "flights" in line)
    assert f"{january_flights(session.source, 1, 2):,}" in flights_row
    assert "quality report:" in out
    assert "Traceback" not in session.first.stderr
    report = session.home / "reports" / "pipeline" / "latest" / "quality.json"
    assert json.loads(report.read_text())["run"]["window_to"] == "2013-01-03"


def test_audit_verify_exits_0_on_the_logs_of_the_runs(session: Session) -> None:
    assert session.second.returncode == 0, session.second.stderr

    result = vigie("audit", "verify", env=session.env)

    assert result.returncode == 0, result.stderr
    assert "2 entries" in result.stdout
    assert "chain intact" in result.stdout


def test_audit_verify_of_an_edited_copy_fails_naming_the_entry(
    session: Session, tmp_path: Path
) -> None:
    lines = (session.home / "audit" / "audit.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == 2
    entry = json.loads(lines[1])
    assert entry["actor"] == "e2e-user"
    entry["actor"] = "mallory"
    copy = tmp_path / "audit-copy.jsonl"
    copy.write_text(lines[0] + json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")

    result = vigie("audit", "verify", "--log", str(copy), env=session.env)

    assert result.returncode == EXIT_CODES[ErrorCode.AUDIT_TAMPERED] != 0
    message = " ".join(result.stderr.split())
    assert "[AUDIT_TAMPERED]" in message
    assert "seq=1" in message
    assert "line 2" in message
    assert "Traceback" not in result.stderr
    assert vigie("audit", "verify", env=session.env).returncode == 0, "the original is intact"


def test_warehouse_status_after_the_runs_shows_fact_flight(session: Session) -> None:
    result = vigie("warehouse", "status", env=session.env)

    assert result.returncode == 0, result.stderr
    fact = next(line for line in result.stdout.splitlines() if "fact_flight" in line)
    assert f"{january_flights(session.source, 1, 2, 3):,}" in fact
    assert "pipeline_run" in result.stdout


def test_a_bad_date_exits_2_with_a_clear_message(
    tmp_path: Path, small_source: Path, environment: Callable[..., dict[str, str]]
) -> None:
    env = environment(home=tmp_path, source_dir=small_source)

    result = vigie("pipeline", "run", "--from", "2013-13-01", env=env)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error [INVALID_INPUT] --from '2013-13-01' is not a date YYYY-MM-DD"]
    assert not (tmp_path / "warehouse.duckdb").exists(), "nothing ran"


def test_a_window_that_ends_before_it_starts_is_refused(
    tmp_path: Path, small_source: Path, environment: Callable[..., dict[str, str]]
) -> None:
    env = environment(home=tmp_path, source_dir=small_source)

    result = vigie("pipeline", "run", "--from", "2013-01-03", "--to", "2013-01-01", env=env)

    assert result.returncode == EXIT_CODES[ErrorCode.INVALID_INPUT]
    assert "--from 2013-01-03 is after --to 2013-01-01" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
