"""Latency measurement: a busy stretch of the machine does not count as the model's cost."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from vigie.training import benchmark


class FakeClock:
    """A clock the predictor moves: each call costs what the test says."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls = 0

    def perf_counter(self) -> float:
        return self.now


def test_p50_is_the_best_block_median_and_p95_sees_the_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(benchmark.time, "perf_counter", clock.perf_counter)
    rows = pd.DataFrame({"x": range(300)})

    def predict(frame: pd.DataFrame) -> Any:
        clock.calls += 1
        # per label: 10 warm-up calls, then 5 blocks of 20; block 2 ran on a busy machine
        index = (clock.calls - 1) % 110 - 10
        busy = 20 <= index < 40
        clock.now += (0.030 if busy else 0.010) * (2 if len(frame) > 1 else 1)
        return None

    result = benchmark.measure(predict, rows, repeats=100, warmup=10, blocks=5)

    assert result["single_row_p50_ms"] == pytest.approx(10.0)
    assert result["batch_256_p50_ms"] == pytest.approx(20.0)
    assert result["batch_256_p95_ms"] == pytest.approx(60.0)
    assert result["batch_rows"] == 256.0
    assert clock.calls == 2 * 110


def test_a_steady_predictor_gives_its_median(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(benchmark.time, "perf_counter", clock.perf_counter)
    costs = iter([0.001 * (i % 7 + 1) for i in range(1000)])

    def predict(frame: pd.DataFrame) -> Any:
        clock.now += next(costs)
        return None

    result = benchmark.measure(predict, pd.DataFrame({"x": [1]}), repeats=35, warmup=0, blocks=1)

    assert result["single_row_p50_ms"] == pytest.approx(4.0)
