"""A small home as the compliance audit and the risk register read it, written by hand.

Files under the home are written in the formats the platform writes them (audit log through
:class:`AuditLog`, quality reports and window results as JSON, the key file as the service
stores it); what the command reads through other areas (registry versions, warehouse runs,
the payload log) is given as facts.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from vigie.config import Settings, load_settings
from vigie.governance.audit import AuditLog
from vigie.governance.compliance_facts import (
    Evidence,
    FeatureFacts,
    PayloadFacts,
    Period,
    RunFacts,
    ServiceFacts,
    TableCounts,
    VersionFacts,
)
from vigie.governance.compliance_home import gather

RUN_1, RUN_2 = "run-20130105T000000-aaaaaa", "run-20130106T000000-bbbbbb"
GATES = ["parity error 1e-07 <= 1e-05", "roc_auc 0.74 >= 0.70"]
SLICES = {
    "carrier": [
        {"value": "AA", "rows": 300, "roc_auc": 0.71, "base_rate": 0.2},
        {"value": "UA", "rows": 400, "roc_auc": 0.66, "base_rate": 0.3},
    ]
}
FEATURES = (
    FeatureFacts("carrier", ("flights.carrier",)),
    FeatureFacts("temp", ("weather.temp",)),
    FeatureFacts(
        "origin_arr_delay_3h",
        ("flights.origin", "flights.carrier", "flights.arr_time", "flights.arr_delay"),
        history=True,
    ),
)


def settings_for(home: Path, **extra: Any) -> Settings:
    """Settings of ``home``, isolated from the environment."""
    values: dict[str, Any] = {
        "home": home,
        "mode": "local",
        "pseudonym_key": None,
        "policy_file": None,
        "warehouse_url": None,
        "stream_url": None,
        "actor": "auditor-1",
    }
    return load_settings(**(values | extra))


def version(
    model: str = "flight_delay",
    number: str = "1",
    aliases: tuple[str, ...] = ("production",),
    **changes: Any,
) -> VersionFacts:
    """A registered version with a model card, slices and allowed features."""
    facts = VersionFacts(
        model=model,
        version=number,
        created_at="2013-01-11T00:00:00+00:00",
        created_by="ml-1",
        aliases=aliases,
        manifest=f"registry/{model}/versions/{number}/manifest.json",
        files={"model.onnx": "a" * 64, "model_card.md": "b" * 64, "metrics.json": "c" * 64},
        features=FEATURES,
        target_sources=("flights.arr_delay",),
        metrics={"roc_auc": 0.74},
        slices=SLICES,
    )
    return replace(facts, **changes)


def run(run_id: str, started: str, status: str = "success") -> RunFacts:
    """A pipeline run as the warehouse records it."""
    return RunFacts(
        run_id=run_id,
        pipeline="flights_batch",
        status=status,
        actor="data-1",
        code_version="0.1.0",
        policy_hash="f" * 64,
        input_files=4 if status == "success" else 0,
        started_at=started,
        finished_at=started,
        window="2013-01-01 to 2013-01-05",
        error=None if status == "success" else "boom",
        tables=(TableCounts("flights", 1000, 990, 10),),
    )


def write_quality(
    home: Path, run_id: str, started: str, tables: dict[str, tuple[int, int, dict[str, int]]]
) -> Path:
    """A quality report: per table, (rows in, rows quarantined, failures by check)."""
    counts = [
        {
            "table": name,
            "rows_in": rows_in,
            "rows_loaded": rows_in - quarantined,
            "rows_quarantined": quarantined,
            "rows_corrected": 0,
            "failures": failures,
        }
        for name, (rows_in, quarantined, failures) in tables.items()
    ]
    path = home / "reports" / "pipeline" / run_id / "quality.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"run": {"run_id": run_id, "started_at": started, "tables": counts}}
    path.write_text(json.dumps(report | {"balanced": True, "checks": []}))
    return path


def write_window(
    home: Path, model: str, number: str, window: str, *, drift: bool, passed: bool | None
) -> None:
    """One drift window result, as the sidecar stores it."""
    path = home / "monitoring" / "results" / model / number / f"{window}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    quality = None if passed is None else {"passed": passed, "label_coverage": 1.0}
    result = {
        "model": model,
        "version": number,
        "window_id": window,
        "end": f"2013-02-{int(window):02d}T00:00:00+00:00",
        "drift": {"dataset_drift": drift},
        "quality": quality,
        "retraining_requested": False,
    }
    path.write_text(json.dumps(result))


def write_keys(home: Path, records: list[dict[str, Any]], mode: int = 0o600) -> Path:
    """The API key file, as the service stores it."""
    path = home / "secrets" / "api_keys.json"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps({"version": 1, "keys": records}))
    path.chmod(mode)
    return path


def key_record(key_id: str = "key_0123456789abcdef", role: str = "predict") -> dict[str, Any]:
    """One stored key: its digest, never the key."""
    return {
        "id": key_id,
        "sha256": "d" * 64,
        "role": role,
        "created_at": "2013-01-01T00:00:00Z",
        "created_by": "admin-1",
    }


def audit_history(home: Path) -> AuditLog:
    """An audit log with a retention run, a completed erasure and gated promotions."""
    log = AuditLog(home / "audit" / "audit.jsonl")
    log.append("data-1", "pipeline.run", "flights_batch", "success", details={"run_id": RUN_2})
    log.append("data-1", "governance.retain", "payload_log", "success", details={"deleted": 3})
    log.append("data-1", "governance.erase", "client p_1", "started", details={"request_id": "r1"})
    log.append("data-1", "governance.erase", "client p_1", "success", details={"request_id": "r1"})
    for model in ("flight_delay", "arrival_delay"):
        details = {"alias": "production", "gates": GATES, "reason": "passed its gates"}
        log.append("ml-1", "registry.promote", f"{model}/1", "success", details=details)
    return log


def conforming_home(home: Path) -> tuple[Settings, ServiceFacts]:
    """A home where every item conforms and no risk is open."""
    settings = settings_for(home)
    audit_history(home)
    write_keys(home, [key_record()])
    write_quality(home, RUN_1, "2013-01-05T00:00:00+00:00", {"flights": (1000, 2, {})})
    write_quality(home, RUN_2, "2013-01-06T00:00:00+00:00", {"flights": (1000, 0, {})})
    for model in ("flight_delay", "arrival_delay"):
        write_window(home, model, "1", "1", drift=False, passed=True)
    services = ServiceFacts(
        runs=(run(RUN_1, "2013-01-05T00:00:00+00:00"), run(RUN_2, "2013-01-06T00:00:00+00:00")),
        versions=(version(), version("arrival_delay")),
        payload=PayloadFacts("payload", 120, first_logged="2013-02-01", last_logged="2013-02-02"),
    )
    return settings, services


def evidence_of(settings: Settings, services: ServiceFacts, since: Any = None) -> Evidence:
    """Gather the evidence of a home."""
    return gather(settings, Period(since), services)
