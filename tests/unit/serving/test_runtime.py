"""ONNX Runtime sessions: which device ``auto`` takes, and CUDA without TF32 by default."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from vigie.config import load_settings
from vigie.errors import ErrorCode, VigieError
from vigie.runtime import (
    CUDA_MIN_ROWS,
    Device,
    OnnxModel,
    choose_device,
    execution_providers,
)

from .tiny import tiny_onnx


@pytest.mark.parametrize(
    ("device", "rows", "cuda", "chosen"),
    [
        ("auto", 1, True, "cpu"),  # online serving: the CPU is faster for small calls
        ("auto", 256, True, "cpu"),
        ("auto", CUDA_MIN_ROWS - 1, True, "cpu"),
        ("auto", CUDA_MIN_ROWS, True, "cuda"),
        ("auto", 65_536, True, "cuda"),
        ("auto", 65_536, False, "cpu"),
        ("cuda", 1, True, "cuda"),  # asked for: taken whatever the size
        ("cpu", 65_536, True, "cpu"),
    ],
)
def test_auto_takes_cuda_only_for_calls_large_enough_to_gain(
    device: Device, rows: int, cuda: bool, chosen: str
) -> None:
    assert choose_device(device, rows_per_call=rows, cuda_available=cuda) == chosen


def test_cuda_sessions_turn_tf32_off_unless_asked() -> None:
    assert execution_providers("cpu") == ["CPUExecutionProvider"]
    assert execution_providers("cuda") == [
        ("CUDAExecutionProvider", {"use_tf32": "0"}),
        "CPUExecutionProvider",
    ]
    assert execution_providers("cuda", cuda_tf32=True)[0] == (
        "CUDAExecutionProvider",
        {"use_tf32": "1"},
    )


def test_the_tf32_setting_defaults_to_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIE_CUDA_TF32", raising=False)
    assert load_settings().cuda_tf32 is False
    monkeypatch.setenv("VIGIE_CUDA_TF32", "true")
    assert load_settings().cuda_tf32 is True


def test_a_session_records_the_device_it_chose(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "tiny.onnx", 0.0)
    model = OnnxModel(path, "auto", rows_per_call=1)
    assert model.options["device"] == "cpu"
    assert model.options["providers"][0] == "CPUExecutionProvider"


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="a GPU is present"
)
def test_cuda_asked_without_its_provider_is_a_configuration_error(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "tiny.onnx", 0.0)
    with pytest.raises(VigieError) as refused:
        OnnxModel(path, "cuda")
    assert refused.value.code is ErrorCode.CONFIGURATION
    assert "onnxruntime-gpu" in refused.value.message


@pytest.mark.gpu
@pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(), reason="no CUDA provider"
)
def test_cuda_without_tf32_matches_the_cpu(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "tiny.onnx", 0.5)
    rows = {"carrier": ["AA", "UA", "ZZ"] * 100, "distance": [100.0, 2500.5, float("nan")] * 100}
    cpu, cuda = OnnxModel(path, "cpu"), OnnxModel(path, "cuda")
    assert cuda.options["providers"][0] == "CUDAExecutionProvider"
    assert cuda.options["cuda_tf32"] is False
    assert abs(cuda.predict(rows) - cpu.predict(rows)).max() <= 1e-6
