"""The trace tables of the requirements specifications (``docs/specs/``) point at real things.

Each specification holds Markdown tables with the columns ``id | requirement | acceptance
| code | evidence``. Code and evidence cells list items in backquotes: code items are paths
from the repository root; evidence items are pytest node ids
(``tests/.../test_file.py::test_name``, parameters in brackets allowed) or benchmark
scripts under ``loadtests/``. These tests fail when an id is repeated or malformed, when a
row has no code or no evidence, when a path does not exist, or when a traced test is no
longer defined in its file; and when a table that cites requirement ids (regulatory
constraints, risks) cites one that is not defined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SPECS = ROOT / "docs" / "specs"
SPEC_FILES = {"data-architecture.md": "DA", "ai-solution.md": "AI"}
TRACE_HEADER = ["id", "requirement", "acceptance", "code", "evidence"]
ID = re.compile(r"^(?P<prefix>DA|AI)-(?P<kind>F|NF)-\d{2}$")
ID_ANYWHERE = re.compile(r"\b(?:DA|AI)-(?:F|NF)-\d{2}\b")
BACKQUOTED = re.compile(r"`([^`]+)`")
CELL_SEPARATOR = re.compile(r"(?<!\\)\|")


@dataclass(frozen=True)
class Requirement:
    """One row of a trace table."""

    spec: str
    line: int
    id: str
    text: str
    acceptance: str
    code: tuple[str, ...]
    evidence: tuple[str, ...]


def split_row(line: str) -> list[str]:
    """The cells of a Markdown table row (escaped pipes stay inside their cell)."""
    return [cell.strip() for cell in CELL_SEPARATOR.split(line.strip())[1:-1]]


def tables(text: str) -> list[tuple[list[str], list[tuple[int, list[str]]]]]:
    """Every Markdown table of ``text``: its header cells and its rows with line numbers."""
    found: list[tuple[list[str], list[tuple[int, list[str]]]]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines) - 1:
        line, rule = lines[index], lines[index + 1]
        if line.lstrip().startswith("|") and re.fullmatch(r"\s*\|(\s*:?-+:?\s*\|)+\s*", rule):
            header = [cell.lower() for cell in split_row(line)]
            rows = []
            index += 2
            while index < len(lines) and lines[index].lstrip().startswith("|"):
                rows.append((index + 1, split_row(lines[index])))
                index += 1
            found.append((header, rows))
        else:
            index += 1
    return found


def requirements(path: Path) -> list[Requirement]:
    """The rows of every trace table of one specification."""
    found = []
    for header, rows in tables(path.read_text(encoding="utf-8")):
        if header != TRACE_HEADER:
            continue
        for line, cells in rows:
            assert len(cells) == len(TRACE_HEADER), f"{path.name}:{line}: {len(cells)} cells"
            req_id, text, acceptance, code, evidence = cells
            found.append(
                Requirement(
                    spec=path.name,
                    line=line,
                    id=req_id,
                    text=text,
                    acceptance=acceptance,
                    code=tuple(BACKQUOTED.findall(code)),
                    evidence=tuple(BACKQUOTED.findall(evidence)),
                )
            )
    return found


def node_id_problem(root: Path, node_id: str) -> str | None:
    """Why ``node_id`` names no test under ``root``, or None when it does.

    ``path::name`` needs ``def name(`` (or ``async def``) in the file; ``path::Class::name``
    needs ``class Class`` too; a parameter set in brackets is ignored.
    """
    path, *names = node_id.split("::")
    file = root / path
    if not path.startswith("tests/") or not path.endswith(".py"):
        return f"{path} is not a test file under tests/"
    if not file.is_file():
        return f"{path} does not exist"
    source = file.read_text(encoding="utf-8")
    *classes, function = names
    function = function.split("[", 1)[0]
    for name in classes:
        if not re.search(rf"^\s*class\s+{re.escape(name)}\b", source, re.MULTILINE):
            return f"{path} has no class {name}"
    pattern = rf"^\s*(?:async\s+)?def\s+{re.escape(function)}\s*\("
    if not re.search(pattern, source, re.MULTILINE):
        return f"{path} defines no {function}"
    return None


def evidence_problem(root: Path, item: str) -> str | None:
    """Why an evidence item does not hold, or None."""
    if "::" in item:
        return node_id_problem(root, item)
    if not item.startswith("loadtests/"):
        return f"{item} is neither a pytest node id nor a script under loadtests/"
    if not (root / item).is_file():
        return f"{item} does not exist"
    return None


def trace_problems(root: Path, found: list[Requirement]) -> list[str]:
    """Every problem of a set of requirements, one line each."""
    problems = []
    for req in found:
        where = f"{req.spec}:{req.line} {req.id}"
        if not req.text or not req.acceptance:
            problems.append(f"{where}: no requirement or no acceptance criterion")
        if not req.code:
            problems.append(f"{where}: no code traced")
        if not req.evidence:
            problems.append(f"{where}: no evidence traced")
        problems += [
            f"{where}: code path {path} does not exist"
            for path in req.code
            if not (root / path.rstrip("/")).exists()
        ]
        for item in req.evidence:
            problem = evidence_problem(root, item)
            if problem:
                problems.append(f"{where}: {problem}")
    return problems


@pytest.fixture(scope="module")
def traced() -> dict[str, list[Requirement]]:
    return {name: requirements(SPECS / name) for name in SPEC_FILES}


def test_both_specifications_have_functional_and_non_functional_requirements(
    traced: dict[str, list[Requirement]],
) -> None:
    for name, found in traced.items():
        kinds = {ID.match(r.id).group("kind") for r in found if ID.match(r.id)}
        assert len(found) >= 10, f"{name}: only {len(found)} requirements in its trace tables"
        assert kinds == {"F", "NF"}, f"{name}: requirement kinds {sorted(kinds)}"


def test_ids_are_well_formed_unique_and_of_their_specification(
    traced: dict[str, list[Requirement]],
) -> None:
    seen: dict[str, str] = {}
    for name, found in traced.items():
        for req in found:
            match = ID.match(req.id)
            assert match, f"{name}:{req.line}: {req.id!r} is not like DA-F-01 or AI-NF-07"
            assert match.group("prefix") == SPEC_FILES[name], f"{name}:{req.line}: {req.id}"
            assert req.id not in seen, f"{req.id} is defined in {seen[req.id]} and {name}"
            seen[req.id] = name


def test_every_requirement_is_traced_to_existing_code_and_evidence(
    traced: dict[str, list[Requirement]],
) -> None:
    problems = trace_problems(ROOT, [r for found in traced.values() for r in found])
    assert not problems, "\n".join(problems)


def test_cited_requirement_ids_are_defined(traced: dict[str, list[Requirement]]) -> None:
    defined = {r.id for found in traced.values() for r in found}
    undefined = []
    for name in SPEC_FILES:
        text = (SPECS / name).read_text(encoding="utf-8")
        for header, rows in tables(text):
            if header == TRACE_HEADER:
                continue
            for line, cells in rows:
                undefined += [
                    f"{name}:{line} cites {cited}"
                    for cell in cells
                    for cited in ID_ANYWHERE.findall(cell)
                    if cited not in defined
                ]
    assert not undefined, "\n".join(undefined)


def test_the_checks_catch_a_missing_path_a_removed_test_and_an_empty_row(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "real.py").write_text("")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_real.py").write_text(
        "class TestGroup:\n    def test_in_class(self):\n        pass\n\n"
        "async def test_async():\n    pass\n\n"
        "def test_real(x):\n    pass\n"
    )
    (tmp_path / "loadtests").mkdir()
    (tmp_path / "loadtests" / "bench.py").write_text("")
    spec = tmp_path / "spec.md"
    spec.write_text(
        "| id | requirement | acceptance | code | evidence |\n"
        "|---|---|---|---|---|\n"
        "| DA-F-01 | ok | ok | `src/real.py` | `tests/test_real.py::test_real[1-a]`<br>"
        "`tests/test_real.py::TestGroup::test_in_class`<br>`tests/test_real.py::test_async`"
        "<br>`loadtests/bench.py` |\n"
        "| DA-F-02 | gone | x | `src/gone.py` | `tests/test_real.py::test_removed` |\n"
        "| DA-F-03 | empty | x | | |\n"
        "| DA-F-04 | odd | x \\| y | `src/real.py` | `docs/x.md`<br>"
        "`tests/test_real.py::Missing::test_in_class` |\n"
    )
    found = requirements(spec)
    assert [r.id for r in found] == ["DA-F-01", "DA-F-02", "DA-F-03", "DA-F-04"]
    assert found[3].acceptance == "x \\| y"
    problems = trace_problems(tmp_path, found)
    assert problems == [
        "spec.md:4 DA-F-02: code path src/gone.py does not exist",
        "spec.md:4 DA-F-02: tests/test_real.py defines no test_removed",
        "spec.md:5 DA-F-03: no code traced",
        "spec.md:5 DA-F-03: no evidence traced",
        "spec.md:6 DA-F-04: docs/x.md is neither a pytest node id nor a script under loadtests/",
        "spec.md:6 DA-F-04: tests/test_real.py has no class Missing",
    ]
