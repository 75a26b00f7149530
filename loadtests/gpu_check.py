"""GPU check: each production model on CUDA against the CPU, parity and speed by batch size.

Run wherever a GPU is present (with the ``gpu`` extra, ``onnxruntime-gpu``)::

    .venv/bin/python loadtests/gpu_check.py [--sizes 1,256,4096,65536] [--tf32]

It reads the registry under ``VIGIE_HOME`` (after ``make run``) and builds the evaluation
rows from the warehouse (March 2013). Per model it prints the providers each session got,
the largest |CUDA - CPU| difference over every row against the tolerance of the model's
own parity gate (``gates.max_parity_error`` of its spec, the bound ONNX Runtime was held
to against torch when the version was registered), and the median time of one call of
each batch size on both devices, with rows per second. CUDA sessions run as serving runs
them: TF32 off unless ``--tf32`` (``VIGIE_CUDA_TF32``). Without a CUDA execution provider
it says so and exits 2, so a script can tell "no GPU" from "GPU wrong"; a parity beyond
the gate exits 1.
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
import pandas as pd

from vigie.config import load_settings
from vigie.governance.policy import load_policy
from vigie.registry import Registry
from vigie.runtime import OnnxModel
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import load_spec

SIZES = (1, 256, 4096, 65_536)


def median_ms(predict: Callable[[Any], Any], rows: Any, repeats: int) -> float:
    """Median wall time of ``predict(rows)`` in milliseconds, after a warm-up."""
    for _ in range(3):
        predict(rows)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(rows)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def batch(rows: pd.DataFrame, size: int) -> pd.DataFrame:
    """``size`` rows: the first ones, or the rows repeated when there are fewer."""
    if size <= len(rows):
        return rows.iloc[:size]
    reps = -(-size // len(rows))
    return pd.concat([rows] * reps, ignore_index=True).iloc[:size]


def check_model(model: str, rows: pd.DataFrame, path: Any, gate: float, args: Any) -> bool:
    """Print one model's parity and timings; returns whether the parity is within ``gate``."""
    cpu = OnnxModel(path, "cpu", intra_op_threads=args.cpu_threads)
    cuda = OnnxModel(path, "cuda", cuda_tf32=args.tf32)
    diff = float(np.max(np.abs(cuda.predict(rows) - cpu.predict(rows))))
    ok = diff <= gate
    print(f"{model}: providers cpu={cpu.options['providers']} cuda={cuda.options['providers']}")
    print(
        f"  max |cuda - cpu| over {len(rows)} rows = {diff:.3g}; parity gate {gate:g} "
        f"({'ok' if ok else 'BEYOND THE GATE'}; TF32 {'on' if args.tf32 else 'off'})"
    )
    print(f"  {'rows':>8}  {'cpu ms':>9}  {'cuda ms':>9}  {'cpu rows/s':>12}  {'cuda rows/s':>12}")
    for size in args.sizes:
        part = batch(rows, size)
        repeats = 200 if size <= 256 else 30
        on_cpu, on_cuda = (median_ms(m.predict, part, repeats) for m in (cpu, cuda))
        print(
            f"  {size:>8}  {on_cpu:>9.3f}  {on_cuda:>9.3f}  "
            f"{size / on_cpu * 1000:>12,.0f}  {size / on_cuda * 1000:>12,.0f}"
        )
    return ok


def main() -> int:
    """Check every production model on CUDA against the CPU."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        default=SIZES,
        help="batch sizes to time, comma-separated",
    )
    parser.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA")
    parser.add_argument("--cpu-threads", type=int, default=16, help="CPU intra-op threads")
    args = parser.parse_args()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        print(
            f"no CUDA execution provider (have {ort.get_available_providers()}): "
            "install the gpu extra on a machine with a GPU"
        )
        return 2
    settings = load_settings()
    registry = Registry(settings)
    policy = load_policy(settings.policy_file)
    failed = False
    for model in registry.models():
        spec = load_spec(settings.models_dir, model, policy=policy)
        rows = build_snapshot(settings, spec, date(2013, 3, 1), date(2013, 3, 31)).read()
        path = registry.open_artifact(model, "production", "model.onnx")
        failed |= not check_model(model, rows, path, spec.gates.max_parity_error, args)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
