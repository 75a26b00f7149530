"""A tiny real ONNX model and a registry holding versions of it, for the serving tests.

The model reads two raw features like the exported models do (``carrier`` a string,
``distance`` a float, both ``[N, 1]``) and answers ``probability`` ``[N]`` =
``distance + offset + code(carrier)``, where ``code`` is 1 for ``AA``, 2 for ``UA`` and 0
for anything else (the out-of-vocabulary bucket), and ``offset`` tells versions apart.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import onnx
import yaml
from onnx import TensorProto, helper

from vigie.registry import GateReport, ModelVersion, Registry

MODEL = "flight_delay"
P = ParamSpec("P")
T = TypeVar("T")
FEATURES = ("carrier", "distance")


def tiny_onnx(path: Path, offset: float) -> Path:
    """Write the tiny model with its version ``offset``."""
    nodes = [
        helper.make_node(
            "LabelEncoder",
            ["carrier"],
            ["code"],
            domain="ai.onnx.ml",
            keys_strings=["AA", "UA"],
            values_int64s=[1, 2],
            default_int64=0,
        ),
        helper.make_node("Cast", ["code"], ["code_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["distance", "code_f"], ["sum"]),
        helper.make_node("Add", ["sum", "offset"], ["shifted"]),
        helper.make_node("Reshape", ["shifted", "flat"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        MODEL,
        [
            helper.make_tensor_value_info("carrier", TensorProto.STRING, ["batch", 1]),
            helper.make_tensor_value_info("distance", TensorProto.FLOAT, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch"])],
        [
            helper.make_tensor("offset", TensorProto.FLOAT, [], [offset]),
            helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def register_tiny(
    registry: Registry, folder: Path, offset: float, *, corrupt: bool = False
) -> ModelVersion:
    """Register a version of the tiny model (``corrupt``: an ONNX file that cannot load)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "model.onnx": folder / "model.onnx",
        "spec.yaml": folder / "spec.yaml",
        "model_card.md": folder / "model_card.md",
        "metrics.json": folder / "metrics.json",
        "reference_sample.parquet": folder / "reference_sample.parquet",
    }
    if corrupt:
        files["model.onnx"].write_bytes(b"this is not an ONNX model")
    else:
        tiny_onnx(files["model.onnx"], offset)
    spec = {"name": MODEL, "features": list(FEATURES), "target": {"output": "probability"}}
    files["spec.yaml"].write_text(yaml.safe_dump(spec))
    files["model_card.md"].write_text(f"tiny model, offset {offset}\n")
    files["metrics.json"].write_text("{}\n")
    files["reference_sample.parquet"].write_bytes(b"unused")
    metadata = {"snapshot_hash": "a" * 64, "code_version": "0.1.0+test", "metrics": {}}
    return registry.register(MODEL, files, metadata=metadata, reason=f"offset {offset}")


def promote(registry: Registry, version: str, alias: str) -> None:
    """Move ``alias`` to ``version`` (production with an empty, passing gate report)."""
    report = GateReport(model=MODEL, version=version, results=())
    registry.promote(MODEL, version, to=alias, report=report, reason="serving test")


def sync(test: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """Run an async test function in a fresh event loop, with a 60 s bound."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return asyncio.run(asyncio.wait_for(test(*args, **kwargs), 60))  # type: ignore[arg-type]

    return run
