"""ONNX Runtime sessions over exported models, with chosen and recorded options."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pandas as pd

from vigie.errors import ErrorCode, VigieError

#: Default size of the intra-op thread pool: small, because serving runs one session per
#: model and several workers per machine; more threads rarely help rows this narrow.
DEFAULT_INTRA_OP_THREADS = 2

#: Rows per call from which ``device="auto"`` takes CUDA. Measured on an NVIDIA H200
#: (onnxruntime-gpu 1.31.1) with the production models: CUDA was slower than the CPU below
#: about 1,000 rows per call (1 row: 0.25 ms against 0.055 ms; 256 rows: 0.37 against
#: 0.27 ms) and faster from about 4,000 (65,536 rows: 2.9 M rows/s against 1.2-1.4 M on 16
#: CPU threads): the string encoders stay on the CPU and each call copies to the device.
CUDA_MIN_ROWS = 4096

Device = Literal["auto", "cpu", "cuda"]


def choose_device(device: Device, *, rows_per_call: int, cuda_available: bool) -> str:
    """``cpu`` or ``cuda`` for a session that will mostly be called with ``rows_per_call``.

    ``cuda`` is taken as asked (the caller checks that it exists); ``auto`` takes CUDA
    only when it is there and the calls are large enough to be faster on it
    (:data:`CUDA_MIN_ROWS`), so online serving with its small batches stays on the CPU.
    """
    if device == "auto":
        return "cuda" if cuda_available and rows_per_call >= CUDA_MIN_ROWS else "cpu"
    return device


def execution_providers(device: str, *, cuda_tf32: bool = False) -> list[Any]:
    """ONNX Runtime's providers for ``device``, with their options.

    On CUDA, TF32 matrix products are off unless ``cuda_tf32``: ONNX Runtime turns them
    on by default, which moved the production models' outputs by 2.3e-4 (``flight_delay``)
    and 0.026 (``arrival_delay``) from the CPU's, beyond their parity gates; without TF32
    the differences were 1.5e-7 and 1.1e-5, at no measurable cost in speed.
    """
    if device != "cuda":
        return ["CPUExecutionProvider"]
    _preload_cuda_libraries()
    cuda = ("CUDAExecutionProvider", {"use_tf32": "1" if cuda_tf32 else "0"})
    return [cuda, "CPUExecutionProvider"]


@functools.cache
def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from NVIDIA's pip packages where they are installed (the CUDA
    image installs ``onnxruntime-gpu[cuda,cudnn]``; a host with a system CUDA needs none)."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu 1.21 and later
    if preload is None:
        return
    try:
        preload()
    except (OSError, RuntimeError) as err:  # the session's own loading then says what lacks
        logging.getLogger(__name__).warning("CUDA libraries not preloaded: %s", err)


class OnnxModel:
    """An ONNX Runtime session over one exported model.

    Args:
        path: The ``.onnx`` file.
        device: ``cpu``, ``cuda`` or ``auto`` (see :func:`choose_device`).
        intra_op_threads: Size of the intra-op thread pool.
        rows_per_call: The rows a call usually carries, for ``auto`` (serving: its batch
            size; evaluation: large).
        cuda_tf32: Allow TF32 matrix products on CUDA (faster on some GPUs, less exact).

    Raises:
        VigieError: ARTIFACT_CORRUPT when the file cannot be loaded; CONFIGURATION when
            ``cuda`` is asked and ONNX Runtime has no CUDA execution provider.
    """

    def __init__(
        self,
        path: Path,
        device: Device = "auto",
        *,
        intra_op_threads: int = DEFAULT_INTRA_OP_THREADS,
        rows_per_call: int = CUDA_MIN_ROWS,
        cuda_tf32: bool = False,
    ) -> None:
        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device == "cuda" and not cuda:
            raise VigieError(
                ErrorCode.CONFIGURATION,
                "device cuda asked but ONNX Runtime has no CUDAExecutionProvider "
                "(install onnxruntime-gpu)",
            )
        chosen = choose_device(device, rows_per_call=rows_per_call, cuda_available=cuda)
        providers = execution_providers(chosen, cuda_tf32=cuda_tf32)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, min(intra_op_threads, os.cpu_count() or 1))
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises several unrelated types
            raise VigieError(
                ErrorCode.ARTIFACT_CORRUPT, f"cannot load ONNX model {path}: {err}"
            ) from err
        self.path = path
        self.options: dict[str, Any] = {
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "intra_op_num_threads": options.intra_op_num_threads,
            "inter_op_num_threads": options.inter_op_num_threads,
            "providers": self.session.get_providers(),
            "device": chosen,
            "cuda_tf32": cuda_tf32 if chosen == "cuda" else None,
            "onnxruntime": ort.__version__,
        }
        self.inputs = {i.name: i.type for i in self.session.get_inputs()}
        self.output_name = self.session.get_outputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def predict(self, rows: pd.DataFrame | Mapping[str, Any]) -> npt.NDArray[np.float32]:
        """Predict for a frame, or a mapping of feature name to values (one per row).

        Raises:
            VigieError: INVALID_INPUT naming a missing feature or a non-numeric value.
        """
        return np.asarray(self.session.run([self.output_name], self.feed(rows))[0]).reshape(-1)

    def feed(self, rows: pd.DataFrame | Mapping[str, Any]) -> dict[str, npt.NDArray[Any]]:
        """The session inputs for ``rows``: ``[N, 1]`` strings or float32 (NaN = missing)."""
        missing = [name for name in self.inputs if name not in rows]
        if missing:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"missing feature(s): {', '.join(missing)}",
                field=missing[0],
                expected=list(self.inputs),
            )
        return {
            name: _column(name, rows[name], kind == "tensor(string)")
            for name, kind in self.inputs.items()
        }


def _column(name: str, values: Any, is_string: bool) -> npt.NDArray[Any]:
    numeric = isinstance(values, pd.Series | np.ndarray) and (
        pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)
    )
    if numeric and not is_string:  # the common case (a frame's numbers): no per-value loop
        series = values if isinstance(values, pd.Series) else pd.Series(values.reshape(-1))
        return series.to_numpy(dtype=np.float32, na_value=np.nan).reshape(-1, 1)
    raw = np.asarray(values, dtype=object).reshape(-1, 1)
    if is_string:
        return np.vectorize(_as_text, otypes=[object])(raw) if raw.size else raw
    try:
        return np.asarray(
            [[np.nan if _is_missing(v) else float(v)] for v in raw[:, 0]], dtype=np.float32
        ).reshape(-1, 1)
    except (TypeError, ValueError) as err:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"feature {name!r} must be numbers (null or NaN for missing): {err}",
            field=name,
        ) from err


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _as_text(value: Any) -> str:
    return "" if _is_missing(value) else str(value)
