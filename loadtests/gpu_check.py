"""GPU check: load each production model on CUDA, infer, compare with the CPU, time both.

Run wherever a GPU is present (with the ``gpu`` extra, ``onnxruntime-gpu``)::

    .venv/bin/python loadtests/gpu_check.py [--rows 4096]

It reads the registry under ``VIGIE_HOME`` (after ``make run``), builds the evaluation rows
from the warehouse (March 2013), and prints per model: the providers each session got, the
largest |CUDA - CPU| difference, and the median time of one batch on each. Without a CUDA
execution provider it says so and exits 2, so a script can tell "no GPU" from "GPU wrong".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import onnxruntime as ort

from vigie.config import load_settings
from vigie.governance.policy import load_policy
from vigie.registry import Registry
from vigie.runtime import OnnxModel
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import load_spec

#: float32 math on a different device: kernels differ, results agree to about 1e-5.
TOLERANCE = {"flight_delay": 1e-4, "arrival_delay": 1e-2}


def median_ms(predict: Callable[[Any], Any], rows: Any, repeats: int = 30) -> float:
    """Median wall time of ``predict(rows)`` in milliseconds, after a warm-up."""
    for _ in range(3):
        predict(rows)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(rows)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    """Check every production model on CUDA against the CPU."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=4096)
    args = parser.parse_args()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        print(
            f"no CUDA execution provider (have {ort.get_available_providers()}): "
            "install the gpu extra on a machine with a GPU"
        )
        return 2
    settings = load_settings()
    registry = Registry(settings)
    failed = False
    for model in registry.models():
        spec = load_spec(settings.models_dir, model, policy=load_policy(settings.policy_file))
        rows = build_snapshot(settings, spec, date(2013, 3, 1), date(2013, 3, 31)).read()
        rows = rows.iloc[: args.rows]
        path = registry.open_artifact(model, "production", "model.onnx")
        cpu, cuda = OnnxModel(path, "cpu"), OnnxModel(path, "cuda")
        diff = float(np.max(np.abs(cuda.predict(rows) - cpu.predict(rows))))
        ok = diff <= TOLERANCE.get(model, 1e-4)
        failed |= not ok
        print(f"{model}: providers cpu={cpu.options['providers']} cuda={cuda.options['providers']}")
        print(
            f"  max |cuda - cpu| over {len(rows)} rows = {diff:.3g} ({'ok' if ok else 'TOO LARGE'})"
        )
        print(
            f"  {len(rows)} rows: cpu {median_ms(cpu.predict, rows):.2f} ms, "
            f"cuda {median_ms(cuda.predict, rows):.2f} ms"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
