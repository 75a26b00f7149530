"""The risk register as files: ``risks.json`` (for machines) and ``risks.md`` (for people)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from vigie.governance.risks import RiskRegister


@dataclass(frozen=True)
class RegisterFiles:
    """The register as written: its JSON document (and that file's sha256) and Markdown."""

    json_path: Path
    markdown_path: Path
    sha256: str


def write_register(register: RiskRegister, folder: Path) -> RegisterFiles:
    """Write ``risks.json`` and ``risks.md`` into ``folder`` (replacing earlier ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = folder / "risks.json", folder / "risks.md"
    body = register.model_dump_json(indent=2) + "\n"
    for path, text in ((json_path, body), (markdown_path, to_markdown(register))):
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return RegisterFiles(json_path, markdown_path, digest)


def to_markdown(register: RiskRegister) -> str:
    """The register as a Markdown page: one table, then each risk's reasons."""
    lines = [
        "# Data risk register",
        "",
        f"Generated {register.generated_at} over {len(register.subjects)} subjects. "
        f"Score = likelihood x impact (1-25): open from {register.open_from}, "
        f"monitored from {register.monitored_from}, accepted below.",
        "",
        "| id | subject | kind | likelihood | impact | score | owner | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.id} | {_cell(r.subject)} | {r.kind} | {r.likelihood} | {r.impact} | {r.score} "
        f"| {r.owner} | {r.status} |"
        for r in register.risks
    ]
    for risk in register.risks:
        lines += ["", f"## {risk.id}: {risk.subject} ({risk.kind})", ""]
        lines += [f"- Why: {risk.summary}", f"- Mitigation: {risk.mitigation}"]
        if risk.trend:
            rates = ", ".join(f"{rate:.3%}" for _, rate in risk.trend[-8:])
            lines.append(f"- Quarantine rate per run, oldest first: {rates}")
        lines += [f"- Evidence: {_cell(e)}" for e in risk.evidence]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
