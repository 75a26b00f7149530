"""``vigie replay`` and ``vigie ingest``: refusals before any work, with their exit status."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from vigie.errors import EXIT_CODES, ErrorCode

Cli = Callable[..., Result]
DAY = ["--from", "2013-01-01", "--to", "2013-01-01"]


def test_replay_without_an_api_key_says_where_it_looked(cli: Cli, tmp_path: Path) -> None:
    result = cli(["replay", *DAY, "--model", "flight_delay"], home=tmp_path)
    assert result.exit_code == EXIT_CODES[ErrorCode.CONFIGURATION]
    assert "VIGIE_PREDICT_KEY" in result.output and "api_keys.local" in result.output


def test_replay_to_a_service_that_is_down_stops_before_sending(cli: Cli, tmp_path: Path) -> None:
    args = ["replay", *DAY, "--model", "flight_delay", "--url", "http://127.0.0.1:1"]
    result = cli(args, home=tmp_path, predict_key="vk_x")
    assert result.exit_code == EXIT_CODES[ErrorCode.UNAVAILABLE]
    assert "ConnectError" in result.output
    assert not (tmp_path / "outcomes").exists()


def test_replay_refuses_a_bad_date_and_a_bad_protocol(cli: Cli, tmp_path: Path) -> None:
    bad_date = cli(["replay", "--from", "2013-13-01", "--to", "2013-01-02"], home=tmp_path)
    assert bad_date.exit_code == EXIT_CODES[ErrorCode.INVALID_INPUT]
    assert "--from" in bad_date.output
    bad_protocol = cli(["replay", *DAY, "--protocol", "soap"], home=tmp_path)
    assert bad_protocol.exit_code == EXIT_CODES[ErrorCode.INVALID_INPUT]


def test_replay_without_a_production_model_says_so(cli: Cli, tmp_path: Path) -> None:
    result = cli(["replay", *DAY], home=tmp_path, predict_key="vk_x")
    assert result.exit_code == EXIT_CODES[ErrorCode.MODEL_NOT_FOUND]
    assert "--model" in result.output


def test_ingest_refuses_a_batch_below_one(cli: Cli, tmp_path: Path) -> None:
    result = cli(["ingest", "--batch", "0"], home=tmp_path)
    assert result.exit_code == EXIT_CODES[ErrorCode.INVALID_INPUT]
    assert "batch" in result.output
