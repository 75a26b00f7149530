"""The role training pages (``docs/training/``) say what the code does.

- Every ``vigie …`` command quoted in the training, architecture and specification pages
  is a command of the installed ``vigie`` (its options included).
- Each commands table (``command | what it does | permission``) names the permission the
  command's code asks for (``authorized("…")``), or ``none`` when it asks for none, and
  only permissions the page's role holds.
- Each role's permissions table is that role's grants in ``vigie.governance.access``, and
  its table of readable columns is the data policy's ``readers``.
"""

from __future__ import annotations

import inspect
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from vigie.cli import app
from vigie.governance.access import GRANTS, PERMISSIONS, roles_with
from vigie.governance.policy import load_policy

from .test_traceability import tables

ROOT = Path(__file__).resolve().parents[3]
TRAINING = ROOT / "docs" / "training"
#: The pages written alongside the training, whose quoted commands are checked too.
PAGES = sorted(
    [*TRAINING.glob("*.md"), *(ROOT / "docs" / "architecture").rglob("*.md")]
    + [*(ROOT / "docs" / "specs").glob("*.md")]
)
#: Each role page and the role its key carries.
ROLE_PAGES = {
    "data-engineer.md": "data_engineer",
    "ml-engineer.md": "ml_engineer",
    "sre.md": "sre",
    "auditor.md": "auditor",
    "application-developer.md": "predict",
}
BACKQUOTED = re.compile(r"`([^`]+)`")
FENCE = re.compile(r"^\s*(```|~~~)")
AUTHORIZED = re.compile(r"authorized\(\s*\"([^\"]+)\"")
ELLIPSES = {"…", "..."}


