"""Benchmark: training time for a two-month window, and ONNX Runtime against torch eager.

In one process, side by side on the same rows: the time to train ``flight_delay`` on
January-February 2013 (from a fresh warehouse loaded by the pipeline), then the median
latency of one row and of a 256-row batch through ONNX Runtime (the served artifact, with
preprocessing inside the graph) and through the torch pipeline in eager mode (preprocessing
in Python, then the network). Goal: ONNX Runtime at least 3x faster per row at batch 1.
Results are printed and written to ``VIGIE_HOME/bench/models.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date
from pathlib import Path

from vigie.config import load_settings
from vigie.governance.policy import load_policy
from vigie.pipelines.run import run_pipeline
from vigie.runtime import OnnxModel
from vigie.training import benchmark
from vigie.training.export import export_onnx
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import load_spec
from vigie.training.train import train_model


def main() -> None:
    """Run the benchmark and print the side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="flight_delay")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vigie-bench-") as tmp:
        settings = load_settings(home=Path(tmp), log_format="json")
        run_pipeline(settings, date(2013, 1, 1), date(2013, 3, 31))
        spec = load_spec(settings.models_dir, args.model, policy=load_policy(settings.policy_file))
        snapshot = build_snapshot(settings, spec, date(2013, 1, 1), date(2013, 2, 28))
        start = time.perf_counter()
        trained = train_model(settings, spec, snapshot, seed=settings.seed)
        train_s = time.perf_counter() - start
        onnx = OnnxModel(export_onnx(trained, Path(tmp) / "model.onnx"), "cpu")
        rows = build_snapshot(settings, spec, date(2013, 3, 1), date(2013, 3, 31)).read()
        rows = rows.iloc[: benchmark.BATCH_ROWS]
        ort = benchmark.measure(onnx.predict, rows, repeats=args.repeats)
        eager = benchmark.measure(trained.predict, rows, repeats=args.repeats)
    result = {
        "model": args.model,
        "train_rows": trained.train_rows,
        "train_seconds": round(train_s, 2),
        "epochs": len(trained.history),
        "onnxruntime": ort,
        "torch_eager": eager,
        "single_row_speedup": round(eager["single_row_p50_ms"] / ort["single_row_p50_ms"], 2),
        "batch_256_speedup": round(eager["batch_256_p50_ms"] / ort["batch_256_p50_ms"], 2),
    }
    _print(result)
    out = load_settings().home / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(json.dumps(result, indent=2))


def _print(r: dict[str, object]) -> None:
    ort, eager = r["onnxruntime"], r["torch_eager"]
    assert isinstance(ort, dict) and isinstance(eager, dict)
    print(
        f"training {r['model']} on 2013-01..02: {r['train_seconds']} s, "
        f"{r['train_rows']} rows, {r['epochs']} epochs"
    )
    print(f"{'':<24} {'ONNX Runtime':>14} {'torch eager':>13} {'speed-up':>9}")
    print(
        f"{'1 row, p50 ms':<24} {ort['single_row_p50_ms']:>14.3f} "
        f"{eager['single_row_p50_ms']:>13.3f} {r['single_row_speedup']:>8}x"
    )
    print(
        f"{'256 rows, p50 ms':<24} {ort['batch_256_p50_ms']:>14.3f} "
        f"{eager['batch_256_p50_ms']:>13.3f} {r['batch_256_speedup']:>8}x"
    )
    print(
        f"{'256 rows, rows/s':<24} {256_000 / ort['batch_256_p50_ms']:>14.0f} "
        f"{256_000 / eager['batch_256_p50_ms']:>13.0f}"
    )


if __name__ == "__main__":
    main()
