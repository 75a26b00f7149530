"""Erasure: naming a subject, what is searched for, and how a record loses the subject."""

from __future__ import annotations

import json

import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.governance.erasure import (
    ErasureReport,
    SubjectKind,
    Target,
    parse_subject,
    redact_json_text,
    redact_line,
    redact_text,
)
from vigie.governance.pseudonymize import Pseudonymizer

KEY = b"k" * 32


@pytest.fixture
def target() -> Target:
    return Target.of(parse_subject("tailnum:N14228"), Pseudonymizer(KEY))


def test_subjects_are_kind_and_clear_value() -> None:
    assert parse_subject("tailnum:N14228").kind is SubjectKind.TAILNUM
    client = parse_subject(" Client : acme:app ")
    assert (client.kind, client.value) == (SubjectKind.CLIENT, "acme:app")
    assert "acme" not in repr(client)


@pytest.mark.parametrize("text", ["N14228", "tailnum:", "tailnum:  ", "plane:N14228", ":x", ""])
def test_a_malformed_subject_names_the_accepted_kinds(text: str) -> None:
    with pytest.raises(VigieError) as refused:
        parse_subject(text)

    assert refused.value.code is ErrorCode.INVALID_INPUT
    message = str(refused.value)
    assert "KIND:VALUE" in message and "tailnum (" in message and "client (" in message


def test_the_target_is_the_pseudonym_and_the_clear_value_only_for_raw_data(
    target: Target,
) -> None:
    pseudonym = Pseudonymizer(KEY).pseudonymize("N14228")

    assert target.name == f"tailnum:{pseudonym}"
    assert target.values() == (pseudonym,)
    assert target.values(raw=True) == (pseudonym, "N14228")
    client = Target.of(parse_subject("client:acme"), Pseudonymizer(KEY))
    assert client.values(raw=True) == (Pseudonymizer(KEY).pseudonymize("acme"),)


def test_a_log_line_loses_the_subject_and_keeps_its_length(target: Target) -> None:
    p = target.pseudonym
    record = {"caller": p, "inputs": {"tailnum": [p, "p_other"]}, "seq": 3}
    quarantined = {"raw": json.dumps({"tailnum": p}), "id": "000001:000000000000"}
    for document in (record, quarantined):
        line = json.dumps(document, separators=(",", ":")).encode() + b"\n"

        redacted = redact_line(line, target.values())

        assert redacted is not None and len(redacted) == len(line)
        assert p.encode() not in redacted
        assert redacted.endswith(b"\n")
        assert isinstance(json.loads(redacted), dict)
    back = json.loads(redact_line(json.dumps(record).encode(), target.values()) or b"")
    assert back == {"caller": None, "inputs": {"tailnum": [None, "p_other"]}, "seq": 3}


def test_a_line_with_the_subject_as_a_key_stays_json(target: Target) -> None:
    line = json.dumps({target.pseudonym: 1}).encode()

    redacted = redact_line(line, target.values())

    assert redacted is not None and len(redacted) == len(line)
    assert json.loads(redacted) == {"*" * len(target.pseudonym): 1}


def test_a_line_without_the_subject_is_left_alone(target: Target) -> None:
    assert redact_line(b'{"caller":"p_someone_else"}\n', target.values()) is None


def test_text_loses_whole_words_only() -> None:
    text, found = redact_text("2013,1,1,UA,1545,N14228,EWR and N142280", ("N14228",))

    assert (text, found) == ("2013,1,1,UA,1545,,EWR and N142280", 1)
    assert redact_text("N1422 N14228", ("N1422",), "[erased]") == ("[erased] N14228", 1)


def test_a_json_column_loses_values_and_occurrences(target: Target) -> None:
    record = json.dumps({"tailnum": target.pseudonym, "text": "a,N14228,b", "n": 1})

    redacted, found = redact_json_text(record, target.values(raw=True))

    assert found == 2
    assert json.loads(redacted) == {"tailnum": None, "text": "a,,b", "n": 1}
    assert redact_json_text("not json N14228", ("N14228",)) == ("not json ", 1)
    assert redact_json_text(record, ("N999ZZ",)) == (record, 0)


def test_the_erasure_record_names_the_pseudonym_never_the_clear_value(target: Target) -> None:
    report = ErasureReport(target, dry_run=False)
    report.add("dim_plane", "deleted", 1)
    report.add("payload_log", "redacted", 0)

    document = report.to_json()

    assert document["subject"] == target.name and document["total"] == 1
    assert document["stores"] == {"dim_plane": {"deleted": 1}, "payload_log": {"redacted": 0}}
    assert "N14228" not in json.dumps(document)