def prose(text: str) -> Iterator[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield line


def quoted_commands(text: str) -> list[str]:
    """Every inline code span of the prose that is a ``vigie`` command line."""
    return [
        span
        for line in prose(text)
        for span in BACKQUOTED.findall(line)
        if span.startswith("vigie ")
    ]


#: typer's command objects (its own click): a group has ``commands``, a command ``params``.
Command = Any


@pytest.fixture(scope="module")
def cli() -> Command:
    command = typer.main.get_command(app)
    assert hasattr(command, "commands")
    return command


def resolve(cli: Command, line: str) -> tuple[Command | None, str | None]:
    """The command a ``vigie …`` line runs, or None with the reason it runs none."""
    tokens = shlex.split(line)[1:]
    command = cli
    while hasattr(command, "commands"):
        if not tokens:
            return None, f"{line!r} names a group, not a command"
        name, *tokens = tokens
        if name in ELLIPSES:
            return command, None
        sub = command.commands.get(name)
        if sub is None:
            return None, f"{line!r}: {name!r} is not a command of {command.name!r}"
        command = sub
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [
        t.split("=")[0] for t in tokens if t.startswith("--") and t.split("=")[0] not in known
    ]
    if unknown:
        return None, f"{line!r}: {', '.join(unknown)} not an option of {command.name!r}"
    return command, None


def asked_permissions(command: Command) -> set[str]:
    """The permissions a command's code asks for with ``authorized(...)``."""
    assert command.callback is not None
    return set(AUTHORIZED.findall(inspect.getsource(command.callback)))


def cell_items(cell: str) -> set[str]:
    return set(BACKQUOTED.findall(cell))


def test_every_quoted_command_is_a_vigie_command(cli: Command) -> None:
    problems = []
    for page in PAGES:
        for line in quoted_commands(page.read_text(encoding="utf-8")):
            _, problem = resolve(cli, line)
            if problem:
                problems.append(f"{page.relative_to(ROOT)}: {problem}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", sorted(ROLE_PAGES))
def test_command_tables_name_the_permission_the_code_asks_for(cli: Command, page: str) -> None:
    role = ROLE_PAGES[page]
    rows = [
        (line, cells)
        for header, found in tables((TRAINING / page).read_text(encoding="utf-8"))
        if header == ["command", "what it does", "permission"]
        for line, cells in found
    ]
    if role == "predict":
        assert not rows, f"{page}: an application runs no vigie command"
        return
    assert rows, f"{page} has no commands table"
    problems = []
    for line, (command_cell, _, permission_cell) in rows:
        (quoted,) = cell_items(command_cell)
        command, problem = resolve(cli, quoted)
        if command is None:
            problems.append(f"{page}:{line}: {problem}")
            continue
        said = set() if permission_cell == "none" else cell_items(permission_cell)
        asked = asked_permissions(command)
        if said != asked:
            shown = ", ".join(sorted(asked)) or "none"
            problems.append(f"{page}:{line}: {quoted!r} asks for {shown}, the page says {said}")
        problems += [
            f"{page}:{line}: {quoted!r} needs {p}, which {role} does not hold"
            for p in sorted(said - GRANTS[role])
        ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", sorted(ROLE_PAGES))
def test_the_permissions_table_is_the_roles_grants(page: str) -> None:
    role = ROLE_PAGES[page]
    (rows,) = [
        found
        for header, found in tables((TRAINING / page).read_text(encoding="utf-8"))
        if header == ["permission", "what it allows"]
    ]
    said = {}
    for _, (permission, allows) in rows:
        (name,) = cell_items(permission)
        said[name] = allows.replace("`", "")
    assert set(said) == GRANTS[role]
    assert said == {name: PERMISSIONS[name] for name in said}


@pytest.mark.parametrize("page", sorted(ROLE_PAGES))
def test_the_readable_columns_are_the_policys_readers(page: str) -> None:
    role = ROLE_PAGES[page]
    found = [
        rows
        for header, rows in tables((TRAINING / page).read_text(encoding="utf-8"))
        if header == ["table", "columns you may read"]
    ]
    policy = load_policy(None)
    if role not in policy.roles:
        assert not found, f"{page}: {role} is not a role of the data policy"
        return
    (rows,) = found
    said: dict[str, set[str]] = {}
    for _, (table_cell, columns_cell) in rows:
        (table,) = cell_items(table_cell)
        every = set(policy.tables[table].columns)
        if columns_cell == "every column":
            said[table] = every
        elif columns_cell == "none":
            said[table] = set()
        else:
            assert columns_cell.startswith("every column except "), f"{page}: {columns_cell!r}"
            said[table] = every - cell_items(columns_cell)
    expected = {t: set(policy.readable_by(role, t)) for t in policy.tables}
    assert said == expected


def test_the_overview_lists_every_permission_with_the_roles_that_have_it() -> None:
    (rows,) = [
        found
        for header, found in tables((TRAINING / "README.md").read_text(encoding="utf-8"))
        if header == ["permission", "what it allows", "roles that have it"]
    ]
    said = {}
    for _, (permission, allows, roles) in rows:
        (name,) = cell_items(permission)
        said[name] = (allows.replace("`", ""), cell_items(roles))
    assert said == {
        name: (description, set(roles_with(name))) for name, description in PERMISSIONS.items()
    }


def test_the_role_pages_are_the_policys_roles_and_the_service_s() -> None:
    policy_roles = set(load_policy(None).roles) - {"service"}
    assert set(ROLE_PAGES.values()) == policy_roles | {"predict"}
    assert {p.name for p in TRAINING.glob("*.md")} == set(ROLE_PAGES) | {"README.md"}


def test_the_checks_catch_an_unknown_command_option_and_permission(cli: Command) -> None:
    assert resolve(cli, "vigie registry promote flight_delay 2 --to staging")[1] is None
    assert resolve(cli, "vigie registry …")[1] is None
    assert "'nothing' is not a command" in str(resolve(cli, "vigie nothing")[1])
    assert "--sideways not an option" in str(resolve(cli, "vigie train --sideways")[1])
    assert "names a group" in str(resolve(cli, "vigie registry")[1])
    train, _ = resolve(cli, "vigie train --model flight_delay")
    assert train is not None and asked_permissions(train) == {"model.train"}
